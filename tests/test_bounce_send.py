"""The send side of the feedback loop, through a real SMTP server (aiosmtpd on 127.0.0.1).

Each copy's envelope sender is a signed VERP address naming its campaign and subscriber; a 5xx
reply during our own send becomes an ``smtp`` bounce event and goes through the same rules as a
bounce read from the mailbox; the rate guard pauses a send that bounces too much.
"""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import select

from dispatch_helpers import SECRET, add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.campaigns import campaign_info, get_campaign
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import ConfigError
from newsletter.feedback.parse import parse_message
from newsletter.feedback.record import RATE_PAUSE_PREFIX
from newsletter.feedback.verp import read_verp_address
from newsletter.store import queries as q
from newsletter.store.bounce_models import BounceEvent
from newsletter.store.subscribers import get_subscriber
from newsletter.store.suppressions import find_suppression

events_t = BounceEvent.__table__


@pytest.fixture
def env_any(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path, bounce_address="bounces@example.org")
    yield engine, config
    engine.dispose()


@pytest.fixture
def env(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path, bounce_address="bounces@example.org")
    yield engine, config
    engine.dispose()


def events(engine):
    with engine.begin() as conn:
        return [dict(r) for r in conn.execute(select(events_t).order_by(events_t.c.id)).mappings()]


def test_each_copy_goes_out_from_its_own_signed_verp_address_with_feedback_id(env, smtp_server):
    engine, config = env
    add_people(engine, "weekly", 4)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url, concurrency=2)
    got = smtp_server.received()
    assert len(got) == 4
    senders = set()
    for m in got:
        (rcpt,) = m.rcpt_tos
        sid = get_subscriber(engine, rcpt).id
        assert m.mail_from.startswith("bounces+") and m.mail_from.endswith("@example.org")
        assert len(m.mail_from.split("@")[0]) <= 64
        assert read_verp_address(m.mail_from, SECRET) == (c.id, sid)
        senders.add(m.mail_from)
        msg = m.message()
        assert msg["Feedback-ID"] == f"{c.id}:weekly:newsletter:example.org"
        assert msg["X-Newsletter-Ref"] == m.mail_from.split("+")[1].split("@")[0]
    assert len(senders) == 4
    assert read_verp_address(next(iter(senders)), "another-secret-0123456789") is None


def test_verp_off_or_no_bounce_address_keeps_one_envelope_sender_and_the_ref_header(env, smtp_server, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 2)
    config.verp = False
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert {m.mail_from for m in smtp_server.received()} == {"bounces@example.org"}
    config.verp, config.bounce_address = True, None
    c2 = make_campaign(engine, config)
    send_campaign(engine, c2.id, config, smtp=smtp_server.url)
    second = [m for m in smtp_server.received() if m.message()["Feedback-ID"].startswith(f"{c2.id}:")]
    assert len(second) == 2 and {m.mail_from for m in second} == {"news@example.org"}
    assert all(m.message()["X-Newsletter-Ref"] for m in second)


def test_a_bounce_quoting_our_headers_is_attributed_by_the_ref_header(env, smtp_server):
    """A prose bounce with no VERP envelope but our headers quoted: the parser finds the copy."""
    engine, config = env
    add_people(engine, "weekly", 1)
    config.verp = False
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    (m,) = smtp_server.received()
    head = m.data.split(b"\r\n\r\n", 1)[0]
    bounce = (b"From: MAILER-DAEMON@mx.example.com\r\nTo: bounces@example.org\r\nSubject: Undelivered Mail\r\n"
              b"Message-ID: <b1@mx.example.com>\r\nContent-Type: multipart/report; report-type=delivery-status;"
              b" boundary=\"B\"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n"
              b"--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.com\r\n\r\n"
              b"Final-Recipient: rfc822; reader0@example.com\r\nAction: failed\r\nStatus: 5.1.1\r\n"
              b"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n\r\n--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
              + head + b"\r\n--B--\r\n")
    (b,) = parse_message(bounce, secret=SECRET)
    assert (b.campaign_id, b.subscriber_id) == (c.id, get_subscriber(engine, "reader0@example.com").id)


