"""The store commands through the real console script: the Quickstart flow, and bad input
that must end in one line on stderr, a non-zero exit, no traceback and nothing changed."""

from __future__ import annotations

from dataclasses import astuple

from cli_runner import Result, run_main

import csv
import io
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from store_support import _pg_template, _sqlite_template, migrated_url  # noqa: F401  (fixtures)

REPO = Path(__file__).parent.parent
SAMPLE = REPO / "subscribers" / "sample.csv"


def nl(tmp_path, *args, db=None, check=True):
    env = {**os.environ, "NEWSLETTER_SECRET_KEY": "cli-test-secret-key-0123456789", "COLUMNS": "200"}
    env.pop("NEWSLETTER_DATABASE_URL", None)
    env.pop("NEWSLETTER_CONFIG", None)
    argv = [sys.executable, "-m", "newsletter"] + (["--db", db] if db else []) + list(args)
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    if check:
        assert r.returncode == 0, r.stderr
    return r



@pytest.fixture
def run(monkeypatch, capsys):
    """Run the real ``newsletter`` entry point (main(): error printing and exit codes) in this process."""

    def invoke(tmp_path, *args, check=True):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-secret-key-0123456789")
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        code, out, err = astuple(run_main(monkeypatch, capsys, [*args]))
        r = Result(code, out, err)
        if check:
            assert r.returncode == 0, r.stderr
        return r

    return invoke


def one_line_error(r, *needles):
    assert r.returncode != 0
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    for n in needles:
        assert n in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def workdir(tmp_path, run):
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "lists", "create", "weekly", "--name", "Weekly digest")
    (tmp_path / "sample.csv").write_bytes(SAMPLE.read_bytes())
    return tmp_path


def test_quickstart_flow(workdir, run):
    r = run(workdir, "subscribers", "import", "sample.csv", "--list", "weekly")
    assert "added                    41" in r.stdout and "line 47: 'not-an-address'" in r.stdout
    assert (workdir / "sample.rejects.csv").exists() and not (workdir / "sample.csv.rejects.csv").exists()
    counts = json.loads(run(workdir, "lists", "list", "--format", "json").stdout)[0]["counts"]
    assert counts["active"] == 41 and counts["unsubscribed"] == 1

    run(workdir, "subscribers", "add", "ana@example.com", "--name", "Ana", "--list", "weekly", "--attr", "city=Faro")
    listed = json.loads(run(workdir, "subscribers", "list", "--list", "weekly", "--status", "active", "--format", "json", "--limit", "500").stdout)
    assert listed["total"] == 42 and any(i["email"] == "ana@example.com" and i["attributes"] == {"city": "Faro"} for i in listed["items"])

    out = run(workdir, "subscribers", "export", "--list", "weekly").stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 43 and {"email", "name", "status", "city"} <= set(rows[0])

    assert "unsubscribed ana@example.com from weekly" in run(workdir, "subscribers", "unsubscribe", "ANA@example.com").stdout
    r = run(workdir, "subscribers", "add", "ana@example.com", "--list", "weekly", check=False)
    one_line_error(r, "unsubscribed", "--resubscribe")
    assert "erased ana@example.com" in run(workdir, "subscribers", "remove", "ana@example.com").stdout
    run(workdir, "suppress", "add", "example.net", "--reason", "test")
    assert "example.net" in run(workdir, "suppress", "list", "--format", "csv").stdout
    assert "schema is current" in run(workdir, "db", "check").stdout


