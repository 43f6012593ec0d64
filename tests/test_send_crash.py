"""Crash and resume with real processes: `newsletter send` killed with SIGKILL, then resumed.

The promise: after any number of kill -9, resuming delivers to every reader; nobody gets two
copies except addresses the resumed send reported as ambiguous; and there are never more
ambiguous rows than messages in flight (≤ --concurrency). Also: two processes sharing one
campaign on PostgreSQL never send anything twice.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dispatch_helpers import SECRET, add_people, make_campaign, make_config, setup_db
from newsletter.store import queries as q
from smtp_server import SMTPTestServer

N = 2000
CONCURRENCY = 4


def _env(tmp_path) -> dict:
    env = dict(os.environ)
    env.update({
        "NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.org",
        "NEWSLETTER_RETRY_BASE": "0.05", "NEWSLETTER_RETRY_MAX_DELAY": "0.2", "NEWSLETTER_FROM": "News <news@example.org>",
        "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"), "CI": env.get("CI", ""),
    })
    env.pop("NEWSLETTER_CONFIG", None)
    return env


def _send(url, cid, srv, tmp_path, *extra):
    cmd = [sys.executable, "-m", "newsletter", "--db", url, "send", str(cid), "--smtp", srv.url,
           "--concurrency", str(CONCURRENCY), "--format", "json", *extra]
    return subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)


def _dead_client_settled(engine, timeout: float = 30) -> None:
    """PostgreSQL: wait until no other session of this test's database is still running a statement
    or holding a transaction — the killed client's backend finishes what it had received (or rolls
    it back) by itself; how long that takes depends on the machine, so it is watched, not slept for."""
    if engine.dialect.name != "postgresql":
        return  # SQLite: the dead process wrote nothing more; its journal is undone on the next open
    deadline = time.monotonic() + timeout
    while True:
        with engine.connect() as conn:
            busy = conn.exec_driver_sql(
                "select count(*) from pg_stat_activity where datname = current_database() "
                "and pid <> pg_backend_pid() and state is not null and state <> 'idle'").scalar()
        if not busy:
            return
        assert time.monotonic() < deadline, f"{busy} session(s) of the killed sender still busy after {timeout} s"
        time.sleep(0.02)


def _kill_when(proc, srv, received: int, timeout: float = 60, engine=None) -> None:
    deadline = time.monotonic() + timeout
    while len(srv.received()) < received:
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"send ended before the kill point ({received}): rc={proc.returncode} {err.decode()[-500:]}")
        assert time.monotonic() < deadline, "send made no progress"
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)  # reaped: its pid is gone, as after a real crash
    if engine is not None:
        _dead_client_settled(engine)


@pytest.mark.slow
def test_kill_9_at_several_points_then_resume(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    people = set(add_people(engine, "weekly", N))
    cid = make_campaign(engine, config).id
    ambiguous_sets = []
    with SMTPTestServer() as srv:
        for kill_at in (150, 700, 1300):
            p = _send(db_url, cid, srv, tmp_path, "--resend-ambiguous")
            _kill_when(p, srv, kill_at, engine=engine)
            with engine.begin() as conn:
                left = q.counts_by_state(conn, cid)
                in_sending = {r.email for r in q.delivery_rows(conn, cid, ("sending",))}
            # only rows handed to the server can be ambiguous: at most one per connection
            assert len(in_sending) <= CONCURRENCY, left
            ambiguous_sets.append(in_sending)
        p = _send(db_url, cid, srv, tmp_path, "--resend-ambiguous")
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-800:]
        summary = json.loads(out)
        got = srv.recipient_counts()
    assert set(got) == people, f"missing: {sorted(people - set(got))[:5]}"
    assert summary["status"] == "finished" and summary["counts"] == {"sent": N}
    # the last resume reported exactly the rows the last crash left ambiguous, by address
    assert set(summary["ambiguous"]) == ambiguous_sets[-1]
    # nobody got two copies except an address that was ambiguous at one of the crashes
    dupes = {a for a, n in got.items() if n > 1}
    assert dupes <= set().union(*ambiguous_sets)
    for addr in dupes:  # and a resend carries the same Message-ID: recognisable downstream
        assert len({m.message_id for m in srv.by_recipient(addr)}) == 1
    engine.dispose()


@pytest.mark.slow
def test_kill_9_without_resend_reports_ambiguous_and_sends_no_duplicate(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    people = set(add_people(engine, "weekly", 400))
    cid = make_campaign(engine, config).id
    with SMTPTestServer(delay=0.001) as srv:
        p = _send(sqlite_url, cid, srv, tmp_path)
        _kill_when(p, srv, 150, engine=engine)
        with engine.begin() as conn:
            in_sending = {r.email for r in q.delivery_rows(conn, cid, ("sending",))}
        assert len(in_sending) <= CONCURRENCY
        p = _send(sqlite_url, cid, srv, tmp_path)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()[-800:]
        summary = json.loads(out)
        got = srv.recipient_counts()
    assert set(summary["ambiguous"]) == in_sending
    assert max(got.values()) == 1  # nothing was sent twice
    missing = people - set(got)
    assert missing <= in_sending  # only an ambiguous copy can be missing (the server never got it)
    assert summary["status"] == "finished"
    engine.dispose()


def _stop_with(sig, db_url, tmp_path, n=30, concurrency=2):
    """Start a rate-limited `newsletter send`, send it ``sig`` after a few messages; returns what
    a test checks: the process, its output, the server, the signal time and the campaign id."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    people = set(add_people(engine, "weekly", n))
    cid = make_campaign(engine, config).id
    srv = SMTPTestServer().start()
    cmd = [sys.executable, "-m", "newsletter", "--db", db_url, "send", str(cid), "--smtp", srv.url,
           "--concurrency", str(concurrency), "--rate", "2/s"]
    p = subprocess.Popen(cmd, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert srv.wait_for(3, timeout=60), p.stderr.read1().decode() if p.poll() is not None else "no progress"
        sent_at = time.time()
        os.kill(p.pid, sig)
        out, err = p.communicate(timeout=60)
    except BaseException:
        p.kill()
        srv.stop()
        raise
    return engine, people, cid, srv, p, out.decode(), err.decode(), sent_at


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 4)])
def test_ctrl_c_and_sigterm_stop_at_once_and_a_rerun_sends_the_rest_once(db_url, tmp_path, sig, code):
    """All 30 rows are claimed at the start (a batch is at least 50), and at 2/s the lanes would
    keep sending them for 15 s. After the signal at most one message per connection (those
    already in flight) may still reach the server; every other copy is back to pending, the
    exit status says the campaign is unfinished, and a rerun sends each of them once."""
    engine, people, cid, srv, p, out, err, sent_at = _stop_with(sig, db_url, tmp_path)
    try:
        after = [m for m in srv.received() if m.received_at > sent_at]
        assert len(after) <= 2, f"{len(after)} messages after the signal"
        assert p.returncode == code, err[-800:]
        assert "Traceback" not in err
        with engine.begin() as conn:
            left = q.counts_by_state(conn, cid)
            status = q.campaign_status(conn, cid)
        got = len(srv.received())
        assert left == {"sent": got, "pending": 30 - got} and status == "running", left
        if sig == signal.SIGINT:
            lines = [ln for ln in err.splitlines() if ln.strip()]
            assert lines == [f"interrupted: campaign {cid} stopped with {30 - got} copies left to send; "
                             f"`newsletter send {cid}` continues"], err
            assert "stopped: interrupted (Ctrl-C)" in out
        else:
            assert "stopped: terminated (SIGTERM)" in out
            assert err.strip() == (f"campaign {cid} is not finished (terminated (SIGTERM)): {30 - got} copies left "
                                   f"to send; `newsletter send {cid}` continues"), err
        rerun = subprocess.run([sys.executable, "-m", "newsletter", "--db", db_url, "send", str(cid), "--smtp", srv.url,
                                "--format", "json"], env=_env(tmp_path), capture_output=True, cwd=tmp_path, timeout=120)
        assert rerun.returncode == 0, rerun.stderr.decode()[-800:]
        summary = json.loads(rerun.stdout)
        assert summary["status"] == "finished" and summary["ambiguous"] == [] and summary["sent_now"] == 30 - got
        assert srv.recipient_counts() == {a: 1 for a in people}
    finally:
        srv.stop()
        engine.dispose()


@pytest.mark.slow
@pytest.mark.postgres
def test_two_processes_share_one_campaign_on_postgresql(pg_url, tmp_path):
    engine = setup_db(pg_url)
    config = make_config(pg_url, tmp_path)
    people = set(add_people(engine, "weekly", 600))
    cid = make_campaign(engine, config).id
    with SMTPTestServer(delay=0.002) as srv:
        procs = [_send(pg_url, cid, srv, tmp_path) for _ in range(2)]
        outs = [p.communicate(timeout=120) for p in procs]
        for p, (out, err) in zip(procs, outs):
            assert p.returncode == 0, err.decode()[-800:]
        summaries = [json.loads(out) for out, _ in outs]
        got = srv.recipient_counts()
    assert set(got) == people and max(got.values()) == 1
    assert sum(s["sent_now"] for s in summaries) == 600
    assert all(s["sent_now"] > 0 for s in summaries), [s["sent_now"] for s in summaries]
    with engine.begin() as conn:
        assert q.counts_by_state(conn, cid) == {"sent": 600}
        assert q.campaign_status(conn, cid) == "finished"
    engine.dispose()
