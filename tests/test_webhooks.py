"""Provider webhooks end to end: requests signed the way SES/SNS, SendGrid, Mailgun and Postmark
sign them (with test keys) go through the real app, and the subscriber ends bounced, complained
and suppressed; unsigned, badly signed, stale and replayed requests get a 4xx and change nothing.

The SNS signing certificate is served by a real HTTP server on 127.0.0.1 (the certificate-host
check is relaxed for that address in the test receiver only); time is an injected clock.
"""

from __future__ import annotations

import json
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dispatch_helpers import add_people, make_config, setup_db
from test_bounce_rules import T0, deliver
from webhook_signers import CertServer, SendGridSigner, SNSSigner, basic, iso, mailgun_body
from newsletter.config import load_config
from newsletter.errors import ConfigError
from newsletter.feedback.verp import verp_address
from newsletter.feedback.webhooks import ReplayGuard, WebhookReceiver, sns_cert_url_ok
from newsletter.store.bounce_models import BounceEvent
from newsletter.store.subscribers import get_subscriber
from newsletter.store.suppressions import find_suppression
from newsletter.web import create_app

NOW = 1_796_000_000.0  # the receiver's clock (2026-11-30)
TOPIC = "arn:aws:sns:eu-west-1:123456789012:ses-feedback"
MG_KEY = "key-mailgun-test-0123456789abcdef"
PM_USER, PM_PASSWORD = "postmark", "pm-secret-password-42"
SECRET = "test-secret-key-0123456789abcdef"
SNS = SNSSigner(TOPIC)
SG = SendGridSigner()
events_t = BounceEvent.__table__


@pytest.fixture
def certs():
    with CertServer(SNS.pem) as server:
        yield server


def _setup(url, tmp_path, certs, **kw):
    engine = setup_db(url)
    config = make_config(url, tmp_path, secret_key=SECRET, bounce_address="bounces@example.org",
                         webhook_ses_topics=[TOPIC], webhook_sendgrid_key=SG.public_b64, webhook_mailgun_key=MG_KEY,
                         webhook_postmark_user=PM_USER, webhook_postmark_password=PM_PASSWORD, **kw)
    add_people(engine, "weekly", 4)
    campaign = deliver(engine, config, T0)
    receiver = WebhookReceiver(config, cert_url_ok=lambda u: u.startswith(certs.base + "/"), clock=lambda: NOW)
    client = TestClient(create_app(config, engine, webhooks=receiver), base_url="http://127.0.0.1:8000",
                        client=("203.0.113.9", 40000))
    return engine, config, campaign, client, receiver


@pytest.fixture
def env(db_url, tmp_path, certs):
    engine, config, campaign, client, receiver = _setup(db_url, tmp_path, certs)
    yield engine, config, campaign, client
    client.close()
    engine.dispose()


@pytest.fixture
def lite(sqlite_url, tmp_path, certs):
    engine, config, campaign, client, receiver = _setup(sqlite_url, tmp_path, certs)
    yield engine, config, campaign, client
    client.close()
    engine.dispose()


def lists(engine, addr):
    return get_subscriber(engine, addr).lists


def n_events(engine) -> int:
    with engine.begin() as conn:
        return conn.execute(select(func.count()).select_from(events_t)).scalar_one()


def event_rows(engine):
    with engine.begin() as conn:
        return [dict(r) for r in conn.execute(select(events_t).order_by(events_t.c.id)).mappings()]


def untouched(engine):
    """Nothing recorded, nobody moved, nothing suppressed."""
    assert n_events(engine) == 0
    for i in range(4):
        addr = f"reader{i}@example.com"
        assert lists(engine, addr) == {"weekly": "active"}
        assert find_suppression(engine, addr) is None


# --- SES through SNS -------------------------------------------------------------------------------

