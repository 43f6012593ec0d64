"""Tracking benchmark: redirects per second served by `newsletter serve` (one uvicorn process) on
loopback under wrk, and the report query for 100,000 recipients x 5 events on SQLite and
PostgreSQL.

    .venv/bin/python benchmarks/tracking.py [--readers 5000] [--seconds 10] [--connections 64]
                                            [--report-readers 100000] [--skip-pg] [--skip-serve]

Needs Debian's `wrk`. The redirects are distinct signed tokens (readers x 3 links), so the
replay filter does not shortcut them; every hit is classified and stored (the count stored is
printed). Targets: >= 2,000 redirects/s on 2 cores; report < 200 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "src"))

from sqlalchemy import text  # noqa: E402

from newsletter.config import Config  # noqa: E402

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
SECRET = "benchmark-secret-key-0123456789abcdef"
UTC = timezone.utc
HTML = ("<html><body><p>Hello</p>" + "".join(f'<a href="https://example.org/story-{i}">Story {i}</a>' for i in range(3))
        + '<a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a></body></html>')


@dataclass
class Digest:
    subject: str = "Benchmark issue"
    preheader: str = ""
    html: str = HTML
    text: str = "Unsubscribe: *|UNSUBSCRIBE_URL|*\n"
    images: list = field(default_factory=list)
    from_address: str = ""
    reply_to: str | None = None
    article_keys: list = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fill(engine, readers: int) -> int:
    """A list of ``readers`` active subscribers and a tracked campaign every copy of which was sent."""
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.store import queries as q
    from newsletter.store.lists import create_list

    lid = create_list(engine, "bench", "Bench").id
    with engine.begin() as conn:
        if engine.dialect.name == "sqlite":
            conn.execute(text("""WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n)
                INSERT INTO subscribers (id, email, email_key, name, attributes, created_at, updated_at)
                SELECT i, 'r' || i || '@example.com', 'r' || i || '@example.com', '', '{}', datetime('now'), datetime('now') FROM c"""),
                         {"n": readers})
        else:
            conn.execute(text("""INSERT INTO subscribers (id, email, email_key, name, attributes, created_at, updated_at)
                SELECT i, 'r' || i || '@example.com', 'r' || i || '@example.com', '', '{}', now(), now()
                FROM generate_series(1, :n) AS i"""), {"n": readers})
            conn.execute(text("SELECT setval(pg_get_serial_sequence('subscribers', 'id'), :n)"), {"n": readers})
        conn.execute(text("""INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
            SELECT id, :lid, 'active', created_at, created_at FROM subscribers"""), {"lid": lid})
    config = Config(database_url=str(engine.url.render_as_string(hide_password=False)), secret_key=SECRET,
                    base_url="https://news.example.org", from_address="Bench <news@example.org>")
    c = create_campaign(engine, Digest(), ["bench"], config, track="opens,clicks")
    sent = datetime.now(UTC) - timedelta(hours=1)
    with engine.begin() as conn:
        q.create_ledger(conn, c.id)
        conn.execute(text("UPDATE deliveries SET state = 'sent', sent_at = :t WHERE campaign_id = :c"), {"t": sent, "c": c.id})
    return c.id


def serve_bench(args) -> None:
    from newsletter.dispatch.campaigns import get_campaign
    from newsletter.dispatch.personalize import CampaignContent
    from newsletter.engagement.campaign import tracked_content
    from newsletter.store.db import get_engine, upgrade

    if not shutil.which("wrk"):
        sys.exit("wrk is not installed (apt-get install wrk)")
    tmp = Path(tempfile.mkdtemp(prefix="nl-track-"))
    url = args.serve_url or f"sqlite:///{tmp / 'bench.db'}"
    upgrade(url)
    engine = get_engine(url)
    cid = fill(engine, args.readers)
    port = free_port()
    config = Config(database_url=url, secret_key=SECRET, base_url=f"http://127.0.0.1:{port}")
    c = get_campaign(engine, cid)
    content = CampaignContent(cid, c.subject, c.from_address, c.html, c.text)
    _, tracker = tracked_content(engine, c, config, SECRET.encode(), content)
    paths = [tracker.click(sid, n)[len(config.base_url):] for sid in range(1, args.readers + 1) for n in (1, 2, 3)]
    (tmp / "paths.txt").write_text("\n".join(paths) + "\n")
    (tmp / "paths.lua").write_text(f"""
