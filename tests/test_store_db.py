"""Engines: SQLite pragmas, PostgreSQL URL forms, and one-line errors that never show a password."""

from __future__ import annotations

import os
import stat

import pytest

from newsletter.errors import StoreError
from newsletter.store import db


def test_sqlite_runs_with_wal_foreign_keys_and_busy_timeout(sqlite_url):
    engine = db.get_engine(sqlite_url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("pragma journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("pragma foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("pragma busy_timeout").scalar() >= 5000
    engine.dispose()


@pytest.mark.parametrize("url", ["postgres://u:p@h/d", "postgresql://u:p@h/d", "postgresql+psycopg://u:p@h/d"])
def test_postgres_urls_use_psycopg3(url):
    assert db.normalize_url(url).drivername == "postgresql+psycopg"


def test_mask_url_hides_password():
    assert "hunter2" not in db.mask_url("postgresql://ana:hunter2@db.example.net/news")
    assert "***" in db.mask_url("postgresql://ana:hunter2@db.example.net/news")


def test_unreachable_postgres_is_one_line_without_password():
    with pytest.raises(StoreError) as e:
        db.get_engine("postgres://ana:hunter2@127.0.0.1:1/news")
    msg = str(e.value)
    assert "cannot connect to database" in msg and "hunter2" not in msg and "\n" not in msg


@pytest.mark.parametrize("url, problem", [
    ("mysql://u@h/d", "unsupported database"),
    ("not a url", "not valid"),
    ("", "empty"),
])
def test_bad_urls_are_named(url, problem):
    with pytest.raises(StoreError, match=problem):
        db.get_engine(url)


def test_missing_directory(tmp_path):
    with pytest.raises(StoreError, match="does not exist"):
        db.get_engine(f"sqlite:///{tmp_path / 'nope' / 'x.db'}")


def test_read_only_database_file_is_refused(tmp_path):
    path = tmp_path / "ro.db"
    db.upgrade(f"sqlite:///{path}")
    before = path.read_bytes()
    os.chmod(path, stat.S_IRUSR | stat.S_IRGRP)
    try:
        with pytest.raises(StoreError, match="read-only"):
            db.get_engine(f"sqlite:///{path}")
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert path.read_bytes() == before


def test_a_file_that_is_not_a_database(tmp_path):
    path = tmp_path / "notes.db"
    path.write_text("hello, this is not SQLite\n" * 100)
    with pytest.raises(StoreError, match="not a SQLite database"):
        db.get_engine(f"sqlite:///{path}")


def test_session_scope_rolls_back_on_error(sqlite_url):
    from sqlalchemy import select

    from newsletter.store.models import MailingList

    db.upgrade(sqlite_url)
    engine = db.get_engine(sqlite_url)
    with pytest.raises(RuntimeError):
        with db.session_scope(engine) as s:
            s.add(MailingList(slug="weekly", name="Weekly"))
            s.flush()
            raise RuntimeError("boom")
    with db.session_scope(engine) as s:
        assert s.execute(select(MailingList)).first() is None
    engine.dispose()


def test_missing_file_is_not_created_unless_asked(tmp_path):
    from newsletter.errors import SchemaOutdated

    path = tmp_path / "fresh.db"
    for kwargs in ({"create": False}, {"readonly": True}):
        with pytest.raises(SchemaOutdated, match="does not exist yet.*newsletter db upgrade"):
            db.get_engine(f"sqlite:///{path}", **kwargs)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mode", [0o644, 0o444])
def test_readonly_engine_reads_and_refuses_writes(tmp_path, mode):
    from sqlalchemy import text

    path = tmp_path / "ro.db"
    db.upgrade(f"sqlite:///{path}")
    os.chmod(path, mode)
    try:
        engine = db.get_engine(f"sqlite:///{path}", readonly=True)
        db.require_current_schema(engine)
        with pytest.raises(StoreError, match="read-only|readonly"):
            with db.transaction(engine) as conn:
                conn.execute(text("insert into lists (slug, name, description, opt_in, created_at) "
                                  "values ('x', 'X', '', 'single', '2026-01-01')"))
        engine.dispose()
    finally:
        os.chmod(path, 0o644)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ro.db"]  # no -wal/-shm left beside it
