"""Outgoing event webhooks against a real HTTP server on 127.0.0.1: every event kind arrives once,
signed; a failing receiver is retried with backoff (injected clock) and finally given up; the
worker's thread never holds a send back."""

from __future__ import annotations

import json
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import update

from dispatch_helpers import add_people, make_config, setup_db
from newsletter.config import load_config
from newsletter.engagement.outbound import backoff, collect, deliver, pending, verify_signature
from newsletter.errors import ConfigError, InvalidInput
from newsletter.store.bounce_models import BounceEvent
from newsletter.store.models import Subscription

UTC = timezone.utc
HOOK_SECRET = "hook-secret-0123456789"


class Receiver:
    """An HTTP server on 127.0.0.1 recording POSTs; ``fail`` answers 500 that many times first."""

    def __init__(self, fail: int = 0):
        self.posts: list[tuple[dict, bytes]] = []
        self.fail = fail
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if outer.fail > 0:
                    outer.fail -= 1
                    self.send_response(500)
                else:
                    outer.posts.append((dict(self.headers), body))
                    self.send_response(204)
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    def events(self) -> list[dict]:
        return [json.loads(b) for _, b in self.posts]


def _config(db_url, tmp_path, url, **kw):
    return make_config(db_url, tmp_path, event_webhooks=[url], event_webhook_secret=HOOK_SECRET, **kw)


def test_every_event_kind_arrives_once_and_signed(db_url, tmp_path):
    engine = setup_db(db_url)
    with Receiver() as rx:
        config = _config(db_url, tmp_path, rx.url)
        assert collect(engine, config) == 0  # the first run sets the cursors: no flood of history
        emails = add_people(engine, "weekly", 2)
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(update(Subscription.__table__).where(Subscription.__table__.c.subscriber_id == 2).values(
                status="unsubscribed", unsubscribed_at=now, updated_at=now))
            conn.execute(BounceEvent.__table__.insert().values(
                subscriber_id=1, recipient=emails[0], kind="hard", status="5.1.1", reason="no such user", source="dsn",
                report_id="r1", outcome="bounced", occurred_at=now, recorded_at=now))
        assert collect(engine, config) == 4  # 2 subscribed, 1 unsubscribed, 1 bounced
        assert collect(engine, config) == 0  # read again (overlap): nothing queued twice
        r = deliver(engine, config)
        assert (r.delivered, r.retrying) == (4, 0)
        got = sorted((e["event"], e["data"]["email"]) for e in rx.events())
        assert got == [("bounced", emails[0]), ("subscribed", emails[0]), ("subscribed", emails[1]),
                       ("unsubscribed", emails[1])]
        headers, body = rx.posts[0]
        verify_signature(HOOK_SECRET, headers["Newsletter-Signature"], body)
        with pytest.raises(InvalidInput, match="does not match"):
            verify_signature(HOOK_SECRET, headers["Newsletter-Signature"], body + b" ")
        with pytest.raises(InvalidInput, match="too old"):
            verify_signature(HOOK_SECRET, headers["Newsletter-Signature"], body, now=datetime.now(UTC).timestamp() + 3600)
        assert headers["Newsletter-Event"] in ("subscribed", "unsubscribed", "bounced")
        assert deliver(engine, config).delivered == 0 and pending(engine) == {"pending": 0, "delivered": 4, "failed": 0}


def test_a_failing_receiver_is_retried_with_backoff_then_given_up(db_url, tmp_path):
    engine = setup_db(db_url)
    with Receiver(fail=2) as rx:
        config = _config(db_url, tmp_path, rx.url, event_webhook_max_attempts=3)
        collect(engine, config)
        add_people(engine, "weekly", 1)
        collect(engine, config)
        t0 = datetime.now(UTC)
        assert deliver(engine, config, now=t0).retrying == 1
        assert deliver(engine, config, now=t0 + backoff(1) - timedelta(seconds=1)).retrying == 0  # not due yet
        assert deliver(engine, config, now=t0 + backoff(1)).retrying == 1  # second failure
        r = deliver(engine, config, now=t0 + backoff(1) + backoff(2))
        assert r.delivered == 1 and len(rx.events()) == 1
    with Receiver(fail=99) as rx:
        config = _config(db_url, tmp_path, rx.url, event_webhook_max_attempts=2)
        add_people(engine, "weekly", 1, start=10)
        collect(engine, config)
        t = datetime.now(UTC) + timedelta(days=1)
        deliver(engine, config, now=t)
        assert deliver(engine, config, now=t + timedelta(days=1)).given_up == 1
        assert pending(engine)["failed"] == 1


def test_webhook_settings_are_checked_in_one_line(tmp_path):
    for toml, env, problem in (
            ('event_webhooks = ["ftp://x"]', {"NEWSLETTER_EVENT_WEBHOOK_SECRET": "s"}, "is not an http(s) URL"),
            ('event_webhooks = ["https://ops.example/h"]', {}, "NEWSLETTER_EVENT_WEBHOOK_SECRET is not"),
            ('event_webhooks = ["https://ops.example/h"]\nevent_webhook_events = ["sent"]',
             {"NEWSLETTER_EVENT_WEBHOOK_SECRET": "s"}, "unknown event 'sent'"),
            ('event_webhook_secret = "x"', {}, "is a secret")):
        f = tmp_path / "n.toml"
        f.write_text(toml)
        with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
            load_config(f, environ=env)


def test_confirmations_opens_and_clicks_arrive_and_the_worker_delivers_them(db_url, tmp_path):
    import re
    from pathlib import Path

    from fastapi.testclient import TestClient

    from dispatch_helpers import make_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.schedule.worker import run_worker
    from newsletter.web import create_app
    from test_engagement import BASE, CHROME, _copies, _digest

    engine = setup_db(db_url)
    with Receiver() as rx:
        config = _config(db_url, tmp_path, rx.url, base_url=BASE, allow_local_links=True, scanner_seconds=0)
        collect(engine, config)
        emails = add_people(engine, "weekly", 1, status="unconfirmed")
        now = datetime.now(UTC)
        with engine.begin() as conn:
            conn.execute(update(Subscription.__table__).values(status="active", confirmed_at=now, updated_at=now))
        c = make_campaign(engine, config, digest=_digest(), track="opens,clicks")
        send_campaign(engine, c.id, config)
        html = _copies(Path(config.outbox))[emails[0]]
        with TestClient(create_app(config, engine), base_url=BASE) as client:
            client.get(re.search(rf'src="{re.escape(BASE)}(/o/[\w-]+\.gif)"', html).group(1), headers={"user-agent": CHROME})
            client.get(re.findall(rf'href="{re.escape(BASE)}(/r/[\w-]+)"', html)[1], headers={"user-agent": CHROME},
                       follow_redirects=False)
            client.app.state.hits.flush()
        run_worker(engine, config, once=True)
        got = {e["event"]: e["data"] for e in rx.events()}
    assert set(got) == {"subscribed", "confirmed", "opened", "clicked"}
    assert got["clicked"]["url"] == "https://example.org/story" and got["clicked"]["agent"] == "human"
    assert got["opened"]["campaign_id"] == c.id and got["confirmed"]["email"] == emails[0]
