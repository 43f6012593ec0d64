"""Erasing a reader takes everything issue 17 gave them: their preference log and settings (pause,
time zone, tracking, name), their welcome series' ledger rows, and every signed link they hold —
preference centre, web version, unsubscribe and confirmation — which then open nothing, even after
someone new signs up (ids are never reused). Real SQLite and PostgreSQL, a real SMTP server
(aiosmtpd), the real worker pass and web app; no mocks."""

from __future__ import annotations

import email
import re
from datetime import datetime, timedelta, timezone
from email import policy

from fastapi.testclient import TestClient
from sqlalchemy import func, inspect, select, text

from dispatch_helpers import make_campaign, make_config, setup_db
from newsletter.dispatch.sender import send_campaign
from newsletter.dispatch.welcome import send_due_welcomes
from newsletter.store import leaving, preferences as prefs, signup, subscribers as subs, welcome as store_welcome
from newsletter.store.lists import create_list, get_list
from newsletter.store.preference_models import PreferenceChange
from newsletter.store.secret import secret_key
from newsletter.store.tokens import unsubscribe_token
from newsletter.store.welcome_models import WelcomeSend
from newsletter.web import create_app
from smtp_server import SMTPTestServer

UTC = timezone.utc
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
STEP = """<mjml><mj-head><mj-title>Step {{ step }} of {{ list_name }}</mj-title></mj-head>
<mj-body><mj-section><mj-column><mj-text>Hello *|NAME:friend|*. <a href="{{ unsubscribe_url }}">Leave</a></mj-text>
</mj-column></mj-section>{% include "footer.mjml" %}</mj-body></mjml>
"""


def _count(engine, table, **where) -> int:
    with engine.connect() as conn:
        q = select(func.count()).select_from(table)
        for column, value in where.items():
            q = q.where(table.c[column] == value)
        return conn.execute(q).scalar_one()


def test_erasure_takes_preferences_welcome_state_and_every_link(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    secret = secret_key(config)
    weekly = create_list(engine, "weekly", "The Weekly")
    create_list(engine, "deep", "Deep dives", opt_in="double")
    series = tmp_path / "series"
    series.mkdir()
    for step in (0, 3, 7):
        (series / f"step-{step}.mjml").write_text(STEP, encoding="utf-8")
    store_welcome.set_welcome(engine, "weekly", template=str(series), steps=[0, 3, 7], now=T0 - timedelta(days=1))

    signup.request_signup(engine, "weekly", "ana@example.com", "Ana", now=T0)  # single opt-in: active, welcomed
    plan = signup.request_signup(engine, "deep", "ana@example.com", "Ana", now=T0)  # double opt-in: a link to join
    sid = subs.get_subscriber(engine, "ana@example.com").id
    with SMTPTestServer() as srv:
        send_due_welcomes(engine, config, now=T0 + timedelta(hours=1), smtp=srv.url)
        campaign = make_campaign(engine, config)
        send_campaign(engine, campaign.id, config, smtp=srv.url)
        copies = [email.message_from_bytes(m.data, policy=policy.default) for m in srv.received()
                  if m.rcpt_tos == ["ana@example.com"]]
        assert len(copies) == 2, "the day-0 welcome and the campaign"
        html = copies[-1].get_body(("html",)).get_content()
        view = re.search(r"https://news\.example\.org(/view/[A-Za-z0-9_-]+)", html).group(1)
        pref_path = prefs.link_for(engine, config, "ana@example.com").removeprefix(config.base_url)
        token = pref_path.rsplit("/", 1)[1]
        prefs.set_name(engine, secret, token, "Ana Maria")
        prefs.set_timezone(engine, secret, token, "Europe/Lisbon")
        prefs.set_tracking(engine, secret, token, False)
        prefs.pause(engine, secret, token, 2, now=T0 + timedelta(days=1))
        links = {
            "preferences": pref_path,
            "view": view,
            "unsubscribe": f"/unsubscribe/{unsubscribe_token(secret, sid, weekly.id)}",
            "confirm": signup.signup_url(config, plan, secret=secret).removeprefix(config.base_url),
        }
        with TestClient(create_app(config, engine), base_url="https://news.example.org") as client:
            for what, path in links.items():
                r = client.get(path)
                assert r.status_code == 200, (what, r.status_code)
            assert _count(engine, PreferenceChange.__table__, subscriber_id=sid) >= 4  # name, zone, tracking, pause
            assert _count(engine, WelcomeSend.__table__, subscriber_id=sid) == 1

            leaving.erase_subscriber(engine, "ana@example.com")

            assert _count(engine, PreferenceChange.__table__, subscriber_id=sid) == 0
            assert _count(engine, WelcomeSend.__table__, subscriber_id=sid) == 0
            # no table keeps a row naming them: the subscriber row (pause, zone, tracking, name) is gone too
            with engine.connect() as conn:
                for table in inspect(conn).get_table_names():
                    columns = {c["name"] for c in inspect(conn).get_columns(table)}
                    column = "id" if table == "subscribers" else "subscriber_id" if "subscriber_id" in columns else None
                    if column is None or table == "deliveries":  # the ledger's rows are the sending history
                        continue
                    n = conn.execute(text(f'SELECT count(*) FROM "{table}" WHERE {column} = :sid'), {"sid": sid}).scalar_one()
                    assert n == 0, f"{table} still holds {n} row(s) of the erased reader"
            # someone new joins: a fresh id, and none of the old links opens anything of theirs
            signup.request_signup(engine, "weekly", "bea@example.com", "Bea", now=T0 + timedelta(days=2))
            assert subs.get_subscriber(engine, "bea@example.com").id != sid
            for what, path in links.items():
                r = client.get(path)
                assert r.status_code in (400, 404), (what, r.status_code)
                assert "ana@example.com" not in r.text and "Ana" not in r.text and "bea@example.com" not in r.text, what
            r = client.post(links["unsubscribe"], data={"List-Unsubscribe": "One-Click"})
            assert r.status_code in (400, 404)
            assert get_list(engine, "weekly").id == weekly.id and subs.get_subscriber(engine, "bea@example.com").lists == {"weekly": "active"}
        # the worker's later pass has no series left to send her; Bea, who joined after, gets hers
        to_ana = sum(m.rcpt_tos == ["ana@example.com"] for m in srv.received())
        send_due_welcomes(engine, config, now=T0 + timedelta(days=10), smtp=srv.url)
        assert sum(m.rcpt_tos == ["ana@example.com"] for m in srv.received()) == to_ana
        assert any(m.rcpt_tos == ["bea@example.com"] for m in srv.received())
    engine.dispose()
