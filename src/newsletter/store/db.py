"""Database access: engines for SQLite and PostgreSQL, Alembic upgrades, schema checks, sessions.

SQLite runs with WAL, foreign keys and a busy timeout; PostgreSQL goes through psycopg 3.
Every failure to reach or write the database becomes a one-line ``StoreError`` whose text
never contains the password of the URL.
"""

from __future__ import annotations

import logging
import os
import re
import weakref
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Table, create_engine, event, exc as sa_exc
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.engine.url import URL
from sqlmodel import Session, SQLModel

from ..errors import SchemaOutdated, StoreError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 5

# Alembic's INFO lines ("Context impl SQLiteImpl", plugin setup) are noise for users.
logging.getLogger("alembic").setLevel(logging.WARNING)

_PASSWORD_IN_URL = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def table_of(model: type[SQLModel]) -> Table:
    """The Core ``Table`` of a SQLModel table class, for SQL written against columns (``t.c.status``).

    SQLModel's metaclass sets ``__table__`` at class creation, so type checkers do not see it;
    this reads it once, checked, and gives the rest of the code a typed handle."""
    table = getattr(model, "__table__", None)
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not a table model (declare it with table=True)")
    return table


def mask_url(url: str | URL) -> str:
    """The URL as text with any password replaced by ``***`` (safe for messages and logs)."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return _PASSWORD_IN_URL.sub(r"\1***\3", str(url))


def normalize_url(url: str) -> URL:
    """Parse a database URL; ``postgres://`` and ``postgresql://`` are routed to psycopg 3."""
    text = (url or "").strip()
    if not text:
        raise StoreError("database URL is empty: set NEWSLETTER_DATABASE_URL or pass --db")
    for prefix in ("postgres://", "postgresql://"):
        if text.startswith(prefix):
            text = "postgresql+psycopg://" + text[len(prefix):]
    try:
        parsed = make_url(text)
    except (sa_exc.ArgumentError, ValueError) as e:
        raise StoreError(f"database URL {mask_url(text)!r} is not valid: {e}") from None
    backend = parsed.get_backend_name()
    if backend not in {"sqlite", "postgresql"}:
        raise StoreError(f"database URL {mask_url(parsed)!r}: unsupported database {backend!r} (use sqlite:/// or postgresql://)")
    if backend == "postgresql" and parsed.get_driver_name() != "psycopg":
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def sqlite_path(url: str | URL) -> Path | None:
    """The file behind a SQLite URL, or None for PostgreSQL and in-memory SQLite."""
    parsed = url if isinstance(url, URL) else normalize_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    db = parsed.database
    if not db or db == ":memory:" or db.startswith("file::memory:"):
        return None
    return Path(db)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys = ON")
        cur.execute("PRAGMA journal_mode = WAL")
        cur.execute("PRAGMA synchronous = NORMAL")
    finally:
        cur.close()


def _writable(path: Path) -> bool:
    # The mode bits too: root passes os.access on a chmod 444 file.
    return os.access(path, os.W_OK) and (path.stat().st_mode & 0o222) != 0


def _sqlite_readonly_creator(path: Path):
    """Connections that cannot write, for read-only commands.

    A writable file is opened as usual with ``PRAGMA query_only``: SQLite refuses writes, and the
    last connection still checkpoints and removes the ``-wal``/``-shm`` files. A file nobody may
    write is opened ``mode=ro``; with no ``-wal`` beside it (all data is in the file) also
    ``immutable=1``, so no ``-shm``/``-wal`` files are created next to it (a read-only ``-shm``
    left behind would break writers once the file is made writable again). If the ``-shm``
    cannot be created (read-only directory) it falls back to immutable."""
    import sqlite3
    from urllib.parse import quote

    base = "file:" + quote(str(path.resolve()))
    timeout = SQLITE_BUSY_TIMEOUT_MS / 1000

    def connect():
        if _writable(path):
            conn = sqlite3.connect(base, uri=True, check_same_thread=False, timeout=timeout)
            _sqlite_pragmas(conn, None)
            conn.execute("PRAGMA query_only = ON")
            return conn
        if path.with_name(path.name + "-wal").exists():
            conn = sqlite3.connect(base + "?mode=ro", uri=True, check_same_thread=False, timeout=timeout)
            try:
                conn.execute("select count(*) from sqlite_master").fetchone()  # opens the WAL index now
                conn.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
                return conn
            except sqlite3.OperationalError as e:
                conn.close()
                if "unable to open" not in str(e):
                    raise
        return sqlite3.connect(base + "?mode=ro&immutable=1", uri=True, check_same_thread=False)

    return connect


def _problem(e: BaseException) -> str:
    """First meaningful line of a driver error, without SQLAlchemy's background links."""
    orig = getattr(e, "orig", None) or e
    text = str(orig).strip().splitlines()
    line = text[0] if text else type(orig).__name__
    return _PASSWORD_IN_URL.sub(r"\1***\3", line)


def describe_db_error(e: BaseException, url: str | URL | None = None) -> StoreError:
    """Turn a driver or SQLAlchemy error into a one-line StoreError naming the database."""
    where = f"database {mask_url(url)}" if url is not None else "database"
    problem = _problem(e)
    low = problem.lower()
    if "readonly" in low or "read-only" in low:
        return StoreError(f"{where} is read-only: {problem}")
    if "database is locked" in low:
        return StoreError(f"{where} is locked by another process (try again): {problem}")
    return StoreError(f"{where}: {problem}")


