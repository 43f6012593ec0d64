"""Faults under a running `newsletter send`: PostgreSQL restarted, a session killed with
``pg_terminate_backend``, the SQLite disk full. (A server dropping the connection mid-DATA is
tests/test_send.py::test_connection_dropped_mid_data_is_retried and the auto-pause test there.)

Each time: the send stops (or carries on) with a one-line reason and no traceback; nothing is
marked sent that the SMTP server did not accept; a rerun finishes the campaign, and nobody gets
two copies. The moment of the fault is chosen on state: the SMTP server holds every DATA (``hold``)
until the test has made the fault, so the lanes are known to be mid-send.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from conftest import IN_CI
from dispatch_helpers import SECRET, add_people, make_campaign, make_config, setup_db
from pg_cluster import Cluster, cluster_unavailable
from smtp_server import SMTPTestServer

N = 60
CONCURRENCY = 2


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_SECRET_KEY=SECRET, NEWSLETTER_BASE_URL="https://news.example.org",
               NEWSLETTER_RETRY_BASE="0.05", NEWSLETTER_RETRY_MAX_DELAY="0.2", NEWSLETTER_FROM="News <news@example.org>",
               NEWSLETTER_OUTBOX=str(tmp_path / "outbox"))
    return env


def _send(url, cid, srv, tmp_path, *extra) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "newsletter", "--db", url, "send", str(cid), "--smtp", srv.url,
           "--concurrency", str(CONCURRENCY), "--format", "json", *extra]
    return subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path,
                            text=True)


def _pg(url: str):
    import psycopg

    return psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://", 1), autocommit=True, connect_timeout=10)


def _ledger(url: str, cid: int) -> dict[str, set[str]]:
    """Addresses by delivery state (a fresh connection: works across restarts)."""
    with _pg(url) as conn:
        rows = conn.execute("select d.state, s.email from deliveries d join subscribers s on s.id = d.subscriber_id "
                            "where d.campaign_id = %s", (cid,)).fetchall()
    out: dict[str, set[str]] = {}
    for state, email in rows:
        out.setdefault(state, set()).add(email)
    return out


def _wait_sending(url: str, cid: int, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    """Until ``n`` rows are ``sending`` (the lanes are in DATA, held by the server)."""
    deadline = time.monotonic() + timeout
    while len(_ledger(url, cid).get("sending", ())) < n:
        if proc.poll() is not None:
            pytest.fail(f"send ended early: rc={proc.returncode} {proc.stderr.read()[-800:]}")  # type: ignore[union-attr]
        assert time.monotonic() < deadline, f"{n} rows never reached 'sending'"
        time.sleep(0.01)


def _campaign(url: str, tmp_path) -> tuple[int, set[str]]:
    engine = setup_db(url)
    config = make_config(url, tmp_path)
    people = set(add_people(engine, "weekly", N))
    cid = make_campaign(engine, config).id
    engine.dispose()
    return cid, people


def _one_line_error(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert "Traceback" not in err and len(lines) == 1, err


def _finish_and_check(url, cid, people, srv, tmp_path, accepted_before: set[str]) -> dict:
    """A rerun finishes; every reader has exactly one copy; nothing was marked sent unaccepted."""
    rerun = _send(url, cid, srv, tmp_path)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err[-800:]
    summary = json.loads(out)
    assert summary["status"] == "finished", summary
    got = srv.recipient_counts()
    ledger = _ledger(url, cid)
    assert ledger.get("sent", set()) <= set(got)  # nothing marked sent that the server did not accept
    assert max(got.values()) == 1, {a: n for a, n in got.items() if n > 1}
    missing = people - set(got)
    assert missing <= set(summary["ambiguous"])  # only an ambiguous copy can be missing, and it is reported
    assert accepted_before <= set(got)
    return summary


def _skip_without_cluster() -> None:
    reason = cluster_unavailable()
    if reason:
        if IN_CI:
            pytest.fail(reason)
        pytest.skip(reason)


@pytest.mark.slow
def test_postgresql_restarted_mid_send_stops_with_one_line_and_a_rerun_finishes(tmp_path):
    _skip_without_cluster()
    with Cluster() as pg:
        url = pg.createdb()
        cid, people = _campaign(url, tmp_path)
        hold = threading.Event()
        with SMTPTestServer(hold=hold) as srv:
            p = _send(url, cid, srv, tmp_path)
            try:
                _wait_sending(url, cid, CONCURRENCY, p)
                pg.stop("fast")  # every session ends; the server is down
                pg.start()
                hold.set()  # the held messages are accepted now: their results meet a new server
                out, err = p.communicate(timeout=120)
            finally:
                hold.set()
                if p.poll() is None:
                    p.kill()
            assert p.returncode not in (0, None), err
            _one_line_error(err)
            assert f"{pg.port}" in err or "connection" in err.lower() or "server" in err.lower(), err
            _finish_and_check(url, cid, people, srv, tmp_path, set())


@pytest.mark.slow
@pytest.mark.postgres
def test_the_senders_sessions_killed_with_pg_terminate_backend_stop_it_and_a_rerun_finishes(pg_url, tmp_path):
    cid, people = _campaign(pg_url, tmp_path)
    hold = threading.Event()
    with SMTPTestServer(hold=hold) as srv:
        p = _send(pg_url, cid, srv, tmp_path)
        try:
            _wait_sending(pg_url, cid, CONCURRENCY, p)
            with _pg(pg_url) as conn:
                killed = conn.execute("select count(pg_terminate_backend(pid)) from pg_stat_activity "
                                      "where datname = current_database() and pid <> pg_backend_pid()").fetchone()[0]
            assert killed >= 1
            hold.set()
            out, err = p.communicate(timeout=120)
        finally:
            hold.set()
            if p.poll() is None:
                p.kill()
        assert p.returncode not in (0, None), err
        _one_line_error(err)
        _finish_and_check(pg_url, cid, people, srv, tmp_path, set())


@pytest.mark.slow
@pytest.mark.postgres
def test_a_sender_whose_liveness_session_was_killed_never_sends_a_copy_another_sender_took(pg_url, tmp_path):
    """Sender A's advisory-lock session is killed: to everyone else A looks dead, and B takes its
    claimed rows. A must not send any of them (its 'sending' mark no longer applies)."""
    cid, people = _campaign(pg_url, tmp_path)
    hold = threading.Event()
    with SMTPTestServer(hold=hold) as a_srv, SMTPTestServer() as b_srv:
        a = _send(pg_url, cid, a_srv, tmp_path)
        try:
            _wait_sending(pg_url, cid, CONCURRENCY, a)
            with _pg(pg_url) as conn:
                killed = conn.execute(
                    "select count(pg_terminate_backend(l.pid)) from pg_locks l where l.locktype = 'advisory' "
                    "and l.database = (select oid from pg_database where datname = current_database())").fetchone()[0]
            assert killed == 1
            b = _send(pg_url, cid, b_srv, tmp_path)
            b_out, b_err = b.communicate(timeout=180)
            assert b.returncode == 0, b_err[-800:]
            hold.set()  # A's two held messages are accepted; A carries on or stops, as it sees fit
            a_out, a_err = a.communicate(timeout=120)
        finally:
            hold.set()
            if a.poll() is None:
                a.kill()
        assert "Traceback" not in a_err, a_err
        got = a_srv.recipient_counts() + b_srv.recipient_counts()
    doubled = {x: n for x, n in got.items() if n > 1}
    assert not doubled, f"{len(doubled)} readers got two copies: {sorted(doubled)[:5]}"
    assert set(got) == people
    ledger = _ledger(pg_url, cid)
    assert ledger.get("sent", set()) <= set(got)


@pytest.mark.slow
def test_a_full_disk_under_the_sqlite_database_stops_the_send_with_one_line_and_a_rerun_finishes(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs for the full disk needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if r.returncode:
        if IN_CI:
            pytest.fail(f"mount -t tmpfs failed: {r.stderr.strip()}")
        pytest.skip(f"mount -t tmpfs failed: {r.stderr.strip()}")
    try:
        url = f"sqlite:///{mnt / 'newsletter.db'}"
        cid, people = _campaign(url, tmp_path)
        hold = threading.Event()
        filler = mnt / "filler"
        with SMTPTestServer(hold=hold) as srv:
            p = _send(url, cid, srv, tmp_path)
            try:
                _wait_sending_sqlite(url, cid, CONCURRENCY, p)
                _fill(filler)
                hold.set()
                out, err = p.communicate(timeout=120)
            finally:
                hold.set()
                if p.poll() is None:
                    p.kill()
            assert p.returncode not in (0, None), err
            _one_line_error(err)
            assert "disk" in err.lower() or "full" in err.lower() or "space" in err.lower(), err
            accepted = set(srv.recipient_counts())
            filler.unlink()  # room again
            _finish_and_check_sqlite(url, cid, people, srv, tmp_path, accepted)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        shutil.rmtree(mnt, ignore_errors=True)


def _fill(path) -> None:
    """Write zeros to ``path`` until the file system has not one byte left."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass


