"""Bounce reports end to end through a real Dovecot: a campaign copy goes out through aiosmtpd, the
receiving side's DSN (or complaint) for it arrives in the bounce mailbox, `newsletter bounces
process` (or the worker's poll) reads it, the subscriber is bounced and suppressed, and the next
campaign skips them. Also: the CLI's one-line errors and summary."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
from email.utils import make_msgid

import pytest

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from doc_checks import undocumented_options, usage_lines
from dovecot import dovecot, dovecot_factory  # noqa: F401  (fixtures)
from newsletter.dispatch.sender import send_campaign
from newsletter.feedback.process import process_mailboxes
from newsletter.schedule.worker import run_worker
from newsletter.store.subscribers import get_subscriber
from newsletter.store.suppressions import find_suppression


@pytest.fixture
def env_any(db_url, tmp_path):
    engine = setup_db(db_url)
    yield engine, make_config(db_url, tmp_path, bounce_address="bounces@example.org")
    engine.dispose()


@pytest.fixture
def env(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    yield engine, make_config(sqlite_url, tmp_path, bounce_address="bounces@example.org")
    engine.dispose()


def dsn_for(received, recipient: str, *, status: str = "5.1.1", action: str = "failed", quote: bool = True) -> bytes:
    """The RFC 3464 report a receiving MTA (Postfix's wording) sends back to the copy's envelope
    sender, quoting the copy's headers."""
    headers = received.data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace") if quote else "X-Nothing: quoted"
    boundary = "=_report_" + make_msgid()[1:13].replace(".", "")
    text = f"""From: MAILER-DAEMON@mx.example.com (Mail Delivery System)
To: {received.mail_from}
Subject: Undelivered Mail Returned to Sender
Message-ID: {make_msgid(domain="mx.example.com")}
Date: Thu, 03 Dec 2026 09:30:00 +0000
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"

--{boundary}
Content-Type: text/plain; charset=us-ascii

I'm sorry to have to inform you that your message could not be delivered.

<{recipient}>: host mx.example.com said: 550 {status} User unknown

--{boundary}
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.com
Arrival-Date: Thu, 03 Dec 2026 09:29:58 +0000

Final-Recipient: rfc822; {recipient}
Original-Recipient: rfc822; {recipient}
Action: {action}
Status: {status}
Diagnostic-Code: smtp; 550 {status} <{recipient}>: Recipient address rejected: User unknown

--{boundary}
Content-Type: text/rfc822-headers

{headers}

--{boundary}--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")


def bounce_config(config, dovecot, **kw):
    return dataclasses.replace(config, bounce_mailbox=dovecot.url("imaps"), bounce_mailbox_password=dovecot.password, **kw)


def test_hard_bounce_through_dovecot_suppresses_and_the_next_campaign_skips(env_any, dovecot, smtp_server, monkeypatch):
    engine, config = env_any
    monkeypatch.setenv("SSL_CERT_FILE", str(dovecot.cert))
    add_people(engine, "weekly", 3)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    copy = smtp_server.by_recipient("reader1@example.com")[0]
    from newsletter.feedback.verp import read_verp_address
    from newsletter.store.subscribers import get_subscriber as subscriber

    # the envelope sender names campaign and subscriber (VERP): the report needs nothing else
    assert read_verp_address(copy.mail_from, config.secret_key) == (c.id, subscriber(engine, "reader1@example.com").id)
    report = dsn_for(copy, "forwarded-to@elsewhere.example", quote=False)  # the MTA names another address, quotes nothing
    dovecot.append(report)
    cfg = bounce_config(config, dovecot)
    r = process_mailboxes(engine, cfg)
    assert (r.read, r.reports, r.events_new, r.bounced, r.errors) == (1, 1, 1, 1, [])
    assert get_subscriber(engine, "reader1@example.com").lists["weekly"] == "bounced"
    assert find_suppression(engine, "reader1@example.com") is not None
    assert (dovecot.folder_count("INBOX"), dovecot.folder_count("newsletter-processed")) == (0, 1)
    # the same report delivered again: nothing counted twice
    dovecot.append(report)
    again = process_mailboxes(engine, cfg)
    assert (again.read, again.duplicates, again.events_new, again.bounced) == (1, 1, 0, 0)
    smtp_server.clear()
    c2 = make_campaign(engine, config)
    send_campaign(engine, c2.id, config, smtp=smtp_server.url)
    assert sorted(smtp_server.recipient_counts()) == ["reader0@example.com", "reader2@example.com"]


def test_one_mailbox_for_bounces_and_unsubscribes_tells_them_apart(env, dovecot, smtp_server):
    from test_mailbox import answer_mailto

    engine, config = env
    add_people(engine, "weekly", 3)
    c = make_campaign(engine, config, )
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    dovecot.append(dsn_for(smtp_server.by_recipient("reader0@example.com")[0], "reader0@example.com"),
                   answer_mailto(smtp_server.by_recipient("reader2@example.com")[0]))
    url = dovecot.url("imap", tls="none")
    cfg = dataclasses.replace(config, bounce_mailbox=url, unsubscribe_mailbox=url, bounce_mailbox_password=dovecot.password)
    r = process_mailboxes(engine, cfg)
    assert (r.mailboxes, r.read, r.bounced, r.unsubscribed) == ([url], 2, 1, 1)
    lists = {e: get_subscriber(engine, e).lists["weekly"] for e in ("reader0@example.com", "reader1@example.com", "reader2@example.com")}
    assert lists == {"reader0@example.com": "bounced", "reader1@example.com": "active", "reader2@example.com": "unsubscribed"}


def test_the_worker_polls_the_mailbox_and_a_failing_mailbox_is_only_a_warning(env, dovecot, smtp_server):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    dovecot.append(dsn_for(smtp_server.by_recipient("reader1@example.com")[0], "reader1@example.com"))
    cfg = dataclasses.replace(config, bounce_mailbox=dovecot.url("imap", tls="none"), bounce_mailbox_password=dovecot.password)
    lines: list[str] = []
    report = run_worker(engine, cfg, once=True, on_event=lines.append)
    assert report.stopped_by == "one pass done"
    assert get_subscriber(engine, "reader1@example.com").lists["weekly"] == "bounced"
    assert any(line.startswith("mailbox: 1 message(s) read") and "people bounced 1" in line for line in lines)
    # a mailbox refusing the login: one warning line naming it, the worker carries on
    bad = dataclasses.replace(cfg, bounce_mailbox_password="wrong")
    lines.clear()
    report = run_worker(engine, bad, once=True, on_event=lines.append)
    assert report.stopped_by == "one pass done"
    warnings = [line for line in lines if "login refused" in line]
    assert len(warnings) == 1 and warnings[0].startswith("warning: mailbox: imap://bounces@127.0.0.1") and "wrong" not in warnings[0].split("'bounces'")[1]


def test_the_worker_polls_in_the_background_every_interval(env, dovecot):
    from test_mailbox import mail, token_for

    engine, config = env
    add_people(engine, "weekly", 2)
    cfg = dataclasses.replace(config, unsubscribe_mailbox=dovecot.url("imap", tls="none"),
                              unsubscribe_mailbox_password=dovecot.password, bounce_poll_interval=0.2)
    stop, seen = threading.Event(), threading.Event()
    lines: list[str] = []

    def on_event(line: str) -> None:
        lines.append(line)
        if line.startswith("mailbox:") and "unsubscribed 1" in line:
            seen.set()

    t = threading.Thread(target=run_worker, args=(engine, cfg), kwargs=dict(stop_event=stop, on_event=on_event, poll_interval=0.2))
    t.start()
    try:
        dovecot.append(mail(f"unsubscribe {token_for(engine, 'reader1@example.com')}"))  # arrives while the worker runs
        assert seen.wait(60), lines
    finally:
        stop.set()
        t.join(60)
    assert not t.is_alive()
    assert get_subscriber(engine, "reader1@example.com").lists["weekly"] == "unsubscribed"


def _cli(args, env_extra, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(env_extra)
    return subprocess.run([sys.executable, "-m", "newsletter", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=120)


def test_cli_bounces_process_prints_a_summary_and_one_line_errors(env, dovecot, smtp_server, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    dovecot.append(dsn_for(smtp_server.by_recipient("reader1@example.com")[0], "reader1@example.com"))
    base = {"NEWSLETTER_DATABASE_URL": config.database_url, "NEWSLETTER_SECRET_KEY": config.secret_key,
            "NEWSLETTER_BOUNCE_MAILBOX": dovecot.url("imaps"), **dovecot.env()}
    r = _cli(["bounces", "process"], base, tmp_path)
    assert r.returncode == 0, r.stderr
    assert "1 message(s) read; events 1 new, 0 duplicate, 0 unmatched; people bounced 1, complained 0, unsubscribed 0" in r.stdout
    r = _cli(["bounces", "process", "--format", "json"], base, tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["read"] == 0
    bad = {**base, "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD": "Not-The-Password"}
    r = _cli(["bounces", "process"], bad, tmp_path)
    assert r.returncode == 1 and "Traceback" not in r.stderr and "Not-The-Password" not in r.stderr + r.stdout
    assert f"error: {dovecot.url('imaps')}: login refused for 'bounces'" in r.stderr
    r = _cli(["bounces", "process"], {**base, "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD": ""}, tmp_path)
    assert r.returncode != 0 and "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD" in r.stderr and "Traceback" not in r.stderr
    r = _cli(["bounces", "requests", "--format", "json"], base, tmp_path)
    assert r.returncode == 0 and r.stdout == ""


def test_docs_cover_the_mailbox_commands_options_and_config_keys():
    import typer

    from conftest import REPO
    from newsletter.cli import app

    docs = (REPO / "docs" / "bounces-mailbox.md").read_text(encoding="utf-8")
    group = typer.main.get_command(app).commands["bounces"]
    for name in ("process", "requests"):
        assert usage_lines(docs, f"newsletter bounces {name}"), name
        # Typer's parameters are not click.Option instances (Typer carries its own click): ask each its kind
        options = [p.opts[0] for p in group.commands[name].params if p.param_type_name == "option" and "--help" not in p.opts]
        assert options, f"bounces {name}: no options found (the check would pass vacuously)"
        assert undocumented_options(docs, f"newsletter bounces {name}", options) == [], name
    for key in ("bounce_mailbox", "unsubscribe_mailbox", "bounce_processed_folder", "bounce_poll_interval",
                "bounce_max_message_bytes", "bounce_mailbox_timeout", "bounce_pop3_delete",
                "NEWSLETTER_BOUNCE_MAILBOX_PASSWORD", "NEWSLETTER_UNSUBSCRIBE_MAILBOX_PASSWORD"):
        assert f"`{key}`" in docs, key