def get_engine(url: str, *, check: bool = True, create: bool = True, readonly: bool = False, **kwargs) -> Engine:
    """An Engine for ``url`` (SQLite file or PostgreSQL), connected once to fail early with a clear error.

    SQLite: WAL journal, foreign keys on, 30 s busy timeout; the directory must exist and the
    file must be writable. ``create=False``: a file that does not exist is not created (the error
    says to run `newsletter db upgrade`), for every command but the upgrade itself.
    ``readonly=True`` opens the file read-only (``mode=ro``), so reads work on a read-only file
    and nothing can be written. PostgreSQL: psycopg 3 with a 5 s connect timeout (``readonly``
    and ``create`` do not apply: the server decides).
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_path(parsed)
        if path is not None:
            parent = path.parent if str(path.parent) else Path(".")
            if not parent.is_dir():
                raise StoreError(f"database {mask_url(parsed)}: directory {parent} does not exist")
            if path.exists():
                if path.is_dir():
                    raise StoreError(f"database {mask_url(parsed)}: {path} is a directory, not a database file")
                if readonly:
                    if not os.access(path, os.R_OK):
                        raise StoreError(f"database {mask_url(parsed)}: file {path} is not readable")
                elif not _writable(path):
                    raise StoreError(f"database {mask_url(parsed)} is read-only: file {path} is not writable")
            elif not create or readonly:
                raise SchemaOutdated(
                    f"database {mask_url(parsed)} does not exist yet ({path}): run `newsletter db upgrade` to create it"
                )
            elif not os.access(parent, os.W_OK):
                raise StoreError(f"database {mask_url(parsed)}: directory {parent} is not writable")
        if readonly and path is not None:
            engine = create_engine(parsed, creator=_sqlite_readonly_creator(path), **kwargs)
        else:
            engine = create_engine(parsed, **kwargs)
            event.listen(engine, "connect", _sqlite_pragmas)
    else:
        connect_args = dict(kwargs.pop("connect_args", {}))
        connect_args.setdefault("connect_timeout", PG_CONNECT_TIMEOUT_S)
        # No server-side prepared statements: a generic plan made while a table was empty
        # (a seq scan) would be reused after an import made it big.
        connect_args.setdefault("prepare_threshold", None)
        kwargs.setdefault("pool_pre_ping", True)
        engine = create_engine(parsed, connect_args=connect_args, **kwargs)
    if check:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("select 1")
        except sa_exc.SQLAlchemyError as e:
            engine.dispose()
            raise _connect_error(e, parsed) from None
    return engine


def _connect_error(e: BaseException, parsed: URL) -> StoreError:
    problem = _problem(e)
    low = problem.lower()
    if "readonly" in low or "read-only" in low:
        return StoreError(f"database {mask_url(parsed)} is read-only: {problem}")
    if "file is not a database" in low:
        return StoreError(f"database {mask_url(parsed)}: {sqlite_path(parsed)} is not a SQLite database")
    return StoreError(f"cannot connect to database {mask_url(parsed)}: {problem}")


def _alembic_config(connection=None):
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision() -> str:
    """The newest migration this code knows."""
    from alembic.script import ScriptDirectory

    heads = ScriptDirectory.from_config(_alembic_config()).get_heads()
    if len(heads) != 1:
        raise StoreError(f"migrations have {len(heads)} heads ({', '.join(heads)}); expected exactly one")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The migration the database is at (None for an empty database)."""
    from alembic.runtime.migration import MigrationContext

    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except sa_exc.SQLAlchemyError as e:
        raise describe_db_error(e, engine.url) from None


def upgrade(url: str | Engine, revision: str = "head") -> tuple[str | None, str | None]:
    """Migrate the database to ``revision`` (default: newest). Returns (before, after) revisions,
    None standing for an empty schema."""
    from alembic import command

    engine = url if isinstance(url, Engine) else get_engine(url)
    try:
        before = current_revision(engine)
        with engine.begin() as conn:
            command.upgrade(_alembic_config(conn), revision)
        after = current_revision(engine)
    except sa_exc.SQLAlchemyError as e:
        raise describe_db_error(e, engine.url) from None
    finally:
        if not isinstance(url, Engine):
            engine.dispose()
    return before, after


_checked: "weakref.WeakSet[Engine]" = weakref.WeakSet()


def require_current_schema(engine: Engine) -> None:
    """Raise SchemaOutdated unless the database is at the newest migration (checked once per engine)."""
    if engine in _checked:
        return
    current = current_revision(engine)
    head = head_revision()
    if current == head:
        _checked.add(engine)
        return
    if current is None:
        raise SchemaOutdated(f"database {mask_url(engine.url)} has no schema yet: run `newsletter db upgrade`")
    from alembic.script import ScriptDirectory

    try:
        ScriptDirectory.from_config(_alembic_config()).get_revision(current)
    except Exception:
        raise StoreError(
            f"database {mask_url(engine.url)} is at schema revision {current}, newer than this version of newsletter knows"
        ) from None
    raise SchemaOutdated(
        f"database schema is out of date (at {current}, this version needs {head}): run `newsletter db upgrade`"
    )


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A Session committed on success and rolled back on any error; driver errors become StoreError."""
    session = Session(engine, expire_on_commit=False)
    try:
        yield session
        session.commit()
    except sa_exc.SQLAlchemyError as e:
        session.rollback()
        if isinstance(e, sa_exc.IntegrityError):
            raise StoreError(f"database refused the change: {_problem(e)}") from None
        raise describe_db_error(e, engine.url) from None
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A Core connection in one transaction; driver errors become StoreError."""
    try:
        with engine.begin() as conn:
            yield conn
    except sa_exc.IntegrityError as e:
        raise StoreError(f"database refused the change: {_problem(e)}") from None
    except sa_exc.SQLAlchemyError as e:
        raise describe_db_error(e, engine.url) from None
