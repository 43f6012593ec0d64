"""Fast migrated databases for the store tests.

Migrating (or even cloning) a PostgreSQL database per test costs 1-3 s on this shared
machine, so the schema is migrated once per session: SQLite tests get their own copy of a
migrated file; PostgreSQL tests share one migrated database whose tables are truncated
(identities restarted) before each test, so every test starts from an empty, current schema.
The migration tests themselves start from truly empty databases (``db_url``).
"""

from __future__ import annotations

import shutil
import uuid

import pytest

from conftest import IN_CI, PG_ADMIN_URL, _pg_admin_connect
from newsletter.store import db


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory):
    path = tmp_path_factory.mktemp("store-template") / "template.db"
    db.upgrade(f"sqlite:///{path}")  # the engine is disposed, so the WAL is checkpointed into the file
    return path


@pytest.fixture(scope="session")
def _pg_template(_pg_reason):
    if _pg_reason:
        yield None
        return
    name = "nl_tpl_" + uuid.uuid4().hex[:12]
    with _pg_admin_connect() as conn:
        conn.execute(f'create database "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    db.upgrade(f"{base}/{name}")
    yield name
    with _pg_admin_connect() as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


def _pg_clean(template: str | None, reason: str | None) -> str:
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)
    from newsletter.store.metadata import metadata

    base = PG_ADMIN_URL.rsplit("/", 1)[0]
    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    import psycopg

    with psycopg.connect(f"{base}/{template}", autocommit=True) as conn:
        conn.execute(f"truncate {names} restart identity cascade")
    return f"{base.replace('postgresql://', 'postgresql+psycopg://', 1)}/{template}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def migrated_url(request, tmp_path, _pg_reason):
    """A database at the newest schema, of this test's own: SQLite and PostgreSQL."""
    if request.param == "sqlite":
        path = tmp_path / "newsletter.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    return _pg_clean(request.getfixturevalue("_pg_template"), _pg_reason)


@pytest.fixture
def migrated_sqlite_url(tmp_path, _sqlite_template):
    path = tmp_path / "newsletter.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def migrated_pg_url(request, _pg_reason):
    return _pg_clean(request.getfixturevalue("_pg_template"), _pg_reason)
