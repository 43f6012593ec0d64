"""Migrations: an empty SQLite and an empty PostgreSQL reach head, and the schema then matches
every model module (autogenerate finds no difference)."""

from __future__ import annotations

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
    import pkgutil

    import newsletter.store as store

    modules = [m.name for m in pkgutil.iter_modules(store.__path__) if m.name == "models" or m.name.endswith("_models")]
    import importlib

    for name in modules:
        mod = importlib.import_module(f"newsletter.store.{name}")
        for obj in vars(mod).values():
            table = getattr(obj, "__table__", None)
            if table is not None and getattr(obj, "__module__", "") == mod.__name__:
                assert table.name in metadata.tables, f"{name}.{obj.__name__} is not in store/metadata.py"
    assert {"subscribers", "lists", "subscriptions", "suppressions"} <= set(metadata.tables)


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