def test_a_bounce_address_too_long_for_a_token_is_refused_before_anything_is_sent(env, smtp_server):
    engine, config = env
    add_people(engine, "weekly", 1)
    config.bounce_address = "a-very-long-bounce-mailbox-name-for-the-list@example.org"
    c = make_campaign(engine, config)
    with pytest.raises(ConfigError, match="bounce_address"):
        send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert smtp_server.received() == []


def test_a_5xx_unknown_user_during_our_send_is_a_hard_bounce_and_the_next_campaign_skips_them(env_any, smtp_server_factory):
    engine, config = env_any
    add_people(engine, "weekly", 6)
    srv = smtp_server_factory(reject={"reader2@example.com"})
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.counts == {"sent": 5, "failed": 1} and s.suppressed == ["reader2@example.com"]
    (ev,) = events(engine)
    sid = get_subscriber(engine, "reader2@example.com").id
    assert (ev["source"], ev["kind"], ev["status"], ev["outcome"]) == ("smtp", "hard", "5.1.1", "bounced")
    assert (ev["campaign_id"], ev["subscriber_id"], ev["recipient"]) == (c.id, sid, "reader2@example.com")
    assert ev["reason"].startswith("550 5.1.1")
    assert get_subscriber(engine, "reader2@example.com").lists == {"weekly": "bounced"}
    assert find_suppression(engine, "reader2@example.com").reason.startswith("hard bounce (smtp, campaign")
    fb = campaign_info(engine, c.id).feedback
    assert (fb["copies"], fb["hard"], fb["hard_rate"]) == (6, 1, round(1 / 6, 6))
    # the next campaign: nobody asks the server about reader2 again
    srv.behaviour.reject = set()
    c2 = make_campaign(engine, config)
    s2 = send_campaign(engine, c2.id, config, smtp=srv.url)
    assert s2.counts == {"sent": 5}
    assert srv.recipient_counts()["reader2@example.com"] if "reader2@example.com" in srv.recipient_counts() else True
    assert sum(1 for m in srv.received() if "reader2@example.com" in m.rcpt_tos) == 0
    with engine.begin() as conn:
        assert "reader2@example.com" not in {r.email for r in q.delivery_rows(conn, c2.id)}


def test_a_policy_block_during_our_send_is_stored_and_changes_nothing(env, smtp_server_factory):
    engine, config = env
    add_people(engine, "weekly", 2)
    srv = smtp_server_factory(reject={"reader1@example.com"},
                              reject_code="554 5.7.1 <{addr}>: Service unavailable; client host blocked using zen.spamhaus.org")
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"sent": 1, "failed": 1} and s.suppressed == []
    (ev,) = events(engine)
    assert (ev["source"], ev["kind"], ev["status"], ev["outcome"]) == ("smtp", "soft", "5.7.1", "none")
    assert get_subscriber(engine, "reader1@example.com").lists == {"weekly": "active"}
    assert find_suppression(engine, "reader1@example.com") is None


def test_a_copy_given_up_after_temporary_failures_is_a_soft_bounce(env, smtp_server_factory):
    engine, config = env
    config.max_attempts = 2
    add_people(engine, "weekly", 1)
    srv = smtp_server_factory(reject={"reader0@example.com"}, reject_code="452 4.2.2 <{addr}>: Mailbox full")
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"failed": 1}
    (ev,) = events(engine)
    assert (ev["source"], ev["kind"], ev["status"], ev["outcome"]) == ("smtp", "soft", "4.2.2", "counted")
    assert ev["reason"].startswith("gave up after 2 attempts: 452 4.2.2")


def test_too_many_hard_bounces_pause_the_send_with_the_reason_stored(env_any, smtp_server_factory):
    engine, config = env_any
    config.pause_min_sent = 10
    config.bounce_pause_rate = 0.05
    add_people(engine, "weekly", 40)
    hold = threading.Event()
    bad = {f"reader{i}@example.com" for i in range(10)}
    srv = smtp_server_factory(reject=bad, hold=hold)  # refused at RCPT; accepted copies wait at DATA
    c = make_campaign(engine, config)
    result = {}
    t = threading.Thread(target=lambda: result.update(s=send_campaign(engine, c.id, config, smtp=srv.url,
                                                                       concurrency=1, batch_size=50)))
    t.start()
    try:
        deadline = time.monotonic() + 30
        while get_campaign(engine, c.id).status != "paused" and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        hold.set()
        t.join(30)
    assert not t.is_alive()
    s = result["s"]
    camp = get_campaign(engine, c.id)
    assert camp.status == "paused" and camp.status_reason.startswith(RATE_PAUSE_PREFIX)
    assert "hard bounce rate 100.00% (10 of 10 copies)" in camp.status_reason
    assert s.status == "paused" and s.counts["failed"] == 10 and s.counts.get("sent", 0) <= 1
    assert s.counts.get("pending", 0) >= 29
    assert len(events(engine)) == 10


