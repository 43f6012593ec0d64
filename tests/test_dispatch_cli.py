"""`newsletter campaigns ...` and `newsletter send` as a user runs them (the real console script).

Bad input must give one line on stderr, a non-zero exit, no traceback, and leave the ledger
as it was.
"""

from __future__ import annotations

from dataclasses import astuple

from cli_runner import Result, run_main

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dispatch_helpers import SECRET, add_people, setup_db
from newsletter.store import queries as q
from smtp_server import free_port

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digest_dir(tmp_path_factory) -> Path:
    """A digest composed from the sample articles by the real compose pipeline."""
    from newsletter.compose import compose, write_digest
    from newsletter.config import Config

    out = tmp_path_factory.mktemp("digest")
    d = compose([str(REPO / "articles")], Config(secret_key=SECRET))
    write_digest(d, out)
    return out


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    add_people(engine, "weekly", 5)
    add_people(engine, "empty", 2, start=50, status="unsubscribed")
    yield url, engine, tmp_path
    engine.dispose()



@pytest.fixture
def run(capsys, monkeypatch):
    """Run ``newsletter.cli.main`` in this process (as the console script does), capturing output."""

    def invoke(url, tmp_path, *args, env=None):
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        for k, v in {"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.org",
                     "NEWSLETTER_OUTBOX": str(tmp_path / "outbox"), **(env or {})}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.chdir(tmp_path)
        code, out, err = astuple(run_main(monkeypatch, capsys, ["--db", url, *args]))
        for k in (env or {}):
            monkeypatch.delenv(k)
        return Result(code, out, err)

    return invoke


def run_process(url, tmp_path, *args, env=None):
    """The real console script in a subprocess."""
    e = dict(os.environ)
    e.pop("NEWSLETTER_CONFIG", None)
    e.update({"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.org",
              "NEWSLETTER_OUTBOX": str(tmp_path / "outbox")})
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "newsletter", "--db", url, *args], capture_output=True, text=True,
                          env=e, cwd=tmp_path, timeout=120)


def one_line_error(p, *needles):
    assert p.returncode != 0, p.stdout
    assert "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), p.stderr
    for n in needles:
        assert n.lower() in lines[0].lower(), lines[0]
    return lines[0]


def ledger(engine, cid):
    with engine.begin() as conn:
        return q.counts_by_state(conn, cid), q.campaign_status(conn, cid)


def test_create_list_show_send_to_outbox(site, digest_dir, run):
    url, engine, tmp = site
    p = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir), "--subject", "Issue 1")
    assert p.returncode == 0, p.stderr
    cid = int(p.stdout.strip().splitlines()[-1])
    listed = json.loads(run(url, tmp, "campaigns", "list", "--format", "json").stdout)
    assert [(c["id"], c["status"], c["subject"], c["lists"]) for c in listed] == [(cid, "draft", "Issue 1", ["weekly"])]
    shown = json.loads(run(url, tmp, "campaigns", "show", str(cid), "--format", "json").stdout)
    assert shown["audience"] == 5 and shown["html_size"] > 1000
    p = run(url, tmp, "send", str(cid), "--outbox", str(tmp / "mail"), "--format", "json")
    assert p.returncode == 0, p.stderr
    summary = json.loads(p.stdout)
    assert summary["status"] == "finished" and summary["counts"] == {"sent": 5}
    assert len(list((tmp / "mail").glob("*.eml"))) == 5
    table = run(url, tmp, "campaigns", "list")
    assert "finished" in table.stdout and "Issue 1" in table.stdout
    text = run(url, tmp, "campaigns", "show", str(cid))
    assert "sent 5" in text.stdout


def test_send_test_address_touches_no_ledger(site, digest_dir, smtp_server, run):
    url, engine, tmp = site
    cid = int(run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1])
    p = run(url, tmp, "send", "--test", "ana@example.com", str(cid), "--smtp", smtp_server.url)
    assert p.returncode == 0, p.stderr
    assert smtp_server.recipients() == ["ana@example.com"]
    assert smtp_server.received()[0].headers["Subject"].startswith("[TEST] ")
    assert ledger(engine, cid) == ({}, "draft")


