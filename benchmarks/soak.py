#!/usr/bin/env python
"""Soak under kill -9: two `newsletter worker` processes on PostgreSQL share one campaign; one of
them is killed with SIGKILL at a random moment and restarted, again and again; then both finish.

    .venv/bin/python benchmarks/soak.py [--readers 3000] [--kills 20] [--concurrency 4] [--seed N]

The SMTP server is an aiosmtpd sink in its own process (benchmarks/recording_sink.py) that
records every accepted message with its recipient. Checked at the end:

- duplicates at the sink: 0 (the workers never resend an ambiguous copy on their own);
- every copy the sink never got is one the ledger reports as ambiguous (``sending`` by a dead
  worker): nothing is silently lost;
- every row the ledger says ``sent`` is at the sink (nothing marked sent that was not accepted);
- each kill left at most ``--concurrency`` ambiguous rows (one per connection in flight);
- the campaign is ``finished`` and both workers exit 0 on SIGTERM.

Kill moments are chosen on state, not on time: the k-th kill waits until the sink has recorded
a (random, or given) number of messages and the victim holds a row in ``sending``; after the
kill it waits until the victim's PostgreSQL sessions are gone (``application_name``) before
counting what it left ambiguous and starting it again. tests/test_soak.py runs a short version.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(HERE))

from recording_sink import Sink  # noqa: E402

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "soak-secret-key-not-for-production-0123456789"


def _psql_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@dataclass
class SoakResult:
    """What a soak saw; ``problems`` is empty when every promise held."""

    readers: int
    kills: int
    delivered: int = 0
    duplicates: int = 0
    undelivered: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    ambiguous_per_kill: list[int] = field(default_factory=list)
    kill_points: list[int] = field(default_factory=list)  # sink count at each kill
    status: str = ""
    exit_codes: list[int | None] = field(default_factory=list)
    elapsed: float = 0.0
    problems: list[str] = field(default_factory=list)


class Worker:
    """One `newsletter worker` process in a slot; restarted as a new generation after a kill."""

    def __init__(self, slot: int, cmd: list[str], env: dict, logdir: Path, prefix: list[str]):
        self.slot, self.cmd, self.env, self.logdir, self.prefix = slot, cmd, env, logdir, prefix
        self.gen = 0
        self.proc: subprocess.Popen | None = None
        self.app = ""

    def start(self) -> None:
        self.gen += 1
        self.app = f"soak-w{self.slot}-g{self.gen}-{uuid.uuid4().hex[:6]}"
        env = dict(self.env, PGAPPNAME=self.app)  # libpq names every session of this process
        log = open(self.logdir / f"worker{self.slot}-{self.gen}.log", "w")
        self.proc = subprocess.Popen([*self.prefix, *self.cmd], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def log_text(self) -> str:
        return (self.logdir / f"worker{self.slot}-{self.gen}.log").read_text(errors="replace")


def worker_env(db_url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=db_url, NEWSLETTER_SECRET_KEY=SECRET, PYTHONPATH=str(REPO / "src"),
               NEWSLETTER_BASE_URL="https://news.example.org", NEWSLETTER_BOUNCE_POLL_INTERVAL="0")
    return env


def _wait(what: str, cond, timeout: float, step: float = 0.005):
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"soak: {what} not reached within {timeout:.0f} s")
        time.sleep(step)


def run_soak(db_url: str, cid: int, expected: set[str], *, kills: int, concurrency: int = 4,
             kill_points: list[int] | None = None, seed: int = 0, sink: Sink, workdir: Path,
             prefixes: tuple[list[str], list[str]] = ([], []), monitor_url: str | None = None,
             timeout: float = 600, say=lambda line: None) -> SoakResult:
    """Run two workers on campaign ``cid`` (scheduled, due) through ``sink``, killing one ``kills``
    times, and check the promises (see the module docstring). ``kill_points``: the sink counts to
    kill at (default: random, from ``seed``); ``prefixes``: a command prefix per worker (e.g.
    ``ip netns exec host1``) so the two can run as if on two machines; ``monitor_url``: how this
    process reaches the database to watch it, when ``db_url`` (the workers') is not reachable from here."""
    import psycopg

    rng = random.Random(seed)
    n = len(expected)
    points = sorted(kill_points or rng.sample(range(n // 20, n * 9 // 10), kills))
    res = SoakResult(readers=n, kills=len(points))
    cmd = [sys.executable, "-m", "newsletter", "worker", "--smtp", sink.url, "--concurrency", str(concurrency),
           "--poll", "0.2"]
    env = worker_env(db_url)
    workers = [Worker(i, cmd, env, workdir, prefixes[i]) for i in range(2)]
    t0 = time.monotonic()
    deadline = t0 + timeout
    with psycopg.connect(_psql_url(monitor_url or db_url), autocommit=True) as conn:
        def sending_of(w: Worker) -> int:
            return conn.execute("select count(*) from deliveries where campaign_id = %s and state = 'sending' "
                                "and worker_id like %s", (cid, f"%:{w.pid}:%")).fetchone()[0]

        def sessions_of(w: Worker) -> int:
            return conn.execute("select count(*) from pg_stat_activity where application_name = %s",
                                (w.app,)).fetchone()[0]

        try:
            for w in workers:
                w.start()
            for k, point in enumerate(points):
                left = lambda: max(1.0, deadline - time.monotonic())  # noqa: E731
                _wait(f"kill {k + 1}: {point} messages at the sink", lambda: sink.count() >= point, left())
                for w in workers:
                    if w.proc and w.proc.poll() is not None:
                        raise RuntimeError(f"worker {w.slot} exited by itself (rc {w.proc.returncode}): "
                                           + w.log_text()[-800:])
                # the victim: one with a message on its way right now (random when both have)
                victim = _wait(f"kill {k + 1}: a worker with a message in flight",
                               lambda: [w for w in rng.sample(workers, 2) if sending_of(w)][:1], left(), 0.001)[0]
                at = sink.count()
                os.kill(victim.pid, signal.SIGKILL)
                victim.proc.wait(30)  # type: ignore[union-attr]
                # its PostgreSQL sessions end by themselves (the backend notices the closed socket)
                _wait(f"kill {k + 1}: the killed worker's sessions gone", lambda: sessions_of(victim) == 0, left())
                amb = sending_of(victim)
                res.kill_points.append(at)
                res.ambiguous_per_kill.append(amb)
                say(f"kill {k + 1:2d}: worker {victim.slot} (pid {victim.pid}) at {at} messages, left {amb} ambiguous")
                if amb > concurrency:
                    res.problems.append(f"kill {k + 1} left {amb} ambiguous rows (> {concurrency} connections)")
                victim.start()

            def done() -> bool:
                left_rows, status = conn.execute(
                    "select (select count(*) from deliveries where campaign_id = %s "
                    "and state in ('pending', 'claimed', 'deferred')), status from campaigns where id = %s",
                    (cid, cid)).fetchone()
                return left_rows == 0 and status == "finished"

            _wait("the campaign finished", done, max(1.0, deadline - time.monotonic()), 0.05)
            for w in workers:  # a worker restarted last may still be starting: its SIGTERM handler comes first
                _wait(f"worker {w.slot} started", lambda: " started (" in w.log_text(),
                      max(1.0, deadline - time.monotonic()), 0.05)
            for w in workers:
                w.proc.send_signal(signal.SIGTERM)  # type: ignore[union-attr]
            for w in workers:
                try:
                    res.exit_codes.append(w.proc.wait(60))  # type: ignore[union-attr]
                except subprocess.TimeoutExpired:
                    res.exit_codes.append(None)
                    res.problems.append(f"worker {w.slot} did not exit within 60 s of SIGTERM")
        finally:
            for w in workers:
                if w.proc and w.proc.poll() is None:
                    w.proc.kill()
                    w.proc.wait(30)
        res.elapsed = time.monotonic() - t0
        got = sink.recipients()
        sent = {r[0].lower() for r in conn.execute(
            "select s.email from deliveries d join subscribers s on s.id = d.subscriber_id "
            "where d.campaign_id = %s and d.state = 'sent'", (cid,))}
        ambiguous = {r[0].lower() for r in conn.execute(
            "select s.email from deliveries d join subscribers s on s.id = d.subscriber_id "
            "where d.campaign_id = %s and d.state = 'sending'", (cid,))}
        res.status = conn.execute("select status from campaigns where id = %s", (cid,)).fetchone()[0]
    expected_l = {e.lower() for e in expected}
    res.delivered = len(set(got) & expected_l)
    res.duplicates = sum(c - 1 for c in got.values() if c > 1)
    res.undelivered = sorted(expected_l - set(got))
    res.ambiguous = sorted(ambiguous)
    if res.duplicates:
        res.problems.append(f"{res.duplicates} duplicate(s) at the sink: "
                            f"{sorted(a for a, c in got.items() if c > 1)[:5]}")
    lost = sorted(set(res.undelivered) - ambiguous)
    if lost:
        res.problems.append(f"{len(lost)} cop(ies) never delivered and not reported ambiguous: {lost[:5]}")
    if sent - set(got):
        res.problems.append(f"{len(sent - set(got))} row(s) marked sent that the sink never accepted")
    if set(got) - expected_l:
        res.problems.append(f"{len(set(got) - expected_l)} message(s) to addresses not in the campaign")
    if res.status != "finished":
        res.problems.append(f"campaign is {res.status}, not finished")
    if any(c != 0 for c in res.exit_codes):
        res.problems.append(f"workers exited with {res.exit_codes}: " + " | ".join(
            w.log_text()[-400:] for w in workers))
    tracebacks = [w.slot for w in workers if "Traceback" in w.log_text()]
    if tracebacks:
        res.problems.append(f"worker(s) {tracebacks} printed a traceback")
    return res


def make_campaign(pg_url: str, readers: int) -> tuple[int, set[str]]:
    """A fresh campaign from the sample digest for ``readers`` subscribers, scheduled for now."""
    from workers import fill_subscribers, sample_digest

    from newsletter.config import Config
    from newsletter.dispatch.campaigns import create_campaign, schedule_campaign
    from newsletter.store.db import get_engine

    fill_subscribers(pg_url, readers)
    engine = get_engine(pg_url)
    config = Config(database_url=pg_url, secret_key=SECRET, base_url="https://news.example.org")
    cid = create_campaign(engine, sample_digest(config), ["bench"], config, name="soak").id
    schedule_campaign(engine, cid, datetime.now(timezone.utc) - timedelta(seconds=1))
    engine.dispose()
    return cid, {f"reader{i:06d}@example.com" for i in range(readers)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--readers", type=int, default=3000)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--concurrency", type=int, default=4, help="SMTP connections per worker")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--keep", action="store_true", help="keep the database and the logs")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 30)
    import psycopg

    from newsletter.store.db import upgrade

    name = "nl_soak_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    pg_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    workdir = Path(tempfile.mkdtemp(prefix="soak-"))
    try:
        upgrade(pg_url)
        cid, expected = make_campaign(pg_url, args.readers)
        print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPU(s), "
              f"Python {platform.python_version()}; {args.readers} readers, {args.kills} kills, "
              f"2 workers x {args.concurrency} connections, seed {seed}; logs in {workdir}", flush=True)
        with Sink(workdir / "received.tsv") as sink:
            r = run_soak(pg_url, cid, expected, kills=args.kills, concurrency=args.concurrency, seed=seed,
                         sink=sink, workdir=workdir, timeout=3600, say=lambda s: print(s, flush=True))
        print(f"# {r.elapsed:.0f} s; delivered {r.delivered} of {r.readers}; duplicates at the sink {r.duplicates}; "
              f"undelivered {len(r.undelivered)}, all ambiguous: {set(r.undelivered) <= set(r.ambiguous)}; "
              f"ambiguous in the ledger {len(r.ambiguous)} (per kill: max {max(r.ambiguous_per_kill, default=0)}, "
              f"total {sum(r.ambiguous_per_kill)}); campaign {r.status}; exit codes {r.exit_codes}")
        for p in r.problems:
            print(f"PROBLEM: {p}")
        return 1 if r.problems else 0
    finally:
        if not args.keep:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    sys.exit(main())
