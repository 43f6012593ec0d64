"""Segment benchmark: a 1,000,000-subscriber list, a 3-condition segment; time its live count and
the ledger creation of a campaign narrowed by it, on SQLite and PostgreSQL.

    .venv/bin/python benchmarks/segments.py [--rows 1000000] [--skip-pg] [--skip-sqlite] [--explain]

Rows are generated inside the database (a recursive CTE on SQLite, generate_series on
PostgreSQL): attributes as a CSV import stores them (all strings: city, age, plan), signup
dates spread over three years. Targets: count and ledger each < 2 s on PostgreSQL, < 5 s on SQLite.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import text

PG_ADMIN = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
FILTER = ('{"all": [{"attr": "city", "eq": "Lisbon"}, {"subscribed": {"within": "365d"}},'
          ' {"attr": "age", "gt": 30}]}')

SQLITE_FILL = """
WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < :n)
INSERT INTO subscribers (id, email, email_key, name, attributes, created_at, updated_at)
SELECT i, 'reader' || i || '@example.com', 'reader' || i || '@example.com', 'Reader ' || i,
       json_object('city', CASE i % 6 WHEN 0 THEN 'Lisbon' WHEN 1 THEN 'Porto' WHEN 2 THEN 'Braga'
                   WHEN 3 THEN 'Coimbra' WHEN 4 THEN 'Faro' ELSE 'Evora' END,
                   'age', CAST(18 + (i * 7) % 60 AS TEXT), 'plan', CASE WHEN i % 7 = 0 THEN 'pro' ELSE 'free' END),
       datetime('now', '-' || (i % 1095) || ' days'), datetime('now')
FROM c
"""
SQLITE_SUBS = """
INSERT INTO subscriptions (subscriber_id, list_id, status, created_at, updated_at)
SELECT id, :lid, CASE WHEN id % 20 = 0 THEN 'unsubscribed' ELSE 'active' END, created_at, created_at FROM subscribers
"""
PG_FILL = """
INSERT INTO subscribers (id, email, email_key, name, attributes, created_at, updated_at)
SELECT i, 'reader' || i || '@example.com', 'reader' || i || '@example.com', 'Reader ' || i,
       json_build_object('city', (ARRAY['Lisbon','Porto','Braga','Coimbra','Faro','Evora'])[i % 6 + 1],
                         'age', (18 + (i * 7) % 60)::text, 'plan', CASE WHEN i % 7 = 0 THEN 'pro' ELSE 'free' END),
       now() - make_interval(days => (i % 1095)::int), now()
FROM generate_series(1, :n) AS i
"""
PG_SUBS = SQLITE_SUBS


@dataclass
class Digest:
    """The least ``create_campaign`` needs."""

    subject: str = "Segment benchmark"
    preheader: str = ""
    html: str = '<html><head><title>x</title></head><body><a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a></body></html>'
    text: str = "Unsubscribe: *|UNSUBSCRIBE_URL|*\n"
    images: list = field(default_factory=list)
    article_keys: list = field(default_factory=list)


def bench(url: str, rows: int, explain: bool) -> dict:
    from newsletter.config import Config
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.store import db
    from newsletter.store import queries as q
    from newsletter.store.lists import create_list
    from newsletter.store.segments import create_segment, get_segment

    db.upgrade(url)
    engine = db.get_engine(url)
    lid = create_list(engine, "weekly", "Weekly").id
    pg = engine.dialect.name == "postgresql"
    t0 = time.perf_counter()
    with engine.begin() as conn:
        conn.execute(text(PG_FILL if pg else SQLITE_FILL), {"n": rows})
        conn.execute(text(PG_SUBS if pg else SQLITE_SUBS), {"lid": lid})
        if pg:
            conn.execute(text("select setval('subscribers_id_seq', :n)"), {"n": rows})
    with engine.begin() as conn:
        conn.execute(text("ANALYZE"))
    fill = time.perf_counter() - t0
    create_segment(engine, "lisbon-recent-30plus", "weekly", FILTER)
    t0 = time.perf_counter()
    info = get_segment(engine, "lisbon-recent-30plus")
    count_s = time.perf_counter() - t0
    config = Config(database_url=url, secret_key="benchmark-secret-0123456789abcdef",
                    from_address="news@example.org", base_url="https://news.example.org")
    c = create_campaign(engine, Digest(), ["weekly"], config, segment="lisbon-recent-30plus")
    t0 = time.perf_counter()
    with engine.begin() as conn:
        q.create_ledger(conn, c.id)
    ledger_s = time.perf_counter() - t0
    with engine.begin() as conn:
        added = sum(q.counts_by_state(conn, c.id).values())
    plan = ""
    if explain:
        from newsletter.store.segments import _members_query, _row
        from sqlalchemy import func

        with engine.begin() as conn:
            stmt = _members_query(conn, _row(conn, "lisbon-recent-30plus"), None, [func.count()])
            compiled = stmt.compile(dialect=engine.dialect, compile_kwargs={"render_postcompile": True})
            prefix = "EXPLAIN (ANALYZE, COSTS OFF) " if pg else "EXPLAIN QUERY PLAN "
            res = conn.exec_driver_sql(prefix + str(compiled), compiled.params if pg else tuple(compiled.params[k] for k in compiled.positiontup))
            plan = "\n".join(" ".join(str(x) for x in r[-1:]) for r in res)
    engine.dispose()
    return {"fill_s": fill, "count_s": count_s, "matching": info.matching, "mailable": info.mailable,
            "ledger_s": ledger_s, "ledger_rows": added, "plan": plan}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    ap.add_argument("--explain", action="store_true", help="print the count query's plan")
    a = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.rows:,} subscribers, filter {FILTER}")
    results = []
    if not a.skip_sqlite:
        with tempfile.TemporaryDirectory() as d:
            results.append(("sqlite", bench(f"sqlite:///{Path(d) / 'bench.db'}", a.rows, a.explain), 5.0))
    if not a.skip_pg:
        import psycopg

        name = "nl_bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'create database "{name}"')
        try:
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            results.append(("postgresql", bench(f"{base}/{name}", a.rows, a.explain), 2.0))
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'drop database if exists "{name}" with (force)')
    ok = True
    for dbname, r, target in results:
        good = r["count_s"] < target and r["ledger_s"] < target
        ok &= good
        print(f"{dbname:10} fill {r['fill_s']:.1f}s  count {r['count_s']:.2f}s ({r['matching']:,} matching, "
              f"{r['mailable']:,} mailable)  ledger {r['ledger_s']:.2f}s ({r['ledger_rows']:,} rows)  "
              f"target < {target:.0f}s: {'ok' if good else 'MISSED'}")
        if r["plan"]:
            print(r["plan"])
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