def test_bad_inputs_change_nothing(workdir, run):
    run(workdir, "subscribers", "add", "kept@example.com", "--list", "weekly")
    before = run(workdir, "subscribers", "export").stdout

    (workdir / "quote.csv").write_text('email,name\na@example.com,"Ana\nb@example.com,Bo\n')
    one_line_error(run(workdir, "subscribers", "import", "quote.csv", "--list", "weekly", check=False), "quote.csv", "malformed CSV")
    (workdir / "semi.csv").write_text("email;name\na@example.com;Ana\n")
    one_line_error(run(workdir, "subscribers", "import", "semi.csv", "--list", "weekly", check=False), "--delimiter ';'")
    (workdir / "noemail.csv").write_text("mail_to,name\na@example.com,Ana\n")
    one_line_error(run(workdir, "subscribers", "import", "noemail.csv", "--list", "weekly", check=False), "no email column")
    one_line_error(run(workdir, "subscribers", "import", "sample.csv", "--list", "daily", check=False), "list 'daily' does not exist")
    one_line_error(run(workdir, "subscribers", "import", "sample.csv", "--list", "weekly", "--map", "nonsense", check=False), "NAME=VALUE")
    one_line_error(run(workdir, "subscribers", "add", "not-an-address", "--list", "weekly", check=False), "not a valid email address")

    assert run(workdir, "subscribers", "export").stdout == before


def test_unreachable_database_hides_password(tmp_path):
    r = nl(tmp_path, "lists", "list", db="postgres://ana:hunter2@127.0.0.1:1/news", check=False)
    line = one_line_error(r, "cannot connect to database")
    assert "hunter2" not in line


def test_old_schema_asks_for_upgrade(tmp_path, run):
    from newsletter.store import db

    db.upgrade(f"sqlite:///{tmp_path / 'newsletter.db'}", "0001")
    if db.head_revision() == "0001":
        pytest.skip("only one migration exists")
    one_line_error(run(tmp_path, "lists", "list", check=False), "newsletter db upgrade")
    run(tmp_path, "db", "upgrade")
    run(tmp_path, "lists", "list")


@pytest.mark.parametrize("args", [("subscribers", "list"), ("lists", "list"), ("subscribers", "export"),
                                  ("db", "check"), ("lists", "create", "weekly")])
def test_missing_database_asks_for_upgrade_and_creates_no_file(tmp_path, run, args):
    fresh = tmp_path / "x" / "fresh.db"
    fresh.parent.mkdir()
    one_line_error(run(tmp_path, "--db", f"sqlite:///{fresh}", *args, check=False), "newsletter db upgrade")
    one_line_error(run(tmp_path, *args, check=False), "newsletter db upgrade")  # the default newsletter.db
    assert list(fresh.parent.iterdir()) == [] and not (tmp_path / "newsletter.db").exists()


def _dump(path: Path) -> list[str]:
    import sqlite3

    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def test_read_only_database_file(workdir, run):
    path = workdir / "newsletter.db"
    before = _dump(path)
    os.chmod(path, stat.S_IRUSR)
    try:
        one_line_error(run(workdir, "subscribers", "add", "x@example.com", "--list", "weekly", check=False), "read-only")
    finally:
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
    assert _dump(path) == before


def test_read_only_database_file_can_still_be_read(tmp_path, run):
    import sqlite3

    from newsletter.store import db, lists, subscribers

    workdir, path = tmp_path, tmp_path / "newsletter.db"
    db.upgrade(f"sqlite:///{path}")
    engine = db.get_engine(f"sqlite:///{path}")
    lists.create_list(engine, "weekly", "Weekly")
    subscribers.add_subscriber(engine, "ana@example.com", name="Ana", list_slug="weekly")
    engine.dispose()  # the last writer closes: everything is in the file, no -wal left
    before = _dump(path)
    # _dump's own mode=ro connection cannot remove the -wal/-shm it made; a plain one can.
    plain = sqlite3.connect(path)
    plain.execute("select count(*) from sqlite_master").fetchone()
    plain.close()
    assert sorted(p.name for p in workdir.glob("newsletter.db*")) == ["newsletter.db"]
    os.chmod(path, 0o444)
    try:
        counts = json.loads(run(workdir, "lists", "list", "--format", "json").stdout)[0]["counts"]
        assert counts["active"] == 1
        listed = json.loads(run(workdir, "subscribers", "list", "--format", "json").stdout)
        assert [x["email"] for x in listed["items"]] == ["ana@example.com"]
        assert "ana@example.com,Ana" in run(workdir, "subscribers", "export").stdout
        run(workdir, "subscribers", "export", "--output", str(workdir / "backup.csv"))
        assert "ana@example.com" in (workdir / "backup.csv").read_text()
        run(workdir, "db", "check")
        one_line_error(run(workdir, "lists", "create", "daily", check=False), "read-only")
        # Reading a read-only file leaves no -wal/-shm beside it (a read-only -shm would break writers later).
        assert sorted(p.name for p in workdir.glob("newsletter.db*")) == ["newsletter.db"]
    finally:
        os.chmod(path, 0o644)
    assert _dump(path) == before


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not Path("/usr/bin/setpriv").exists(),
                    reason="needs root to run the CLI as an unprivileged user")