def test_bounces_list_shows_the_stored_events_by_campaign_and_kind(env, smtp_server_factory, tmp_path, monkeypatch, capsys):
    import json

    from cli_runner import run_main

    engine, config = env
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(reject={"reader1@example.com"})
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=srv.url)

    def cli(*args, cmd=("bounces", "list")):
        r = run_main(monkeypatch, capsys, ["--db", config.database_url, *cmd, *args])
        return r.returncode, r.stdout, r.stderr

    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.chdir(tmp_path)
    code, out, _ = cli("--campaign", str(c.id), "--kind", "hard", "--format", "json")
    assert code == 0
    (row,) = [json.loads(line) for line in out.splitlines()]
    assert (row["recipient"], row["kind"], row["status"], row["source"], row["outcome"], row["campaign_id"]) == (
        "reader1@example.com", "hard", "5.1.1", "smtp", "bounced", c.id)
    code, out, _ = cli("--kind", "complaint", "--format", "json")
    assert code == 0 and out == ""
    code, out, _ = cli("--subscriber", "reader1@example.com")
    assert code == 0 and "reader1@example.com" in out and "bounced" in out
    code, out, _ = cli("campaigns", "show", str(c.id), cmd=())
    assert code == 0 and "feedback   hard 1 (33.33%), soft 0 (0.00%), complaints 0 (0.00%) of 3 copies" in out
    code, out, err = cli("--campaign", "999")
    assert code == 1 and "campaign 999 does not exist" in err and "Traceback" not in err
    code, out, err = cli("--kind", "bogus")
    assert code == 2 and "bogus" in err


def test_the_api_campaign_endpoint_carries_the_bounce_and_complaint_rates(env, smtp_server_factory):
    from newsletter.web import create_app
    from newsletter.web.app import Limits
    from test_web_api import REMOTE, asgi_get

    engine, config = env
    add_people(engine, "weekly", 4)
    srv = smtp_server_factory(reject={"reader3@example.com"})
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=srv.url)
    app = create_app(config.replace(admin_token="tok-0123456789abcdef"), engine, limits=Limits(login_per_ip=(3, 60)))
    r = asgi_get(app, f"/api/campaigns/{c.id}", REMOTE, {"Authorization": "Bearer tok-0123456789abcdef"})
    assert r.status_code == 200
    assert r.json()["feedback"] == {"copies": 4, "hard": 1, "soft": 0, "complaints": 0, "hard_rate": 0.25,
                                    "soft_rate": 0.0, "complaint_rate": 0.0}


def test_a_copy_whose_token_would_not_fit_goes_out_with_the_plain_envelope(env, smtp_server):
    """The token grows with the subscriber id: the up-front check uses today's highest id, and a
    copy for a far larger one (added later) is sent from the plain bounce address, not failed."""
    from newsletter.dispatch.personalize import Recipient
    from newsletter.dispatch.factory import message_factory

    engine, config = env
    add_people(engine, "weekly", 1)
    config.bounce_address = "newsletter-bounces-01234567@example.org"  # 27 characters: fits small ids only
    c = make_campaign(engine, config)
    f = message_factory(engine, c, config)
    small = f.build(Recipient(1, 1, "a@example.com", "", {}))
    huge = f.build(Recipient(2 ** 60, 1, "b@example.com", "", {}))
    assert small.mail_from.startswith("newsletter-bounces-01234567+") and b"X-Newsletter-Ref: " in small.data
    assert huge.mail_from == "newsletter-bounces-01234567@example.org" and b"X-Newsletter-Ref" not in huge.data
