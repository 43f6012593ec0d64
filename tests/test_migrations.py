"""Migrations: an empty SQLite and an empty PostgreSQL reach head, and the schema then matches
every model module (autogenerate finds no difference)."""

from __future__ import annotations

import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from newsletter.errors import SchemaOutdated
from newsletter.store import db
from newsletter.store.metadata import metadata


def test_upgrade_empty_database_to_head_matches_models(db_url):
    before, after = db.upgrade(db_url)
    assert before is None and after == db.head_revision()
    engine = db.get_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], f"models and migrations differ: {diff}"
        db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_metadata_holds_every_model_module():
    """store/metadata.py on its own, in a fresh interpreter, holds every table a model module
    defines. (Checked in this process, importing the model modules would register their tables in
    the same shared SQLModel MetaData and hide a missing import line.)"""
    import importlib
    import pkgutil

    import newsletter.store as store

    modules = [m.name for m in pkgutil.iter_modules(store.__path__) if m.name == "models" or m.name.endswith("_models")]
    defined: dict[str, str] = {}
    for name in modules:
        mod = importlib.import_module(f"newsletter.store.{name}")
        for obj in vars(mod).values():
            table = getattr(obj, "__table__", None)
            if table is not None and getattr(obj, "__module__", "") == mod.__name__:
                defined[table.name] = f"{name}.{obj.__name__}"
    assert {"subscribers", "lists", "subscriptions", "suppressions", "segments", "bounce_events"} <= set(defined)
    listed = subprocess.run([sys.executable, "-c", "from newsletter.store.metadata import metadata; print(*metadata.tables)"],
                            capture_output=True, text=True, timeout=120, check=True).stdout.split()
    missing = sorted(where for table, where in defined.items() if table not in listed)
    assert not missing, f"not in store/metadata.py: {missing}"


def test_upgrade_twice_is_a_no_op(db_url):
    db.upgrade(db_url)
    before, after = db.upgrade(db_url)
    assert before == after == db.head_revision()


def test_empty_database_is_reported_as_needing_upgrade(db_url):
    engine = db.get_engine(db_url)
    try:
        with pytest.raises(SchemaOutdated, match="run `newsletter db upgrade`"):
            db.require_current_schema(engine)
    finally:
        engine.dispose()


def test_old_schema_is_reported_as_out_of_date(db_url):
    head = db.head_revision()
    if head == "0001":
        pytest.skip("only one migration exists")
    db.upgrade(db_url, "0001")
    engine = db.get_engine(db_url)
    try:
        with pytest.raises(SchemaOutdated, match=r"out of date \(at 0001.*run `newsletter db upgrade`"):
            db.require_current_schema(engine)
    finally:
        engine.dispose()
    db.upgrade(db_url)
    engine = db.get_engine(db_url)
    db.require_current_schema(engine)
    engine.dispose()


def test_upgrade_0003_to_head_keeps_subscriptions_and_records_no_confirmation(db_url):
    """0004 adds subscriptions.confirmation_sent_at: existing rows stay as they were, with NULL
    (never recorded), so the next send-confirmations mails whoever is still unconfirmed."""
    import sqlalchemy as sa

    db.upgrade(db_url, "0003")
    engine = db.get_engine(db_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(
                "insert into lists (slug, name, description, opt_in, created_at, updated_at) "
                "values ('news', 'News', '', 'double', '2026-01-02 03:04:05', '2026-01-02 03:04:05')"
            ))
            for i, email in enumerate(["a@example.com", "b@example.com"], 1):
                conn.execute(sa.text(
                    "insert into subscribers (email, email_key, name, attributes, created_at, updated_at) "
                    "values (:e, :e, :n, '{}', '2026-01-02 03:04:05', '2026-01-02 03:04:05')"
                ), {"e": email, "n": f"Person {i}"})
            conn.execute(sa.text(
                "insert into subscriptions (subscriber_id, list_id, status, source, created_at, updated_at, confirmed_at) "
                "values (1, 1, 'unconfirmed', 'import', '2026-01-02 03:04:05', '2026-01-02 03:04:05', null), "
                "(2, 1, 'active', 'cli', '2026-01-02 03:04:05', '2026-01-02 03:04:05', '2026-01-03 00:00:00')"
            ))
        engine.dispose()
        before, after = db.upgrade(db_url)
        assert (before, after) == ("0003", db.head_revision())
        from newsletter.store import subscribers as S
        from newsletter.store import optin
        from newsletter.store.models import Subscription

        engine = db.get_engine(db_url)
        db.require_current_schema(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.select(Subscription.subscriber_id, Subscription.status, Subscription.source,
                          Subscription.confirmed_at, Subscription.confirmation_sent_at).order_by(Subscription.id)
            ).all()
        assert [(r[0], r[1], r[2], r[4]) for r in rows] == [(1, "unconfirmed", "import", None), (2, "active", "cli", None)]
        assert rows[0][3] is None and rows[1][3].isoformat() == "2026-01-03T00:00:00+00:00"
        assert S.get_subscriber(engine, "b@example.com").name == "Person 2"
        assert optin.record_confirmation_sent(engine, 1, 1)
    finally:
        engine.dispose()


def test_upgrade_0009_to_head_gives_paused_campaigns_their_pause_kind(db_url):
    """0010 adds campaigns.pause_kind: a paused campaign gets the kind its reason began with (a
    user's when it names none), every other campaign NULL."""
    import sqlalchemy as sa

    db.upgrade(db_url, "0009")
    engine = db.get_engine(db_url)
    reasons = [("paused", "auto-paused (warm-up): 5 of 5 today"), ("paused", "auto-paused after 3 consecutive connection failures"),
               ("paused", "paused by the bounce guard: complaint rate 2.50%"), ("paused", "paused by the user"),
               ("running", ""), ("finished", "")]
    try:
        with engine.begin() as conn:
            for status, reason in reasons:
                conn.execute(sa.text(
                    "insert into campaigns (name, subject, from_address, preheader, html, text, headers, meta, status, "
                    "status_reason, created_at, updated_at) values ('c', 's', 'a@example.com', '', '', '', '{}', '{}', "
                    ":s, :r, '2026-01-02 03:04:05', '2026-01-02 03:04:05')"), {"s": status, "r": reason})
        engine.dispose()
        db.upgrade(db_url)
        engine = db.get_engine(db_url)
        with engine.connect() as conn:
            kinds = conn.execute(sa.text("select pause_kind from campaigns order by id")).scalars().all()
        assert kinds == ["warmup", "connections", "bounce-guard", "user", None, None]
    finally:
        engine.dispose()