def test_pause_resume_cancel(site, digest_dir, run):
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    one_line_error(run(url, tmp, "campaigns", "pause", cid), "draft", "paused")
    p = run(url, tmp, "campaigns", "cancel", cid)
    assert p.returncode == 0 and "cancelled" in p.stdout
    one_line_error(run(url, tmp, "send", cid, "--outbox", str(tmp / "m")), "cancelled")
    one_line_error(run(url, tmp, "campaigns", "resume", cid), "cancelled")


def _make_paused(engine, cid):
    """A campaign a user paused before anything was sent."""
    from newsletter.dispatch.campaigns import transition
    from newsletter.store.db import transaction

    with transaction(engine) as conn:
        transition(conn, int(cid), "running")
        transition(conn, int(cid), "paused", reason="paused by the user")


def test_resume_refuses_a_campaign_that_is_not_paused_or_running(site, digest_dir, run):
    """`campaigns resume` on a draft (a mistyped id) must not send the whole campaign."""
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    one_line_error(run(url, tmp, "campaigns", "resume", cid, "--outbox", str(tmp / "mail")),
                          f"campaign {cid} is draft: only a paused or running campaign can be resumed",
                          f"newsletter send {cid}")
    assert ledger(engine, int(cid)) == ({}, "draft") and not (tmp / "mail").exists()
    one_line_error(run(url, tmp, "campaigns", "resume", cid, "--no-send"), "is draft")
    assert ledger(engine, int(cid)) == ({}, "draft")
    # a finished one: nothing to resume
    assert run(url, tmp, "send", cid, "--outbox", str(tmp / "mail")).returncode == 0
    one_line_error(run(url, tmp, "campaigns", "resume", cid, "--outbox", str(tmp / "mail")), "is finished",
                   "--resend-ambiguous")
    assert len(list((tmp / "mail").glob("*.eml"))) == 5
    # a paused one is what resume is for
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    _make_paused(engine, cid)
    p = run(url, tmp, "campaigns", "resume", cid, "--outbox", str(tmp / "mail2"))
    assert p.returncode == 0, p.stderr
    assert ledger(engine, int(cid)) == ({"sent": 5}, "finished") and len(list((tmp / "mail2").glob("*.eml"))) == 5


@pytest.mark.parametrize("action, status, then", [
    ("pause", "paused", "; `newsletter campaigns resume {cid}` continues"),
    ("cancel", "cancelled", ""),
])
def test_send_stopped_from_elsewhere_exits_4(site, digest_dir, smtp_server, run, action, status, then):
    """A send that ends with its campaign unfinished says so in its exit status (4), not 0."""
    from newsletter.dispatch import campaigns

    url, engine, tmp = site
    add_people(engine, "weekly", 15, start=100)
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    e = dict(os.environ)
    e.pop("NEWSLETTER_CONFIG", None)
    e.update({"NEWSLETTER_SECRET_KEY": SECRET, "NEWSLETTER_BASE_URL": "https://news.example.org"})
    p = subprocess.Popen([sys.executable, "-m", "newsletter", "--db", url, "send", cid, "--smtp", smtp_server.url,
                          "--rate", "4/s", "--concurrency", "1"], env=e, cwd=tmp, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    try:
        assert smtp_server.wait_for(2, timeout=60)
        getattr(campaigns, f"{action}_campaign")(engine, cid)
        out, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 4, err
    counts, st = ledger(engine, int(cid))
    assert st == status and counts.get("sent") == len(smtp_server.received()) < 20
    left = counts.get("pending", 0)
    assert err.strip() == f"campaign {cid} is not finished ({status}): {left} copies left to send" + then.format(cid=cid)
    assert f"stopped: {status}" in out


def test_bad_inputs_one_line_and_ledger_unchanged(site, digest_dir, smtp_server_factory, tmp_path, run):
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    before = ledger(engine, int(cid))
    assert before == ({}, "draft")
    one_line_error(run(url, tmp, "send", "999"), "campaign 999 does not exist")
    one_line_error(run(url, tmp, "send", "abc"), "campaign 'abc'")
    one_line_error(run(url, tmp, "send", cid, "--smtp", "smtp://mail.example.org:notaport"), "does not parse")
    one_line_error(run(url, tmp, "send", cid, "--smtp", "ftp://mail.example.org"), "does not parse")
    one_line_error(run(url, tmp, "send", cid, "--smtp", "smtp://ana:hunter2@127.0.0.1:25"), "password")
    one_line_error(run(url, tmp, "send", cid, "--rate", "fast"), "rate")
    one_line_error(run(url, tmp, "send", cid, "--smtp", f"smtp://127.0.0.1:{free_port()}"), "connection refused")
    srv = smtp_server_factory(auth=("ana", "right"))
    line = one_line_error(run(url, tmp, "send", cid, "--smtp", f"smtp://ana@127.0.0.1:{srv.port}",
                              env={"NEWSLETTER_SMTP_PASSWORD": "wrong-secret"}), "refused the login")
    assert "wrong-secret" not in line
    assert ledger(engine, int(cid)) == before and srv.received() == []
    # a list with no active subscribers
    empty = run(url, tmp, "campaigns", "create", "--list", "empty", "--from", str(digest_dir))
    assert empty.returncode == 0 and "no active subscribers" in empty.stderr
    ecid = empty.stdout.split()[-1]
    one_line_error(run(url, tmp, "send", ecid, "--outbox", str(tmp / "m")), "no active subscribers")
    assert ledger(engine, int(ecid)) == ({}, "draft")
    # creation problems write nothing
    (tmp_path / "nodigest").mkdir()
    one_line_error(run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(tmp_path / "nodigest")), "digest.html")
    one_line_error(run(url, tmp, "campaigns", "create", "--list", "nope", "--from", str(digest_dir)), "list 'nope' does not exist")
    one_line_error(run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir),
                       "--subject", "Hi\r\nBcc: victim@example.net"), "line break")
    assert len(json.loads(run(url, tmp, "campaigns", "list", "--format", "json").stdout)) == 2
    # a finished campaign is not sent again
    assert run(url, tmp, "send", cid, "--outbox", str(tmp / "m")).returncode == 0
    after = ledger(engine, int(cid))
    one_line_error(run(url, tmp, "send", cid, "--outbox", str(tmp / "m")), "already finished")
    assert ledger(engine, int(cid)) == after


