"""Two workers as if on two machines: network namespaces joined by veth pairs to a bridge in a
third one, which runs PostgreSQL (a throwaway cluster listening only on its bridge address) and
the SMTP sink. The workers reach both over the veth addresses, never loopback; one of them is
killed with SIGKILL twice and restarted (the soak driver, benchmarks/soak.py).

    db namespace:   br0 10.201.0.1/24  — PostgreSQL :port, SMTP sink
    host1:          veth 10.201.0.2/24 — `newsletter worker`
    host2:          veth 10.201.0.3/24 — `newsletter worker`

This process (outside every namespace) sets up and watches the database through the cluster's
Unix socket: the file system is shared, the network is not. Needs root and ``ip netns``
(Debian iproute2); skips with the reason otherwise (fails instead under CI, which runs as root).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from conftest import IN_CI
from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from pg_cluster import Cluster, cluster_unavailable

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from recording_sink import Sink  # noqa: E402
from soak import run_soak  # noqa: E402

SUBNET = "10.201.0"  # only inside the namespaces this test makes (no address of it outside them)


def _ip(*args: str) -> None:
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if r.returncode:
        raise RuntimeError(f"ip {' '.join(args)}: {r.stderr.strip()}")


def _netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "`ip` not found (Debian package iproute2)"
    probe = f"nlprobe{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, timeout=30)
    if r.returncode:
        return f"`ip netns add` failed: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return cluster_unavailable()


class Hosts:
    """Three namespaces (db, h1, h2) on one bridge; removed with everything in them."""

    def __init__(self) -> None:
        tag = f"{os.getpid() % 100000}"
        self.db, self.h1, self.h2 = f"nl{tag}db", f"nl{tag}h1", f"nl{tag}h2"
        self.made: list[str] = []
        try:
            for ns in (self.db, self.h1, self.h2):
                _ip("netns", "add", ns)
                self.made.append(ns)
                _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", self.db, "link", "add", "br0", "type", "bridge")
            _ip("-n", self.db, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
            _ip("-n", self.db, "link", "set", "br0", "up")
            for n, ns in ((2, self.h1), (3, self.h2)):
                # one veth pair per host: one end in the host, the other on the db namespace's bridge
                _ip("link", "add", f"nl{tag}v{n}", "netns", ns, "type", "veth", "peer", "name", f"nl{tag}b{n}",
                    "netns", self.db)
                _ip("-n", self.db, "link", "set", f"nl{tag}b{n}", "master", "br0", "up")
                _ip("-n", ns, "addr", "add", f"{SUBNET}.{n}/24", "dev", f"nl{tag}v{n}")
                _ip("-n", ns, "link", "set", f"nl{tag}v{n}", "up")
        except BaseException:
            self.remove()
            raise

    def prefix(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]

    def remove(self) -> None:
        for ns in self.made:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
        self.made = []


@pytest.mark.slow
def test_two_workers_on_two_hosts_share_a_campaign_over_the_network_and_survive_kill_9(tmp_path):
    reason = _netns_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    hosts = Hosts()
    try:
        with Cluster(host=f"{SUBNET}.1", prefix=hosts.prefix(hosts.db)) as pg:
            pg.createdb("test")
            local = pg.socket_url("test")
            engine = setup_db(local)
            config = make_config(local, tmp_path)
            people = set(add_people(engine, "weekly", 300))
            cid = make_campaign(engine, config).id
            from newsletter.dispatch.campaigns import schedule_campaign

            schedule_campaign(engine, cid, datetime.now(timezone.utc) - timedelta(seconds=1))
            engine.dispose()
            with Sink(tmp_path / "received.tsv", host=f"{SUBNET}.1", port=2525, prefix=hosts.prefix(hosts.db)) as sink:
                res = run_soak(pg.url("test"), cid, people, kills=2, concurrency=2, kill_points=[60, 150], sink=sink,
                               workdir=tmp_path, prefixes=(hosts.prefix(hosts.h1), hosts.prefix(hosts.h2)),
                               monitor_url=local, timeout=300)
            server_log = (pg.dir / "server.log").read_text(errors="replace")
        assert res.problems == [], res
        assert res.duplicates == 0 and res.status == "finished" and set(res.undelivered) <= set(res.ambiguous)
        # both hosts' workers reached PostgreSQL over their veth addresses
        assert f"connection received: host={SUBNET}.2" in server_log
        assert f"connection received: host={SUBNET}.3" in server_log
        assert "host=127.0.0.1" not in server_log
    finally:
        hosts.remove()