def ses_bounce(addr, feedback_id, *, btype="Permanent", status="5.1.1", source="news@example.org"):
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {"bounceType": btype, "bounceSubType": "General", "feedbackId": feedback_id,
                   "timestamp": iso(NOW - 30),
                   "bouncedRecipients": [{"emailAddress": addr, "status": status, "action": "failed",
                                          "diagnosticCode": f"smtp; 550 {status} user unknown"}]},
        "mail": {"messageId": "ses-msg-1", "source": source, "destination": [addr]},
    })


def ses_complaint(addr, feedback_id):
    return json.dumps({
        "notificationType": "Complaint",
        "complaint": {"feedbackId": feedback_id, "complaintFeedbackType": "abuse", "timestamp": iso(NOW - 30),
                      "complainedRecipients": [{"emailAddress": addr}]},
        "mail": {"messageId": "ses-msg-2", "source": "news@example.org",
                 "headers": [{"name": "X-Newsletter-Ref", "value": "notatoken"}]},
    })


def sns_post(client, certs, message, *, message_id, version="1", now=NOW, kind="Notification", **kw):
    env = SNS.envelope(kind, message, now=now, cert_url=f"{certs.base}/SimpleNotificationService-test.pem",
                       message_id=message_id, version=version, **kw)
    return client.post("/webhooks/ses", content=json.dumps(env), headers={"Content-Type": "text/plain"}), env


def test_ses_bounce_and_complaint_through_sns_mark_the_reader_and_suppress(env, certs):
    engine, config, campaign, client = env
    sid = get_subscriber(engine, "reader1@example.com").id
    verp = verp_address("bounces@example.org", SECRET, campaign.id, sid)
    r, _ = sns_post(client, certs, ses_bounce("reader1@example.com", "fb-1", source=verp), message_id="m-1", version="1")
    assert r.status_code == 200, r.text
    assert r.json()["new"] == 1
    r, _ = sns_post(client, certs, ses_complaint("reader2@example.com", "fb-2"), message_id="m-2", version="2")
    assert r.status_code == 200, r.text
    r, _ = sns_post(client, certs, ses_bounce("reader3@example.com", "fb-3", btype="Transient", status="4.2.2"),
                    message_id="m-3", version="2")
    assert r.status_code == 200, r.text
    assert lists(engine, "reader1@example.com") == {"weekly": "bounced"}
    assert find_suppression(engine, "reader1@example.com").reason.startswith("hard bounce")
    assert lists(engine, "reader2@example.com") == {"weekly": "complained"}
    assert find_suppression(engine, "reader2@example.com").reason == "complaint"
    assert lists(engine, "reader3@example.com") == {"weekly": "active"}  # one soft bounce: counted only
    assert lists(engine, "reader0@example.com") == {"weekly": "active"}
    rows = {r["recipient"]: r for r in event_rows(engine)}
    assert rows["reader1@example.com"]["campaign_id"] == campaign.id  # from the VERP envelope sender
    assert rows["reader1@example.com"]["source"] == "webhook" and rows["reader1@example.com"]["provider"] == "ses"
    assert rows["reader1@example.com"]["report_id"] == "ses:fb-1" and rows["reader1@example.com"]["status"] == "5.1.1"
    assert rows["reader2@example.com"]["kind"] == "complaint"
    assert (rows["reader3@example.com"]["kind"], rows["reader3@example.com"]["outcome"]) == ("soft", "counted")
    assert [g for g in certs.gets if g.endswith(".pem")] == ["/SimpleNotificationService-test.pem"]  # cached