def test_smtp_send_refuses_links_readers_cannot_follow(site, digest_dir, smtp_server, run):
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    for base in ("http://127.0.0.1:8000", "https://localhost:8443", "http://news.example.org", "https://[::1]/nl"):
        line = one_line_error(run(url, tmp, "send", cid, "--smtp", smtp_server.url, env={"NEWSLETTER_BASE_URL": base}),
                              f"base_url is {base}", "NEWSLETTER_BASE_URL", "--allow-local-links")
        assert "unsubscribe links would not work" in line
    paused = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    _make_paused(engine, paused)
    one_line_error(run(url, tmp, "campaigns", "resume", paused, "--smtp", smtp_server.url,
                       env={"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000"}), "base_url is")
    assert ledger(engine, int(paused)) == ({}, "paused")
    assert smtp_server.received() == [] and ledger(engine, int(cid)) == ({}, "draft")
    # a local test says so explicitly (flag or config key), and then it goes out
    p = run(url, tmp, "send", cid, "--smtp", smtp_server.url, "--allow-local-links",
            env={"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000"})
    assert p.returncode == 0, p.stderr
    assert len(smtp_server.received()) == 5
    assert "http://127.0.0.1:8000/unsubscribe/" in smtp_server.received()[0].headers["List-Unsubscribe"]


def test_allow_local_links_config_key_and_outbox_sends(site, digest_dir, smtp_server, run):
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    one_line_error(run(url, tmp, "send", cid, "--smtp", smtp_server.url,
                       env={"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000", "NEWSLETTER_ALLOW_LOCAL_LINKS": "false"}),
                   "base_url is")
    # the outbox is a local look at the files: no refusal
    p = run(url, tmp, "send", cid, "--outbox", str(tmp / "mail"), env={"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000"})
    assert p.returncode == 0, p.stderr
    cid2 = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    p = run(url, tmp, "send", cid2, "--smtp", smtp_server.url,
            env={"NEWSLETTER_BASE_URL": "http://127.0.0.1:8000", "NEWSLETTER_ALLOW_LOCAL_LINKS": "true"})
    assert p.returncode == 0, p.stderr
    assert len(smtp_server.received()) == 5


