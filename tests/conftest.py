"""Shared fixtures: temporary databases (SQLite and a real PostgreSQL) and paths.

PostgreSQL tests run against the server at 127.0.0.1:5432 (user postgres, trust auth).
Each test gets a database of its own, dropped afterwards. In CI (``CI=true``) an
unreachable server is a failure; elsewhere those tests skip with the reason.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
REPO = Path(__file__).parent.parent
PG_ADMIN_URL = os.environ.get("NEWSLETTER_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def _pg_admin_connect():
    import psycopg

    return psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=5)


def _pg_available() -> str | None:
    """None when PostgreSQL answers, else the reason it does not."""
    try:
        with _pg_admin_connect() as conn:
            conn.execute("select 1")
        return None
    except Exception as e:  # any failure to connect is a reason to skip (or fail in CI)
        return f"PostgreSQL at {PG_ADMIN_URL} is unreachable: {e}"


@pytest.fixture(scope="session")
def _pg_reason():
    return _pg_available()


@pytest.fixture
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    """A fresh SQLite database file for this test."""
    return f"sqlite:///{tmp_path / 'newsletter.db'}"


@pytest.fixture
def pg_url(_pg_reason) -> str:
    """A fresh, empty PostgreSQL database for this test (SQLAlchemy URL), dropped afterwards."""
    if _pg_reason:
        if IN_CI:
            pytest.fail(_pg_reason)
        pytest.skip(_pg_reason)
    name = "nl_" + uuid.uuid4().hex[:16]
    with _pg_admin_connect() as conn:
        conn.execute(f'create database "{name}"')
    base = PG_ADMIN_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://", 1)
    yield f"{base}/{name}"
    with _pg_admin_connect() as conn:
        conn.execute(f'drop database if exists "{name}" with (force)')


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request, tmp_path, _pg_reason) -> str:
    """Run the test once on SQLite and once on PostgreSQL (an empty database each time)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'newsletter.db'}"
    return request.getfixturevalue("pg_url")


# --- SMTP test server fixtures (see tests/smtp_server.py) ---
from smtp_server import smtp_server, smtp_server_factory  # noqa: E402,F401


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_reaches_child_processes():
    """A shell without job control starts background commands with SIGINT ignored; pytest run that
    way would pass "ignored" on to every process it starts, and tests that press Ctrl-C on a child
    (an import, a send) would see it run to the end. Give SIGINT back its default meaning."""
    import signal

    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture(autouse=True)
def _whole_archive_by_default(monkeypatch):
    """The fixtures' articles have fixed dates, so a default start relative to today (config
    ``default_since``, 7d) would empty them as the calendar moves: commands run by tests take the
    whole archive unless a test says otherwise (tests/test_compose_since.py does)."""
    monkeypatch.setenv("NEWSLETTER_DEFAULT_SINCE", "all")


@pytest.fixture(autouse=True)
def _no_vimeo_oembed(monkeypatch):
    """Tests never reach vimeo.com: Vimeo thumbnail lookups are off unless a test points
    ``vimeo_oembed_url`` at its own server on loopback. The environment variable covers
    ``load_config`` (and subprocesses, which inherit it); the guard covers a ``Config(...)``
    built directly, whose default is the public endpoint."""
    import dataclasses
    import urllib.parse

    from newsletter.articles import video

    monkeypatch.setenv("NEWSLETTER_VIMEO_OEMBED_URL", "")
    real = video.add_vimeo_thumbnails

    def loopback_only(articles, config):
        host = urllib.parse.urlsplit(getattr(config, "vimeo_oembed_url", "") or "").hostname or ""
        if host not in {"127.0.0.1", "localhost", "::1"}:
            config = dataclasses.replace(config, vimeo_oembed_url="")
        return real(articles, config)

    monkeypatch.setattr(video, "add_vimeo_thumbnails", loopback_only)