def test_ses_refuses_forged_stale_foreign_and_replayed_messages(lite, certs):
    engine, config, campaign, client = lite
    good = ses_bounce("reader1@example.com", "fb-9")
    env = SNS.envelope("Notification", good, now=NOW, cert_url=f"{certs.base}/c.pem", message_id="m-9")

    def post(e):
        return client.post("/webhooks/ses", content=json.dumps(e), headers={"Content-Type": "text/plain"})

    tampered = dict(env, Message=ses_bounce("reader2@example.com", "fb-9"))
    assert post(tampered).status_code == 401
    unsigned = {k: v for k, v in env.items() if k != "Signature"}
    assert post(unsigned).status_code == 401
    from cryptography.hazmat.primitives.asymmetric import rsa
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = SNS.envelope("Notification", good, now=NOW, cert_url=f"{certs.base}/c.pem", message_id="m-9", key=other)
    r = post(forged)
    assert r.status_code == 401 and "signature does not verify" in r.json()["error"]
    for bad_url in ("https://sns.eu-west-1.amazonaws.com.evil.example/c.pem", "http://sns.eu-west-1.amazonaws.com/c.pem"):
        e = SNS.envelope("Notification", good, now=NOW, cert_url=bad_url, message_id="m-9")
        r = post(e)
        assert r.status_code == 401 and "SigningCertURL" in r.json()["error"]
    assert post(dict(env, SignatureVersion="3")).status_code == 401
    stale = SNS.envelope("Notification", good, now=NOW - 600, cert_url=f"{certs.base}/c.pem", message_id="m-9")
    r = post(stale)
    assert r.status_code == 400 and "stale" in r.json()["error"]
    foreign = SNSSigner("arn:aws:sns:eu-west-1:999999999999:someone-else")
    r = post(foreign.envelope("Notification", good, now=NOW, cert_url=f"{certs.base}/c.pem", message_id="m-9"))
    assert r.status_code == 403
    assert client.post("/webhooks/ses", content=b"{not json", headers={"Content-Type": "text/plain"}).status_code == 400
    untouched(engine)
    assert post(env).status_code == 200
    r = post(env)
    assert r.status_code == 409 and "replay" in r.json()["error"]
    assert n_events(engine) == 1


def test_sns_subscription_is_confirmed_only_when_configured(sqlite_url, tmp_path, certs):
    sub_url = f"{certs.base}/confirm?Action=ConfirmSubscription&Token=abc"
    for confirm in (False, True):
        engine, config, campaign, client, _ = _setup(sqlite_url if not confirm else sqlite_url.replace(".db", "2.db"),
                                                     tmp_path / str(confirm), certs, webhook_ses_confirm=confirm)
        r, _ = sns_post(client, certs, "You have chosen to subscribe", kind="SubscriptionConfirmation",
                        message_id=f"sub-{confirm}", SubscribeURL=sub_url, Token="abc")
        confirmations = [g for g in certs.gets if g.startswith("/confirm")]
        if confirm:
            assert r.status_code == 200 and r.json()["confirmed"] is True
            assert confirmations == ["/confirm?Action=ConfirmSubscription&Token=abc"]
        else:
            assert r.status_code == 403 and "webhook_ses_confirm" in r.json()["error"]
            assert confirmations == []
        client.close()
        engine.dispose()


def test_sns_certificate_url_rule():
    ok = ["https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
          "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem"]
    bad = ["http://sns.us-east-1.amazonaws.com/x.pem", "https://sns.us-east-1.amazonaws.com.evil.org/x.pem",
           "https://evil.org/sns.us-east-1.amazonaws.com/x.pem", "https://x@sns.us-east-1.amazonaws.com/x.pem",
           "https://sns.us-east-1.amazonaws.com:8443/x.pem", "https://sns.us-east-1.amazonaws.com/x.txt",
           "https://s3.amazonaws.com/x.pem", "http://127.0.0.1/x.pem", ""]
    assert all(sns_cert_url_ok(u) for u in ok)
    assert not any(sns_cert_url_ok(u) for u in bad)


# --- SendGrid -----------------------------------------------------------------------------------------

