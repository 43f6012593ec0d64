"""Local-time delivery benchmark: plan the buckets of a campaign to N readers spread over many
zones (the ledger plus each row's due time, in one transaction), then claim the first batch of
a mid-day bucket while most rows wait for later ones, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/localtime.py [--rows 200000] [--skip-pg] [--skip-sqlite]

Readers are generated in Python and inserted in bulk: one in three gives no zone (their list's
default or the config's applies), the others one of ZONES.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
UTC = timezone.utc
ZONES = ["Pacific/Kiritimati", "Pacific/Auckland", "Australia/Sydney", "Asia/Tokyo", "Asia/Shanghai",
         "Asia/Kolkata", "Asia/Kathmandu", "Asia/Dubai", "Europe/Moscow", "Europe/Berlin", "Europe/London",
         "Atlantic/Azores", "America/Sao_Paulo", "America/New_York", "America/Chicago", "America/Denver",
         "America/Los_Angeles", "Pacific/Honolulu", "America/St_Johns", "Asia/Tehran"]


def fill(url: str, rows: int) -> None:
    from newsletter.store.db import get_engine, upgrade
    from newsletter.store.lists import create_list
    from newsletter.store.models import MailingList, Subscriber, Subscription

    upgrade(url)
    engine = get_engine(url)
    create_list(engine, "weekly", "The Weekly", timezone="America/Sao_Paulo")
    now = datetime(2026, 10, 1, tzinfo=UTC)
    with engine.begin() as conn:
        lid = conn.execute(sa.select(MailingList.__table__.c.id)).scalar()
        step = 20000
        for start in range(0, rows, step):
            conn.execute(Subscriber.__table__.insert(), [
                {"id": i + 1, "email": f"r{i}@example.com", "email_key": f"r{i}@example.com", "name": "", "attributes": {},
                 "timezone": None if i % 3 == 0 else ZONES[i % len(ZONES)], "created_at": now, "updated_at": now}
                for i in range(start, min(rows, start + step))])
            conn.execute(Subscription.__table__.insert(), [
                {"subscriber_id": i + 1, "list_id": lid, "status": "active", "created_at": now, "updated_at": now}
                for i in range(start, min(rows, start + step))])
    engine.dispose()


def run(url: str, rows: int) -> dict:
    from newsletter.config import Config
    from newsletter.dispatch.campaigns import create_campaign, schedule_campaign
    from newsletter.compose import ComposeOptions
    from newsletter.compose.render import render
    from newsletter.articles.model import Article
    from newsletter.schedule.localtime import LocalTime, plan_ledger
    from newsletter.store import queries as q
    from newsletter.store.db import get_engine, transaction

    fill(url, rows)
    engine = get_engine(url)
    config = Config(database_url=url, timezone="Europe/Paris", secret_key="x" * 40)
    digest = render([Article(title="A", url="https://example.org/a", published=datetime(2026, 10, 2, tzinfo=UTC))],
                    config, ComposeOptions(subject="Bench"))
    cid = create_campaign(engine, digest, ["weekly"], config).id
    spec = LocalTime("08:00", datetime(2026, 11, 1).date())
    c = schedule_campaign(engine, cid, spec.first_instant(), local_time=spec.as_meta())
    t0 = time.perf_counter()
    with engine.connect() as conn, conn.begin() as tx:  # for comparison: the same ledger without buckets
        q.create_ledger(conn, cid, spec.first_instant())
        ledger_only = time.perf_counter() - t0
        tx.rollback()
    t0 = time.perf_counter()
    with transaction(engine) as conn:
        plan = plan_ledger(conn, cid, config, spec.first_instant(), c.meta)
    planned = time.perf_counter() - t0
    noon = datetime(2026, 11, 1, 7, 30, tzinfo=UTC)  # Europe's buckets are due, the Americas' are not
    t0 = time.perf_counter()
    with transaction(engine) as conn:
        ids = q.claim_batch(conn, cid, "bench", 1000, due_by=noon)
    claimed = time.perf_counter() - t0
    engine.dispose()
    return {"ledger_s": ledger_only, "plan_s": planned, "buckets": len(plan["buckets"]), "claim_1000_s": claimed, "claimed": len(ids)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    args = ap.parse_args()
    print(f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, {args.rows} readers, "
          f"{len(ZONES)} zones + list default; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            r = run(f"sqlite:///{tmp}/bench.db", args.rows)
            print(f"sqlite:     ledger alone {r['ledger_s']:.2f} s; ledger + buckets {r['plan_s']:.2f} s ({r['buckets']} buckets); claim 1000 due rows {r['claim_1000_s'] * 1000:.0f} ms ({r['claimed']})")
    if not args.skip_pg:
        import psycopg

        name = "nl_bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'create database "{name}"')
        try:
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            r = run(f"{base}/{name}", args.rows)
            print(f"postgresql: ledger alone {r['ledger_s']:.2f} s; ledger + buckets {r['plan_s']:.2f} s ({r['buckets']} buckets); claim 1000 due rows {r['claim_1000_s'] * 1000:.0f} ms ({r['claimed']})")
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
                conn.execute(f'drop database if exists "{name}" with (force)')


if __name__ == "__main__":
    main()
