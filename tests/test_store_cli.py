"""The store commands through the real console script: the Quickstart flow, and bad input
that must end in one line on stderr, a non-zero exit, no traceback and nothing changed."""

from __future__ import annotations

import csv
import io
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

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


class Result:
    def __init__(self, returncode, stdout, stderr):
        self.returncode, self.stdout, self.stderr = returncode, stdout, stderr


@pytest.fixture
def run(monkeypatch, capsys):
    """Run the real ``newsletter`` entry point (main(): error printing and exit codes) in this process."""
    from newsletter.cli import main

    def invoke(tmp_path, *args, check=True):
        monkeypatch.chdir(tmp_path)
        monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "cli-test-secret-key-0123456789")
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.delenv("NEWSLETTER_DATABASE_URL", raising=False)
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        monkeypatch.setattr(sys, "argv", ["newsletter", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        out, err = capsys.readouterr()
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


def test_empty_database_asks_for_upgrade(tmp_path, run):
    one_line_error(run(tmp_path, "subscribers", "list", check=False), "newsletter db upgrade")


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


def test_import_help_says_resubscribe_needs_fresh_consent(tmp_path, run):
    r = run(tmp_path, "subscribers", "import", "--help")
    assert "fresh consent" in " ".join(r.stdout.split())


def test_double_opt_in_add_mails_a_working_confirmation_link(workdir, run):
    import re

    from newsletter.store import db
    from newsletter.store import subscribers as S

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
    res = S.confirm_by_token(engine, b"cli-test-secret-key-0123456789", token)
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