def sg_events():
    return json.dumps([
        {"email": "reader0@example.com", "event": "bounce", "type": "bounce", "status": "5.1.1",
         "reason": "550 5.1.1 The email account that you tried to reach does not exist", "sg_event_id": "sg-1",
         "timestamp": int(NOW) - 20},
        {"email": "reader1@example.com", "event": "spamreport", "sg_event_id": "sg-2", "timestamp": int(NOW) - 10},
        {"email": "reader2@example.com", "event": "open", "sg_event_id": "sg-3", "timestamp": int(NOW) - 5},
        {"email": "reader3@example.com", "event": "delivered", "response": "250 OK", "sg_event_id": "sg-4",
         "timestamp": int(NOW) - 5},
    ]).encode()


def test_sendgrid_signed_batch_bounces_and_complains(env):
    engine, config, campaign, client = env
    body = sg_events()
    r = client.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW)))
    assert r.status_code == 200, r.text
    assert (r.json()["events"], r.json()["ignored"], r.json()["new"]) == (3, 1, 3)
    assert lists(engine, "reader0@example.com") == {"weekly": "bounced"}
    assert lists(engine, "reader1@example.com") == {"weekly": "complained"}
    assert find_suppression(engine, "reader1@example.com").reason == "complaint"
    assert lists(engine, "reader2@example.com") == lists(engine, "reader3@example.com") == {"weekly": "active"}
    assert {r["report_id"] for r in event_rows(engine)} == {"sendgrid:sg-1", "sendgrid:sg-2", "sendgrid:sg-4"}
    # SendGrid echoes nothing of ours: tied by address, and to the latest copy mailed to it
    assert {r["campaign_id"] for r in event_rows(engine)} == {campaign.id}


def test_sendgrid_refuses_bad_signatures_stale_and_replays(lite):
    engine, config, campaign, client = lite
    body = sg_events()
    h = SG.headers(body, int(NOW))
    assert client.post("/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"}).status_code == 401
    assert client.post("/webhooks/sendgrid", content=body + b" ", headers=h).status_code == 401  # body changed
    assert client.post("/webhooks/sendgrid", content=body, headers=dict(h, **{
        "X-Twilio-Email-Event-Webhook-Signature": "not base64!"})).status_code == 401
    assert client.post("/webhooks/sendgrid", content=b"[" * 100000, headers=SG.headers(b"[" * 100000, int(NOW))).status_code == 400
    assert client.post("/webhooks/sendgrid", content=body, headers=dict(h, **{
        "X-Twilio-Email-Event-Webhook-Timestamp": str(int(NOW) + 1)})).status_code == 401  # timestamp changed
    assert client.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW), key=SendGridSigner().key)).status_code == 401
    r = client.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW) - 301))
    assert r.status_code == 400 and "stale" in r.json()["error"]
    assert client.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW) + 3600)).status_code == 400
    untouched(engine)
    assert client.post("/webhooks/sendgrid", content=body, headers=h).status_code == 200
    # the same signed payload again, even with a fresh (malleated or re-made) signature, is a replay
    r = client.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW)))
    assert r.status_code == 409
    assert n_events(engine) == 3


# --- Mailgun ------------------------------------------------------------------------------------------

def mg_failed(addr, event_id, *, severity="permanent", sender=None):
    return {"event": "failed", "severity": severity, "reason": "bounce", "id": event_id, "recipient": addr,
            "timestamp": NOW - 15, "envelope": {"sender": sender or "bounces@example.org"},
            "delivery-status": {"code": 550, "message": "5.1.1 No such user", "description": ""}}