@pytest.mark.parametrize("pending_wal", [False, True])
def test_read_only_database_as_an_unprivileged_user(tmp_path, pending_wal):
    """Root ignores file modes, so run the real CLI as `nobody` on a root-owned 0444 file in a
    0755 directory: the kernel, not our own check, refuses every write. With ``pending_wal`` a
    writer still holds the database open, so committed rows sit in the -wal file."""
    import sqlite3
    import tempfile

    from newsletter.store import db, lists, subscribers

    d = Path(tempfile.mkdtemp(prefix="nl-ro-", dir="/tmp"))
    holder = None
    try:
        os.chmod(d, 0o755)
        path = d / "newsletter.db"
        url = f"sqlite:///{path}"
        db.upgrade(url)
        engine = db.get_engine(url)
        lists.create_list(engine, "weekly", "Weekly")
        subscribers.add_subscriber(engine, "ana@example.com", list_slug="weekly")
        engine.dispose()
        if pending_wal:
            holder = sqlite3.connect(path)
            holder.execute("pragma wal_autocheckpoint = 0")
            holder.execute("update lists set name = 'Weekly (pending)'")
            holder.commit()
            assert path.with_name("newsletter.db-wal").stat().st_size > 0
        os.chmod(path, 0o444)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(d), "COLUMNS": "200"}
        argv = ["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                sys.executable, "-m", "newsletter", "--db", url]

        def as_nobody(*args):
            return subprocess.run(argv + list(args), cwd=d, env=env, capture_output=True, text=True, timeout=120)

        probe = subprocess.run(argv[:4] + [sys.executable, "-c", "import newsletter"], cwd=d, env=env,
                               capture_output=True, text=True, timeout=60)
        if probe.returncode != 0:
            # e.g. a checkout inside a 0700 folder: `nobody` cannot read the editable install.
            pytest.skip(f"the unprivileged user cannot import the package here: {probe.stderr.strip()[-120:]}")

        r = as_nobody("lists", "list", "--format", "json")
        assert r.returncode == 0, r.stderr
        [row] = json.loads(r.stdout)
        assert row["counts"]["active"] == 1 and row["name"] == ("Weekly (pending)" if pending_wal else "Weekly")
        r = as_nobody("subscribers", "export")
        assert r.returncode == 0 and "ana@example.com" in r.stdout, r.stderr
        one_line_error(as_nobody("subscribers", "add", "bo@example.com", "--list", "weekly"), "read-only")
    finally:
        if holder is not None:
            holder.close()
        shutil.rmtree(d, ignore_errors=True)


def test_import_help_says_resubscribe_needs_fresh_consent(tmp_path, run):
    r = run(tmp_path, "subscribers", "import", "--help")
    assert "fresh consent" in " ".join(r.stdout.split())


def test_double_opt_in_add_mails_a_working_confirmation_link(workdir, run):
    import re

    from newsletter.store import db
    from newsletter.store import optin

    run(workdir, "lists", "create", "news", "--double-opt-in")
    r = run(workdir, "subscribers", "add", "zoe@example.com", "--name", "Zoë", "--list", "news")
    assert "unconfirmed" in r.stdout and "confirmation email sent" in r.stdout
    [eml] = list((workdir / "outbox").rglob("*.eml"))
    import email
    from email import policy

    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert msg["To"] == "zoe@example.com" and "confirm" in msg["Subject"].lower()
    token = re.search(r"/confirm/([A-Za-z0-9_-]+)", msg.get_body(("plain",)).get_content()).group(1)
    engine = db.get_engine(f"sqlite:///{workdir / 'newsletter.db'}")
    res = optin.confirm_by_token(engine, b"cli-test-secret-key-0123456789", token)
    assert res.changed and res.status == "active"
    engine.dispose()


def test_import_into_double_opt_in_then_send_confirmations(workdir, run):
    run(workdir, "lists", "create", "news", "--double-opt-in")
    (workdir / "two.csv").write_text("email,name\na@example.com,Ana\nb@example.com,Bo\n")
    r = run(workdir, "subscribers", "import", "two.csv", "--list", "news")
    assert "2 awaiting confirmation" in r.stdout and "send-confirmations --list news" in r.stdout
    assert not (workdir / "outbox").exists()  # an import never mails by itself
    r = run(workdir, "subscribers", "send-confirmations", "--list", "news")
    assert "sent: 2; failed: 0" in r.stdout
    assert len(list((workdir / "outbox").rglob("*.eml"))) == 2


# --- send-confirmations: each person mailed once, reminders on request ---------------------------


def _smtp_config(tmp_path, srv):
    (tmp_path / "newsletter.toml").write_text(f'base_url = "https://news.example.org"\n\n[smtp.t]\nurl = "{srv.url}"\n')


def test_send_confirmations_mails_once_then_reminds_only_the_old(tmp_path, run, migrated_url, smtp_server):
    from datetime import timedelta

    from newsletter.store import db
    from newsletter.store import subscribers as S
    from newsletter.store import suppressions as supp
    from newsletter.store.models import Subscription, utcnow

    _smtp_config(tmp_path, smtp_server)
    def nl_(*args, **kw):
        return run(tmp_path, "--db", migrated_url, *args, **kw)

    nl_("lists", "create", "news", "--double-opt-in")
    engine = db.get_engine(migrated_url)
    try:
        people = [f"p{i}@example.com" for i in range(5)]
        for a in people:
            S.add_subscriber(engine, a, list_slug="news")  # as an import does: unconfirmed, not mailed
        r = nl_("subscribers", "add", "added@example.com", "--list", "news")  # mails at once, and records it
        assert "confirmation email sent to added@example.com" in r.stdout

        r = nl_("subscribers", "send-confirmations", "--list", "news", "--limit", "2")
        assert "sent: 2; failed: 0; skipped: 1 already mailed" in r.stdout and "stopped at --limit 2" in r.stdout
        r = nl_("subscribers", "send-confirmations", "--list", "news")
        assert "sent: 3; failed: 0; skipped: 3 already mailed" in r.stdout
        r = nl_("subscribers", "send-confirmations", "--list", "news")
        assert "sent: 0; failed: 0; skipped: 6 already mailed (see --remind), 0 suppressed" in r.stdout
        assert smtp_server.recipient_counts() == {a: 1 for a in [*people, "added@example.com"]}

        r = nl_("subscribers", "send-confirmations", "--list", "news", "--remind")
        assert "sent: 0; failed: 0; skipped: 6 mailed less than 1d ago" in r.stdout
        subs_t = Subscription.__table__
        with engine.begin() as c:
            for email, days in (("p0@example.com", 5), ("p1@example.com", 2), ("p2@example.com", 4)):
                sid = S.get_subscriber(engine, email).id
                c.execute(subs_t.update().where(subs_t.c.subscriber_id == sid).values(confirmation_sent_at=utcnow() - timedelta(days=days)))
        supp.suppress(engine, "p2@example.com")
        smtp_server.clear()
        r = nl_("subscribers", "send-confirmations", "--list", "news", "--remind", "--older-than", "3d")
        assert "sent: 1; failed: 0; skipped: 4 mailed less than 3d ago, 1 suppressed" in r.stdout
        assert smtp_server.recipients() == ["p0@example.com"]
    finally:
        engine.dispose()


def test_send_confirmations_bad_input_is_one_line_and_mails_nobody(workdir, run, smtp_server):
    _smtp_config(workdir, smtp_server)
    run(workdir, "lists", "create", "news", "--double-opt-in")
    from newsletter.store import db
    from newsletter.store import subscribers as S

    engine = db.get_engine(f"sqlite:///{workdir / 'newsletter.db'}")
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    engine.dispose()
    sc = ("subscribers", "send-confirmations")
    one_line_error(run(workdir, *sc, "--list", "daily", check=False), "list 'daily' does not exist")
    one_line_error(run(workdir, *sc, "--list", "weekly", check=False), "'weekly' is single opt-in")
    one_line_error(run(workdir, *sc, "--list", "news", "--remind", "--older-than", "3x", check=False), "--older-than", "'3x' is not an age")
    one_line_error(run(workdir, *sc, "--list", "news", "--remind", "--older-than", "-1d", check=False), "--older-than")
    one_line_error(run(workdir, *sc, "--list", "news", "--older-than", "3d", check=False), "--older-than only applies with --remind")
    one_line_error(run(workdir, *sc, "--list", "news", "--limit", "0", check=False), "limit must be at least 1")
    assert smtp_server.received() == []
    assert "sent: 1; failed: 0" in run(workdir, *sc, "--list", "news").stdout


def test_send_confirmations_failure_exits_non_zero_and_is_retried(workdir, run, smtp_server_factory):
    srv = smtp_server_factory(reject={"refused@example.com"})
    _smtp_config(workdir, srv)
    run(workdir, "lists", "create", "news", "--double-opt-in")
    from newsletter.store import db
    from newsletter.store import subscribers as S

    engine = db.get_engine(f"sqlite:///{workdir / 'newsletter.db'}")
    for a in ("ok@example.com", "refused@example.com"):
        S.add_subscriber(engine, a, list_slug="news")
    engine.dispose()
    r = run(workdir, "subscribers", "send-confirmations", "--list", "news", check=False)
    assert r.returncode == 1 and "sent: 1; failed: 1" in r.stdout and "refused@example.com" in r.stdout
    assert r.stderr.strip() == "error: 1 confirmation email(s) were not sent"
    srv.behaviour.reject = set()
    assert "sent: 1; failed: 0; skipped: 1 already mailed" in run(workdir, "subscribers", "send-confirmations", "--list", "news").stdout
    assert srv.recipient_counts() == {"ok@example.com": 1, "refused@example.com": 1}


def test_send_confirmations_refuses_links_readers_cannot_open(tmp_path, run, migrated_url, smtp_server):
    """As `send` does: over SMTP, a loopback or plain-http base_url would mail dead confirm links."""
    (tmp_path / "newsletter.toml").write_text(f'base_url = "http://127.0.0.1:8000"\n\n[smtp.t]\nurl = "{smtp_server.url}"\n')
    run(tmp_path, "--db", migrated_url, "lists", "create", "news", "--double-opt-in")
    from newsletter.store import db
    from newsletter.store import subscribers as S

    engine = db.get_engine(migrated_url)
    S.add_subscriber(engine, "p@example.com", list_slug="news")
    engine.dispose()
    r = run(tmp_path, "--db", migrated_url, "subscribers", "send-confirmations", "--list", "news", check=False)
    assert r.returncode != 0 and "base_url is http://127.0.0.1:8000" in r.stderr and "Traceback" not in r.stderr
    assert smtp_server.recipient_counts() == {}
