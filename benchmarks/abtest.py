"""A/B test benchmark: the ledger of an A/B campaign (every row held, the test share released
with its variants by a stable hash) against a plain campaign's, on SQLite and PostgreSQL; and
the per-copy build cost with two subject variants against one.

    .venv/bin/python benchmarks/abtest.py [--rows 200000] [--share 20%] [--skip-pg] [--skip-sqlite]

Rows are generated inside the database as in benchmarks/segments.py.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent))
from segments import PG_ADMIN, PG_FILL, PG_SUBS, SQLITE_FILL, SQLITE_SUBS, Digest  # noqa: E402


def _fill(engine, n: int, pg: bool) -> None:
    from newsletter.store.lists import create_list

    lid = create_list(engine, "weekly", "Weekly").id
    with engine.begin() as conn:
        conn.execute(text(PG_FILL if pg else SQLITE_FILL), {"n": n})
        conn.execute(text(PG_SUBS if pg else SQLITE_SUBS), {"lid": lid})
        if pg:
            conn.execute(text("SELECT setval('subscribers_id_seq', :n)"), {"n": n})


def run(url: str, n: int, share: str, pg: bool) -> dict:
    from newsletter.config import Config
    from newsletter.dispatch.abtest import ab_spec, create_ab_campaign, create_ledger_for
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.store import db, queries as q

    db.upgrade(url)
    engine = db.get_engine(url)
    _fill(engine, n, pg)
    config = Config(database_url=url, secret_key="b" * 32, base_url="https://news.example.org",
                    from_address="News <news@example.org>")
    plain = create_campaign(engine, Digest(), ["weekly"], config)
    ab = create_ab_campaign(engine, Digest(), ["weekly"], config,
                            ab_spec("Subject A", ["Subject B", None, None], test_share=share), track="clicks")
    out = {}
    for label, c in (("plain", plain), ("ab", ab)):
        t = time.perf_counter()
        with db.transaction(engine) as conn:
            create_ledger_for(conn, c.id)
            counts = q.counts_by_state(conn, c.id)
        out[label] = (time.perf_counter() - t, counts)
    engine.dispose()
    return out


def build_rate(copies: int = 20000) -> dict:
    """Copies built per second by one skeleton and by a two-variant VariantFactory (no database)."""
    from newsletter.dispatch.abtest import VariantFactory
    from newsletter.dispatch.personalize import CampaignContent, MessageFactory, Recipient

    html = "<html><head><title>A</title></head><body>" + "<p>Hello *|NAME:reader|*, a story.</p>" * 40 + \
           '<a href="*|UNSUBSCRIBE_URL|*">unsubscribe</a></body></html>'

    def make(subject: str) -> MessageFactory:
        return MessageFactory(CampaignContent(1, subject, "News <news@example.org>", html, "Hi *|NAME|*"),
                              base_url="https://news.example.org", unsubscribe_token=lambda s, lid: f"t{s}.{lid}")

    one, two = make("Subject A"), VariantFactory([make("Subject A"), make("Subject B")])
    res = {}
    for label, f in (("one subject", one), ("two variants", two)):
        t = time.perf_counter()
        for i in range(copies):
            f.build(Recipient(i + 1, 1, f"r{i}@example.com", "Reader", {}, i % 2))
        res[label] = copies / (time.perf_counter() - t)
    return res


def report(label: str, r: dict) -> None:
    for kind, (secs, counts) in r.items():
        print(f"{label:10} ledger {kind:5} {secs:6.2f} s  {dict(sorted(counts.items()))}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    ap.add_argument("--share", default="20%")
    ap.add_argument("--skip-pg", action="store_true")
    ap.add_argument("--skip-sqlite", action="store_true")
    a = ap.parse_args()
    print(f"{platform.node()} {platform.machine()} {os.cpu_count()} cpu, Python {platform.python_version()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {a.rows:,} readers, test share {a.share}")
    if not a.skip_sqlite:
        with tempfile.TemporaryDirectory() as d:
            report("sqlite", run(f"sqlite:///{Path(d) / 'ab.db'}", a.rows, a.share, False))
    if not a.skip_pg:
        import psycopg

        name = "nl_ab_bench_" + uuid.uuid4().hex[:8]
        with psycopg.connect(PG_ADMIN, autocommit=True) as c:
            c.execute(f'create database "{name}"')
        try:
            base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
            report("postgresql", run(f"{base}/{name}", a.rows, a.share, True))
        finally:
            with psycopg.connect(PG_ADMIN, autocommit=True) as c:
                c.execute(f'drop database if exists "{name}" with (force)')
    for label, rate in build_rate().items():
        print(f"build {label:12} {rate:10.0f} copies/s")


if __name__ == "__main__":
    main()