def test_mailgun_signed_events(env):
    engine, config, campaign, client = env
    sid = get_subscriber(engine, "reader0@example.com").id
    verp = verp_address("bounces@example.org", SECRET, campaign.id, sid)
    r = client.post("/webhooks/mailgun", content=mailgun_body(MG_KEY, mg_failed("reader0@example.com", "mg-1", sender=verp),
                                                               ts=int(NOW), token="t" * 50))
    assert r.status_code == 200, r.text
    complaint = {"event": "complained", "id": "mg-2", "recipient": "reader1@example.com", "timestamp": NOW - 5}
    r = client.post("/webhooks/mailgun", content=mailgun_body(MG_KEY, complaint, ts=int(NOW), token="u" * 50))
    assert r.status_code == 200, r.text
    assert lists(engine, "reader0@example.com") == {"weekly": "bounced"}
    assert lists(engine, "reader1@example.com") == {"weekly": "complained"}
    rows = {r["recipient"]: r for r in event_rows(engine)}
    assert rows["reader0@example.com"]["campaign_id"] == campaign.id and rows["reader0@example.com"]["status"] == "5.1.1"


def test_mailgun_refuses_bad_hmac_stale_and_reused_tokens(lite, caplog):
    engine, config, campaign, client = lite
    caplog.set_level(logging.DEBUG)
    ev = mg_failed("reader0@example.com", "mg-1")
    good = mailgun_body(MG_KEY, ev, ts=int(NOW), token="a" * 50)
    assert client.post("/webhooks/mailgun", content=mailgun_body("wrong-key", ev, ts=int(NOW), token="a" * 50)).status_code == 401
    unsigned = json.dumps({"event-data": ev}).encode()
    assert client.post("/webhooks/mailgun", content=unsigned).status_code == 401
    odd = json.loads(good)
    odd["signature"]["signature"] = "é" * 64
    assert client.post("/webhooks/mailgun", content=json.dumps(odd).encode()).status_code == 401
    odd["signature"]["timestamp"] = "²"
    assert client.post("/webhooks/mailgun", content=json.dumps(odd).encode()).status_code == 400
    payload = json.loads(good)
    payload["event-data"]["recipient"] = "reader1@example.com"  # signature covers timestamp+token only: the token replay guard
    stale = mailgun_body(MG_KEY, ev, ts=int(NOW) - 400, token="b" * 50)
    r = client.post("/webhooks/mailgun", content=stale)
    assert r.status_code == 400 and "stale" in r.json()["error"]
    untouched(engine)
    assert client.post("/webhooks/mailgun", content=good).status_code == 200
    r = client.post("/webhooks/mailgun", content=json.dumps(payload).encode())  # same signed token, other event
    assert r.status_code == 409
    assert lists(engine, "reader1@example.com") == {"weekly": "active"}
    assert n_events(engine) == 1
    assert MG_KEY not in caplog.text


# --- Postmark -----------------------------------------------------------------------------------------

def pm_bounce(addr, rid, btype="HardBounce"):
    return json.dumps({"RecordType": "Bounce", "ID": rid, "Type": btype, "TypeCode": 1, "MessageID": "pm-msg",
                       "Email": addr, "BouncedAt": "2026-11-30T10:00:00Z",
                       "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist"}).encode()


def test_postmark_with_basic_auth(env):
    engine, config, campaign, client = env
    r = client.post("/webhooks/postmark", content=pm_bounce("reader0@example.com", 4323372036854775807), headers=basic(PM_USER, PM_PASSWORD))
    assert r.status_code == 200, r.text
    complaint = json.dumps({"RecordType": "SpamComplaint", "ID": 42, "Type": "SpamComplaint", "Email": "reader1@example.com",
                            "BouncedAt": "2026-11-30T10:00:00Z"}).encode()
    assert client.post("/webhooks/postmark", content=complaint, headers=basic(PM_USER, PM_PASSWORD)).status_code == 200
    assert lists(engine, "reader0@example.com") == {"weekly": "bounced"}
    assert lists(engine, "reader1@example.com") == {"weekly": "complained"}
    assert find_suppression(engine, "reader1@example.com").reason == "complaint"


