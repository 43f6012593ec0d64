#!/usr/bin/env python
"""Scale-out benchmark: one campaign of 100,000 recipients on PostgreSQL, sent by 1, 2 and 4
`newsletter worker` processes sharing it through the ledger (FOR UPDATE SKIP LOCKED claims).

    .venv/bin/python benchmarks/workers.py [--recipients 100000] [--workers 1,2,4] [--concurrency 4]
    .venv/bin/python benchmarks/workers.py --recipients 10000,100000,1000000 --workers 1   # RSS vs list size
    .venv/bin/python benchmarks/workers.py --recipients 10000,1000000 --workers 2 --stop-after 10000
    .venv/bin/python benchmarks/workers.py --recipients 20000 --workers 1,2,4 --latency 5   # a relay far away

Needs the PostgreSQL at 127.0.0.1:5432 (as the tests) and Postfix's ``smtp-sink`` (Debian:
``apt-get install -y postfix``) as the loopback SMTP server: a C sink, so the sender is what is
measured. With ``--latency MS`` the sink is benchmarks/latency_sink.py instead, which waits that
long before each batch of replies: the relay far away that real sends talk to, where a worker waits
on the network rather than on this machine's two cores. For each worker count it creates a fresh
campaign from the sample digest (articles/), schedules it for "now", starts the workers with
``--once`` and waits for all of them to exit.

``--recipients`` may list several sizes: each gets a fresh database. Reported per run: each
worker's peak RSS (``ru_maxrss`` of the exited process, from ``wait4``), which must stay flat
from ten thousand to a million recipients; messages/s over the whole run (process start to last exit) and over the
sending window (first to last ``sent_at`` in the ledger), the share each worker sent, and the
duplicate check: the sink must have accepted exactly as many messages as the ledger has
``sent`` rows, and the ledger holds one row per (campaign, subscriber) by its unique key — so a
copy sent twice would show up as a sink count above the ledger count.

The machine running this has 2 cores shared with the sink and PostgreSQL (and, during the team
session, other engineers' jobs): adding workers cannot add CPU, so read the ratios, not the
absolute numbers.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "benchmark-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill_subscribers(pg_url: str, n: int) -> None:
    """n subscribers, all active on list 'bench', written with COPY (seconds, not minutes)."""
    import psycopg

    now = datetime.now(timezone.utc).isoformat()
    with psycopg.connect(pg_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        lid = conn.execute("insert into lists (slug, name, description, opt_in, created_at, updated_at) "
                           "values ('bench', 'Benchmark', '', 'single', now(), now()) returning id").fetchone()[0]
        with conn.cursor().copy("copy subscribers (email, email_key, name, attributes, consent_source, consent_at, "
                                "created_at, updated_at) from stdin") as cp:
            for i in range(n):
                e = f"reader{i:06d}@example.com"
                cp.write_row((e, e, f"Reader {i}", "{}", "benchmark", now, now, now))
        conn.execute("insert into subscriptions (subscriber_id, list_id, status, source, created_at, updated_at) "
                     "select id, %s, 'active', 'benchmark', now(), now() from subscribers", (lid,))


def sample_digest(config):
    from newsletter.compose import ComposeOptions, compose, embed_relative_assets

    return embed_relative_assets(compose([str(REPO / "articles")], config, ComposeOptions(limit=10)))


def wait_all(procs: list) -> tuple[list[str], list[int]]:
    """Wait for the workers: their stderr, and each one's peak RSS in KiB (``wait4``'s ru_maxrss)."""
    import threading

    errs = [""] * len(procs)

    def read(i: int) -> None:
        errs[i] = procs[i].stderr.read()

    readers = [threading.Thread(target=read, args=(i,)) for i in range(len(procs))]
    for t in readers:
        t.start()
    rss = []
    for p in procs:
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        rss.append(usage.ru_maxrss)
    for t in readers:
        t.join()
    return errs, rss


def stop_after(engine, cid: int, procs: list, n: int, done) -> None:
    """SIGTERM every worker once the ledger has ``n`` copies sent (a worker then stops cleanly,
    handing its claimed rows back): the memory of a big campaign without sending all of it."""
    while not done.wait(0.5):
        with engine.connect() as conn:
            sent = conn.exec_driver_sql(
                "select count(*) from deliveries where campaign_id = %s and state = 'sent'" % cid).scalar()
        if sent >= n:
            for p in procs:  # os.kill, not Popen.send_signal: that polls, and would reap before wait4
                if p.returncode is None:
                    try:
                        os.kill(p.pid, signal.SIGTERM)
                    except ProcessLookupError:
                        pass
            return


def start_sink(port: int, latency_ms: float, out) -> subprocess.Popen:
    """smtp-sink (C) on loopback, or with ``latency_ms`` our sink that answers like a relay that
    far away (benchmarks/latency_sink.py, whose count is on its stdout once it exited)."""
    if not latency_ms:
        return subprocess.Popen(["smtp-sink", "-u", "nobody", "-c", f"127.0.0.1:{port}", "1024"],
                                stdout=out, stderr=subprocess.STDOUT)
    from latency_sink import spawn

    return spawn(port, latency_ms, stderr=out)


def run_once(engine, config, pg_url: str, digest, workers: int, concurrency: int, until: int = 0,
             latency_ms: float = 0.0) -> dict:
    from newsletter.dispatch.campaigns import cancel_campaign, create_campaign, schedule_campaign

    cid = create_campaign(engine, digest, ["bench"], config, name=f"bench {workers} worker(s)").id
    schedule_campaign(engine, cid, datetime.now(timezone.utc) - timedelta(seconds=1))
    port = free_port()
    # The sink's running counter goes to a file: an unread pipe would fill and stall the sink.
    counter = tempfile.TemporaryFile()
    sink = start_sink(port, latency_ms, counter)
    time.sleep(0.3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=pg_url, NEWSLETTER_SECRET_KEY=SECRET, PYTHONPATH=str(REPO / "src"),
               NEWSLETTER_BASE_URL="https://news.example.org")  # links readers could follow (the send refuses others)
    cmd = [sys.executable, "-m", "newsletter", "worker", "--once", "--smtp", f"smtp://127.0.0.1:{port}",
           "--concurrency", str(concurrency)]
    t0 = time.monotonic()
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    done = threading.Event()
    if until:
        threading.Thread(target=stop_after, args=(engine, cid, procs, until, done), daemon=True).start()
    errs, rss_kb = wait_all(procs)
    done.set()
    wall = time.monotonic() - t0
    sink.send_signal(signal.SIGTERM)
    sink.wait(timeout=10)
    counter.seek(0)
    out = counter.read().decode(errors="replace") + (sink.stdout.read() if sink.stdout else "")
    counts = [int(m) for m in re.findall(r"(?:mesg|messages)=(\d+)", out)]
    sink_messages = counts[-1] if counts else -1
    with engine.connect() as conn:
        sent, first, last, distinct = conn.exec_driver_sql(
            "select count(*), min(sent_at), max(sent_at), count(distinct subscriber_id) from deliveries "
            "where campaign_id = %s and state = 'sent'" % cid).one()
        total = conn.exec_driver_sql("select count(*) from deliveries where campaign_id = %s" % cid).scalar()
        status = conn.exec_driver_sql("select status from campaigns where id = %s" % cid).scalar()
    if status == "running":  # stopped part-sent (--stop-after): the next run's workers must not take it up
        cancel_campaign(engine, cid, reason="benchmark run stopped part-sent")
    window = (last - first).total_seconds() if first and last else 0.0
    # Each worker logs what it sent ("this pass sent N"); the ledger does not keep who sent a row.
    shares = [sum(int(x) for x in re.findall(r"this pass sent (\d+)", e)) for e in errs]
    return {
        "workers": workers, "campaign": cid, "status": status, "recipients": total, "sent": sent,
        "distinct": distinct, "sink": sink_messages, "wall_s": wall, "window_s": window,
        "rate_wall": sent / wall if wall else 0.0, "rate_window": sent / window if window else 0.0,
        "shares": shares, "exit_codes": [p.returncode for p in procs], "rss_kb": rss_kb,
        "errors": [e.strip().splitlines()[-1] for e, p in zip(errs, procs) if p.returncode],
        "logs": errs,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipients", default="100000", help="one size, or several: 10000,100000,1000000")
    ap.add_argument("--workers", default="1,2,4")
    ap.add_argument("--concurrency", type=int, default=4, help="SMTP connections per worker")
    ap.add_argument("--stop-after", type=int, default=0,
                    help="stop the workers (SIGTERM) once this many copies are sent: RSS of a big campaign, part-sent")
    ap.add_argument("--latency", type=float, default=0.0,
                    help="ms: a sink that waits this long before each batch of replies (a relay far away) "
                         "instead of smtp-sink on loopback")
    ap.add_argument("--keep", action="store_true", help="keep the benchmark database")
    ap.add_argument("--logs", action="store_true", help="print the workers' log lines")
    args = ap.parse_args()
    if not args.latency and not shutil.which("smtp-sink"):
        print("smtp-sink not found: apt-get install -y postfix", file=sys.stderr)
        return 2
    ok = True
    for n in [int(x) for x in args.recipients.split(",")]:
        ok = one_size(args, n) and ok
    return 0 if ok else 1


def one_size(args, recipients: int) -> bool:
    """Every worker count of ``--workers`` on a fresh database of ``recipients`` subscribers."""
    import psycopg

    from newsletter.config import Config
    from newsletter.store.db import get_engine, upgrade

    name = "nl_bench_workers_" + uuid.uuid4().hex[:8]
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'create database "{name}"')
    pg_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1) + "/" + name
    try:
        upgrade(pg_url)
        t = time.monotonic()
        fill_subscribers(pg_url, recipients)
        print(f"# {recipients:,} subscribers loaded in {time.monotonic() - t:.1f} s", flush=True)
        engine = get_engine(pg_url)
        config = Config(database_url=pg_url, secret_key=SECRET)
        digest = sample_digest(config)
        print(f"# {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.node()}, {os.cpu_count()} CPU(s), "
              f"Python {platform.python_version()}, digest {len(digest.articles)} articles, "
              f"{digest.html_size / 1024:.0f} KB HTML, {args.concurrency} connection(s) per worker, "
              f"sink {'smtp-sink' if not args.latency else f'latency_sink.py, {args.latency:g} ms per reply batch'}, "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(f"{'workers':>7} {'msgs/s (wall)':>14} {'msgs/s (sending)':>17} {'wall s':>7} {'sent':>8} "
              f"{'sink':>8} {'dup':>4}  per-worker share; peak RSS MiB", flush=True)
        results = []
        for n in [int(x) for x in args.workers.split(",")]:
            r = run_once(engine, config, pg_url, digest, n, args.concurrency, args.stop_after, args.latency)
            results.append(r)
            dup = r["sink"] - r["sent"]
            ok = r["sent"] == r["distinct"] and dup == 0 and (args.stop_after or r["sent"] == r["recipients"])
            print(f"{n:>7} {r['rate_wall']:>14.0f} {r['rate_window']:>17.0f} {r['wall_s']:>7.1f} {r['sent']:>8} "
                  f"{r['sink']:>8} {dup:>4}  {' / '.join(str(s) for s in r['shares'])}; "
                  f"{' / '.join(f'{k / 1024:.0f}' for k in r['rss_kb'])}"
                  f"{'' if ok else '  << CHECK FAILED: status ' + r['status']}"
                  f"{'  errors: ' + '; '.join(r['errors']) if r['errors'] else ''}", flush=True)
            if args.logs:
                for i, log in enumerate(r["logs"]):
                    for line in log.strip().splitlines():
                        print(f"#   worker {i + 1}: {line}")
        base = results[0]["rate_window"] or 1.0
        print("# speed-up over 1 worker (sending window): "
              + ", ".join(f"{r['workers']}: {r['rate_window'] / base:.2f}x" for r in results), flush=True)
        engine.dispose()
        return all(r["sink"] == r["sent"] == r["distinct"] and (args.stop_after or r["sent"] == r["recipients"])
                   for r in results)
    finally:
        if not args.keep:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    sys.exit(main())