def _sqlite_ledger(url: str, cid: int) -> dict[str, set[str]]:
    import sqlite3

    path = url.removeprefix("sqlite:///")
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30) as conn:
        rows = conn.execute("select d.state, s.email from deliveries d join subscribers s on s.id = d.subscriber_id "
                            "where d.campaign_id = ?", (cid,)).fetchall()
    out: dict[str, set[str]] = {}
    for state, email in rows:
        out.setdefault(state, set()).add(email)
    return out


def _wait_sending_sqlite(url, cid, n, proc, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while len(_sqlite_ledger(url, cid).get("sending", ())) < n:
        if proc.poll() is not None:
            pytest.fail(f"send ended early: rc={proc.returncode} {proc.stderr.read()[-800:]}")
        assert time.monotonic() < deadline, f"{n} rows never reached 'sending'"
        time.sleep(0.01)


def _finish_and_check_sqlite(url, cid, people, srv, tmp_path, accepted_before: set[str]) -> None:
    rerun = _send(url, cid, srv, tmp_path)
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err[-800:]
    summary = json.loads(out)
    assert summary["status"] == "finished", summary
    got = srv.recipient_counts()
    assert _sqlite_ledger(url, cid).get("sent", set()) <= set(got)
    assert max(got.values()) == 1, {a: n for a, n in got.items() if n > 1}
    assert people - set(got) <= set(summary["ambiguous"])
    assert accepted_before <= set(got)