def test_postmark_refuses_missing_or_wrong_credentials_other_ips_and_replays(sqlite_url, tmp_path, certs, caplog):
    caplog.set_level(logging.DEBUG)
    engine, config, campaign, client, receiver = _setup(sqlite_url, tmp_path, certs)
    body = pm_bounce("reader0@example.com", 7)
    r = client.post("/webhooks/postmark", content=body)
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
    assert client.post("/webhooks/postmark", content=body, headers=basic(PM_USER, "wrong")).status_code == 401
    assert client.post("/webhooks/postmark", content=body, headers=basic("other", PM_PASSWORD)).status_code == 401
    untouched(engine)
    assert client.post("/webhooks/postmark", content=body, headers=basic(PM_USER, PM_PASSWORD)).status_code == 200
    assert client.post("/webhooks/postmark", content=body, headers=basic(PM_USER, PM_PASSWORD)).status_code == 409
    # after a restart (a fresh replay record) the stored event still refuses the replay
    receiver.replay = ReplayGuard()
    assert client.post("/webhooks/postmark", content=body, headers=basic(PM_USER, PM_PASSWORD)).status_code == 409
    assert n_events(engine) == 1
    assert PM_PASSWORD not in caplog.text
    client.close()
    engine.dispose()
    # an IP allow-list refuses anyone else, credentials or not
    engine, config, campaign, client, receiver = _setup(sqlite_url.replace(".db", "-ip.db"), tmp_path / "ip", certs,
                                                        webhook_postmark_ips=["192.0.2.0/24"])
    r = client.post("/webhooks/postmark", content=pm_bounce("reader0@example.com", 8), headers=basic(PM_USER, PM_PASSWORD))
    assert r.status_code == 403
    untouched(engine)
    client.close()
    engine.dispose()


# --- configuration ------------------------------------------------------------------------------------

def test_unconfigured_providers_are_off_and_webhook_secrets_come_from_the_environment_only(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    with TestClient(create_app(config, engine)) as client:
        for p in ("ses", "sendgrid", "postmark", "mailgun"):
            r = client.post(f"/webhooks/{p}", content=b"{}")
            assert r.status_code == 404 and "not configured" in r.json()["error"]
        assert client.post("/webhooks/other", content=b"{}").status_code == 404
    toml = tmp_path / "n.toml"
    toml.write_text('webhook_mailgun_key = "abc"\n')
    with pytest.raises(ConfigError, match="webhook_mailgun_key is a secret"):
        load_config(toml, environ={})
    c = load_config(None, environ={"NEWSLETTER_WEBHOOK_MAILGUN_KEY": "k1", "NEWSLETTER_WEBHOOK_POSTMARK_PASSWORD": "p1",
                                   "NEWSLETTER_WEBHOOK_SES_TOPICS": "arn:a,arn:b"})
    assert (c.webhook_mailgun_key, c.webhook_postmark_password, c.webhook_ses_topics) == ("k1", "p1", ["arn:a", "arn:b"])
    assert "k1" not in repr(c) and "p1" not in repr(c)
    bad = make_config(sqlite_url, tmp_path, webhook_sendgrid_key="bm90IGEga2V5")
    with TestClient(create_app(bad, engine)) as client:
        r = client.post("/webhooks/sendgrid", content=b"[]", headers=SG.headers(b"[]", 1))
        assert r.status_code == 503 and "webhook_sendgrid_key" in r.text
    engine.dispose()


def test_replay_guard_is_bounded_and_expires():
    g = ReplayGuard(max_entries=3)
    assert all(g.claim(k, 0.0, 10.0) for k in "abcd")
    assert len(g) == 3 and g.claim("a", 1.0, 10.0)  # the oldest went first
    assert not g.claim("d", 1.0, 10.0)
    assert g.claim("d", 11.0, 10.0)  # expired


def test_webhooks_are_rate_limited_per_address_and_need_no_admin_login(sqlite_url, tmp_path, certs):
    from newsletter.web.app import Limits

    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path, secret_key=SECRET, webhook_mailgun_key=MG_KEY, admin_password="admin-pw-123456")
    add_people(engine, "weekly", 4)
    deliver(engine, config, T0)
    receiver = WebhookReceiver(config, clock=lambda: NOW)
    app = create_app(config, engine, webhooks=receiver, limits=Limits(webhook_per_ip=(2, 60.0)))
    with TestClient(app, base_url="https://news.example.org", client=("198.51.100.20", 1000)) as client:
        assert client.get("/api/campaigns").status_code == 401  # the admin API wants a login here...
        assert client.get("/admin/suppressions", follow_redirects=False).status_code in (302, 303, 307)  # to the login
        for i in range(2):  # ...the webhook does not
            body = mailgun_body(MG_KEY, mg_failed(f"reader{i}@example.com", f"mg-r{i}"), ts=int(NOW), token=f"tok{i}" * 10)
            assert client.post("/webhooks/mailgun", content=body).status_code == 200
        body = mailgun_body(MG_KEY, mg_failed("reader2@example.com", "mg-r2"), ts=int(NOW), token="tok2" * 10)
        r = client.post("/webhooks/mailgun", content=body)
        assert r.status_code == 429 and "retry-after" in r.headers
    assert lists(engine, "reader2@example.com") == {"weekly": "active"} and n_events(engine) == 2
    engine.dispose()