def test_from_address_is_the_flag_else_the_config_now_not_the_digests(site, digest_dir, run):
    url, engine, tmp = site
    digest_from = json.loads((digest_dir / "digest.json").read_text()).get("from_address") or ""
    env = {"NEWSLETTER_FROM": "Harbour News <harbour@example.net>", "NEWSLETTER_REPLY_TO": "desk@example.net"}
    assert "harbour@example.net" not in digest_from
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir), env=env).stdout.split()[-1]
    shown = json.loads(run(url, tmp, "campaigns", "show", cid, "--format", "json").stdout)
    assert shown["from_address"] == "Harbour News <harbour@example.net>" and shown["reply_to"] == "desk@example.net"
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir),
              "--sender", "Ana <ana@example.org>", env=env).stdout.split()[-1]
    shown = json.loads(run(url, tmp, "campaigns", "show", cid, "--format", "json").stdout)
    assert shown["from_address"] == "Ana <ana@example.org>"


def test_server_requiring_a_login_is_one_line_error_and_rows_stay_pending(site, digest_dir, smtp_server_factory, run):
    url, engine, tmp = site
    srv = smtp_server_factory(auth=("ana", "right"))
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    one_line_error(run(url, tmp, "send", cid, "--smtp", f"smtp://127.0.0.1:{srv.port}"),
                   f"smtp://127.0.0.1:{srv.port} requires authentication", "NEWSLETTER_SMTP_PASSWORD")
    assert ledger(engine, int(cid))[0] == {"pending": 5} and srv.received() == []


def _leave_two_ambiguous(engine, cid):
    """What a crash leaves: two rows handed to the server by a process that is gone."""
    with engine.begin() as conn:
        q.create_ledger(conn, int(cid))
        conn.execute(q.campaigns.update().where(q.campaigns.c.id == int(cid))
                     .values(ledger_created_at=q.utcnow(), status="running"))
        ids = [r.id for r in q.delivery_rows(conn, int(cid))][:2]
        conn.execute(q.deliveries.update().where(q.deliveries.c.id.in_(ids))
                     .values(state="sending", attempts=1, worker_id="gone.example:999999:dead"))
    return ["reader0@example.com", "reader1@example.com"]


def test_summary_after_resend_ambiguous_does_not_call_them_not_resent(site, digest_dir, smtp_server, run):
    url, engine, tmp = site
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    amb = _leave_two_ambiguous(engine, cid)
    p = run(url, tmp, "send", cid, "--smtp", smtp_server.url, "--resend-ambiguous")
    assert p.returncode == 0, p.stderr
    assert f"resent 2 ambiguous copies (same Message-ID): {', '.join(amb)}" in p.stdout
    assert "not resent" not in p.stdout
    assert sorted(smtp_server.recipient_counts()) == [f"reader{i}@example.com" for i in range(5)]
    # without the flag they are reported, not resent
    cid = run(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir)).stdout.split()[-1]
    _leave_two_ambiguous(engine, cid)
    p = run(url, tmp, "send", cid, "--smtp", smtp_server.url)
    assert p.returncode == 0, p.stderr
    assert f"not resent, use --resend-ambiguous): {', '.join(amb)}" in p.stdout and "resent 2" not in p.stdout


@pytest.mark.parametrize("command, shown", [
    (("send",), ["smtp://[user@]host[:port]", "a configured [smtp.NAME]", "Send one [TEST] copy"]),
    (("campaigns", "resume"), ["smtp://[user@]host[:port]", "a configured [smtp.NAME]"]),
])
def test_help_shows_square_brackets_literally(command, shown):
    """Rich markup must not eat bracketed parts of the help (e.g. ``[user@]`` as a style tag)."""
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1", "TERM": "dumb"}
    p = subprocess.run([sys.executable, "-m", "newsletter", *command, "--help"], capture_output=True, text=True,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    for text in shown:
        assert text in p.stdout, p.stdout
    assert "\\[" not in p.stdout


def test_real_console_script_create_send_and_error(site, digest_dir):
    url, engine, tmp = site
    p = run_process(url, tmp, "campaigns", "create", "--list", "weekly", "--from", str(digest_dir))
    assert p.returncode == 0, p.stderr
    cid = p.stdout.strip().splitlines()[-1]
    p = run_process(url, tmp, "send", cid)  # no SMTP configured: the outbox, nothing reaches anyone
    assert p.returncode == 0, p.stderr
    assert "finished" in p.stdout and len(list((tmp / "outbox").glob("*.eml"))) == 5
    one_line_error(run_process(url, tmp, "send", "12345"), "campaign 12345 does not exist")