local paths = {{}}
for line in io.lines("{tmp / 'paths.txt'}") do paths[#paths + 1] = line end
local counter = 0
function setup(thread) thread:set("tid", counter); counter = counter + 1 end
local i = 0
function init(args) i = tid * math.floor(#paths / 2) end  -- threads start apart: no replays
request = function()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i], {{["User-Agent"] = "Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36"}})
end
""")
    env = dict(os.environ, NEWSLETTER_DB=url, NEWSLETTER_SECRET_KEY=SECRET, NEWSLETTER_BASE_URL=config.base_url)
    server = subprocess.Popen([sys.executable, "-m", "newsletter", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    sys.exit("newsletter serve did not start: " + (server.stderr.read() or b"").decode()[-500:])
                time.sleep(0.1)
        subprocess.run(["wrk", "-t1", "-c8", "-d2s", "-s", str(tmp / "paths.lua"), f"http://127.0.0.1:{port}"],
                       capture_output=True)  # warm-up
        out = subprocess.run(["wrk", "-t2", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                              "-s", str(tmp / "paths.lua"), f"http://127.0.0.1:{port}"],
                             capture_output=True, text=True).stdout
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)
        err = (server.stderr.read() or b"").decode()
        if "Traceback" in err or "failed" in err:
            print("server stderr:", err[-3000:])
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    total = int(re.search(r"(\d+) requests in", out).group(1))
    p99 = re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    with engine.begin() as conn:
        stored = conn.execute(text("SELECT count(*) FROM engagement_events")).scalar()
    print(f"{engine.dialect.name}: redirects/s: {rps:,.0f} (wrk -t2 -c{args.connections} -d{args.seconds}s, p99 {p99.group(1) if p99 else '?'}, "
          f"non-3xx {non2xx.group(1) if non2xx else 0}); {total:,} requests, events stored {stored:,} (warm-up included)")
    engine.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def report_bench(engine, readers: int, label: str) -> None:
    from newsletter.engagement.report import campaign_report

    t = time.perf_counter()
    cid = fill(engine, readers)
    # 5 events per reader: 2 opens (human, apple-mpp), 3 clicks on links 1-3 (2 human, 1 scanner).
    rows = ("SELECT 'open' AS kind, CAST(NULL AS INTEGER) AS link, 'human' AS agent UNION ALL SELECT 'open', NULL, 'apple-mpp' "
            "UNION ALL SELECT 'click', 1, 'human' UNION ALL SELECT 'click', 2, 'human' UNION ALL SELECT 'click', 3, 'scanner'")
    with engine.begin() as conn:
        conn.execute(text(f"""INSERT INTO engagement_events (campaign_id, subscriber_id, kind, link_idx, agent, why, ip_class, occurred_at)
            SELECT :c, d.subscriber_id, v.kind, v.link, v.agent, '', 'ipv4', d.sent_at
            FROM deliveries d CROSS JOIN ({rows}) AS v WHERE d.campaign_id = :c"""), {"c": cid})
        if engine.dialect.name == "postgresql":
            conn.execute(text("ANALYZE"))
    if engine.dialect.name == "postgresql":  # as autovacuum would have: the visibility map lets index-only scans skip the heap
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE engagement_events"))
    fill_s = time.perf_counter() - t
    campaign_report(engine, cid)  # warm-up
    samples = []
    for _ in range(5):
        t = time.perf_counter()
        r = campaign_report(engine, cid)
        samples.append((time.perf_counter() - t) * 1000)
    assert r.clicks.events["human"] == 2 * readers, r.clicks
    print(f"{label}: report for {readers:,} recipients x 5 events: median {statistics.median(samples):.0f} ms, "
          f"min {min(samples):.0f} ms (fill {fill_s:.1f} s)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", type=int, default=50_000)
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--report-readers", type=int, default=100_000)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-serve", action="store_true")
    ap.add_argument("--serve-pg", action="store_true", help="serve from a fresh PostgreSQL database instead of SQLite")
    args = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, load {os.getloadavg()[0]:.1f}")
    from newsletter.store.db import get_engine, upgrade

    args.serve_url = None
    if not args.skip_serve and args.serve_pg:
        import psycopg

        name = "nl_serve_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        args.serve_url = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
        try:
            serve_bench(args)
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    elif not args.skip_serve:
        serve_bench(args)
    tmp = Path(tempfile.mkdtemp(prefix="nl-report-"))
    url = f"sqlite:///{tmp / 'r.db'}"
    upgrade(url)
    report_bench(get_engine(url), args.report_readers, "SQLite")
    shutil.rmtree(tmp, ignore_errors=True)
    if not args.skip_pg:
        import psycopg

        name = "nl_bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        pg = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/" + name
        try:
            upgrade(pg)
            engine = get_engine(pg)
            report_bench(engine, args.report_readers, "PostgreSQL")
            engine.dispose()
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