def test_live_server_takes_a_signed_sendgrid_batch(sqlite_url, tmp_path, certs):
    import httpx

    from fixtures.web.harness import LiveServer

    engine, config, campaign, client, receiver = _setup(sqlite_url, tmp_path, certs)
    client.close()
    with LiveServer(create_app(config, engine, webhooks=receiver)) as server:
        body = sg_events()
        r = httpx.post(f"{server.url}/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW)), timeout=30)
        assert r.status_code == 200, r.text
        r = httpx.post(f"{server.url}/webhooks/sendgrid", content=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert r.status_code == 401
    assert lists(engine, "reader0@example.com") == {"weekly": "bounced"}
    assert lists(engine, "reader1@example.com") == {"weekly": "complained"}
    engine.dispose()


def test_campaign_page_shows_bounce_and_complaint_rates_and_suppressions_say_why(sqlite_url, tmp_path, certs):
    import re

    engine, config, campaign, client, receiver = _setup(sqlite_url, tmp_path, certs)
    client.close()
    app = create_app(config, engine, webhooks=receiver)
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("127.0.0.1", 40000)) as admin:
        page = admin.get(f"/admin/campaigns/{campaign.id}")
        assert page.status_code == 200 and re.search(r'data-feedback="hard">0<', page.text)
        assert "Nobody is suppressed" in admin.get("/admin/suppressions").text
        body = sg_events()
        assert admin.post("/webhooks/sendgrid", content=body, headers=SG.headers(body, int(NOW))).status_code == 200
        page = admin.get(f"/admin/campaigns/{campaign.id}").text
        # 4 copies sent: one hard bounce (25 %), one complaint (25 %), both past their pause rates
        assert re.search(r'<li class="warn"><b data-feedback="hard">1</b>Hard bounces <span class="muted" data-feedback-rate="hard">25.00 %', page)
        assert re.search(r'<li class="warn"><b data-feedback="complaints">1</b>Complaints <span class="muted" data-feedback-rate="complaints">25.00 %', page)
        assert re.search(r'<li><b data-feedback="soft">0</b>', page)
        assert "Of 4 copies sent" in page
        sup = admin.get("/admin/suppressions").text
        rows = dict(re.findall(r"<tr><td>([^<]+)</td>\s*<td>(.*?)</td>", sup, re.S))
        assert set(rows) == {"reader0@example.com", "reader1@example.com"}
        assert rows["reader0@example.com"].startswith("hard bounce (webhook, campaign") and "5.1.1" in rows["reader0@example.com"]
        assert "complaint" in rows["reader1@example.com"]
        # the person's own page: their lists and their bounce history
        person = admin.get("/admin/subscribers/person", params={"email": "reader0@example.com"})
        assert person.status_code == 200
        history = person.text.split('id="bounce-history"', 1)[1]
        assert re.search(r"<td>hard</td><td>5\.1\.1</td>\s*<td><a href=\"/admin/campaigns/%d\">" % campaign.id, history)
        assert "bounced" in person.text and "sendgrid" in history
        assert "None recorded." in admin.get("/admin/subscribers/person", params={"email": "reader2@example.com"}).text
        assert admin.get("/admin/subscribers/person", params={"email": "nobody@example.com"}).status_code == 404
    engine.dispose()


def test_provider_events_map_to_the_closed_kinds():
    from newsletter.feedback import providers as p

    def ses(btype, status, diag="", sub="General"):
        msg = {"notificationType": "Bounce", "mail": {"source": "x@example.org"},
               "bounce": {"bounceType": btype, "bounceSubType": sub, "feedbackId": "f",
                          "bouncedRecipients": [{"emailAddress": "A@Example.com", "status": status, "diagnosticCode": diag}]}}
        (b,), _ = p.ses_events(msg, b"k" * 32)
        return b.kind.value, b.recipient, b.status
    assert ses("Permanent", "5.1.1", "smtp; 550 5.1.1 user unknown") == ("hard", "a@example.com", "5.1.1")
    assert ses("Permanent", "5.2.2", "smtp; 552 5.2.2 mailbox full")[0] == "soft"
    assert ses("Transient", "4.4.7", "", "MailboxFull")[0] == "soft"
    assert ses("Undetermined", "", "")[0] == "unknown"
    assert p.ses_events({"notificationType": "Send", "mail": {}}, b"k" * 32) == ([], 1)

    events = [{"event": e, "email": "b@example.com", "sg_event_id": f"id{i}", "reason": r, "type": t, "timestamp": 1}
              for i, (e, r, t) in enumerate([("bounce", "550 5.1.1 no such user", "bounce"), ("bounce", "550 5.7.1 blocked", "blocked"),
                                             ("dropped", "Bounced Address", None), ("dropped", "Spam Reporting Address", None),
                                             ("dropped", "Unsubscribed Address", None), ("deferred", "421 try later", None),
                                             ("click", "", None), ("spamreport", "", None)])]
    out, skipped = p.sendgrid_events(events, b"k" * 32)
    assert [b.kind.value for b in out] == ["hard", "soft", "hard", "complaint", "complaint"] and skipped == 3
    assert out[0].report_id == "sendgrid:id0" and out[0].status == "5.1.1"

    def mg(event, severity=None, **kw):
        out, skipped = p.mailgun_events(dict({"event": event, "severity": severity, "id": "e", "recipient": "c@example.com",
                                              "delivery-status": {"code": 550, "message": "5.1.1 no such user"}}, **kw), b"k" * 32)
        return out[0].kind.value if out else None
    assert (mg("failed", "permanent"), mg("failed", "temporary"), mg("complained"), mg("delivered"), mg("opened")) == \
        ("hard", "soft", "complaint", "delivered", None)

    def pm(btype, record="Bounce"):
        (b,), _ = p.postmark_events({"RecordType": record, "ID": 1, "Type": btype, "Email": "d@example.com"}, b"k" * 32)
        return b.kind.value
    assert [pm(t) for t in ("HardBounce", "BadEmailAddress", "SoftBounce", "Transient", "AutoResponder", "Unsubscribe")] == \
        ["hard", "hard", "soft", "soft", "auto-reply", "unknown"]
    assert pm("SpamComplaint", "SpamComplaint") == "complaint"
    assert p.postmark_events({"RecordType": "Open", "MessageID": "m"}, b"k" * 32) == ([], 1)
    # an event without an id is keyed by its content (record_bounces' digest), never by a shared empty id
    (b,), _ = p.mailgun_events({"event": "complained", "recipient": "e@example.com"}, b"k" * 32)
    assert b.report_id is None
