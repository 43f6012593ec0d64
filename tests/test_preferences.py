"""The preference centre: signed per-reader links (forgery, rotation, erasure), the rules and their
log on SQLite and PostgreSQL, the page through the real web app (CSRF, each change, a double
opt-in join mailed to a real SMTP server), the footer's merge tag and the ledger skipping a
paused reader — all with the real store, no mocks."""

from __future__ import annotations

import email
import re
from datetime import datetime, timedelta, timezone
from email import policy
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from dispatch_helpers import FakeDigest, add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import InvalidInput, InvalidToken, StateError
from newsletter.store import leaving, preferences as prefs, subscribers as subs, tokens
from newsletter.store.campaign_models import Delivery
from newsletter.store.lists import create_list, get_list
from newsletter.store.preference_models import PreferenceChange
from newsletter.store.secret import secret_key
from newsletter.store.suppressions import suppress
from newsletter.web import create_app

UTC = timezone.utc
ROOT = Path(__file__).resolve().parents[1]


def _digest() -> FakeDigest:
    d = FakeDigest()
    d.html = d.html.replace("</body></html>", '<p><a href="*|PREFERENCES_URL|*">Manage your subscription</a></p></body></html>')
    d.text += "Manage your subscription: *|PREFERENCES_URL|*\n"
    return d


def _copies(outbox: Path) -> dict[str, email.message.EmailMessage]:
    out = {}
    for p in sorted(outbox.glob("*.eml")):
        msg = email.message_from_bytes(p.read_bytes(), policy=policy.default)
        out[str(msg["To"]).split("<")[-1].rstrip(">")] = msg
    return out


def _token_of(url: str) -> str:
    return url.rsplit("/preferences/", 1)[1]


@pytest.fixture
def world(db_url, tmp_path):
    """A migrated database with a reader on 'weekly' (single opt-in) and a 'deep' double-opt-in list."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    add_people(engine, "weekly", 2)
    create_list(engine, "deep", "Deep dives", opt_in="double")
    create_list(engine, "events", "Events", opt_in="single")
    url = prefs.link_for(engine, config, "reader0@example.com")
    yield engine, config, _token_of(url)
    engine.dispose()


# --- tokens --------------------------------------------------------------------------------------

def test_a_preferences_token_is_signed_and_any_change_is_refused():
    secret = b"k" * 32
    t = tokens.preferences_token(secret, 42, 3)
    assert tokens.verify_preferences_token(secret, t) == (42, 3)
    raw = t.encode()
    for i in range(len(raw)):
        bad = bytearray(raw)
        bad[i] = ord("A") if raw[i] != ord("A") else ord("B")
        with pytest.raises(InvalidToken):
            tokens.verify_preferences_token(secret, bad.decode())
    with pytest.raises(InvalidToken):
        tokens.verify_preferences_token(b"other-secret-0123456789", t)
    # another kind's token with the same fields is not a preferences token
    with pytest.raises(InvalidToken):
        tokens.verify_preferences_token(secret, tokens.unsubscribe_token(secret, 42, 3))


def test_rotating_revokes_older_links(world):
    engine, config, token = world
    secret = secret_key(config)
    assert prefs.show(engine, secret, token).email == "reader0@example.com"
    new = _token_of(prefs.link_for(engine, config, "READER0@example.com", rotate=True))
    assert new != token
    with pytest.raises(InvalidToken, match="revoked"):
        prefs.show(engine, secret, token)
    assert prefs.show(engine, secret, new).email == "reader0@example.com"
    # the campaign's token maker gives the current version
    sid = subs.get_subscriber(engine, "reader0@example.com").id
    assert prefs.token_maker(engine, secret)(sid) == new


# --- the rules and their log ---------------------------------------------------------------------

def test_each_change_is_applied_and_logged(world):
    engine, config, token = world
    secret = secret_key(config)
    now = datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert prefs.set_name(engine, secret, token, "  Ana   Lima ", ip_class="ipv4", now=now)
    assert prefs.set_timezone(engine, secret, token, "America/Sao_Paulo", now=now)
    with pytest.raises(InvalidInput, match="not a time zone"):
        prefs.set_timezone(engine, secret, token, "Mars/Olympus")
    assert prefs.set_tracking(engine, secret, token, False, now=now)
    assert not prefs.set_tracking(engine, secret, token, False, now=now)  # no change, no log
    until = prefs.pause(engine, secret, token, 1, now=now)
    assert until == datetime(2026, 2, 28, 12, tzinfo=UTC)  # a calendar month, the day clamped
    with pytest.raises(InvalidInput):
        prefs.pause(engine, secret, token, 6, now=now)
    p = prefs.show(engine, secret, token, now=now)
    assert (p.name, p.timezone, p.no_tracking, p.pause_until) == ("Ana Lima", "America/Sao_Paulo", True, until)
    assert prefs.show(engine, secret, token, now=until + timedelta(seconds=1)).pause_until is None  # over by itself
    assert prefs.pause(engine, secret, token, 0, now=now) is None  # ended early
    row = subs.get_subscriber(engine, "reader0@example.com")
    assert row.attributes["no_tracking"] is True and row.attributes["city"] == "Lyon"
    log = prefs.history(engine, row.id)
    assert [(c["what"], c["old"], c["new"]) for c in log] == [
        ("name", "Reader 0", "Ana Lima"), ("timezone", "", "America/Sao_Paulo"), ("tracking", "on", "off"),
        ("pause", "", until.isoformat()), ("pause", until.isoformat(), "")]
    assert log[0]["source"] == "preferences" and log[0]["ip_class"] == "ipv4"


def test_joining_follows_the_consent_rule_and_leaving_goes_through_leave_lists(world):
    engine, config, token = world
    secret = secret_key(config)
    deep, events, weekly = (get_list(engine, s).id for s in ("deep", "events", "weekly"))
    j = prefs.join(engine, secret, token, events)
    assert (j.status, j.invitation) == ("active", None)
    j = prefs.join(engine, secret, token, deep)  # double opt-in: unconfirmed, and a confirmation to send
    assert j.status == "unconfirmed" and j.invitation is not None and j.invitation.list_id == deep
    assert prefs.leave(engine, secret, token, [weekly]) == ["Weekly"]
    assert subs.get_subscriber(engine, "reader0@example.com").lists == {
        "deep": "unconfirmed", "events": "active", "weekly": "unsubscribed"}
    j = prefs.join(engine, secret, token, weekly)  # their own link is fresh consent: back on
    assert j.status == "active"
    assert sorted(prefs.leave_everything(engine, secret, token)) == ["Deep dives", "Events", "Weekly"]
    assert set(subs.get_subscriber(engine, "reader0@example.com").lists.values()) == {"unsubscribed"}
    suppress(engine, "reader0@example.com")
    with pytest.raises(StateError, match="mail to this address has been stopped"):
        prefs.join(engine, secret, token, weekly)
    whats = [c["what"] for c in prefs.history(engine, subs.get_subscriber(engine, "reader0@example.com").id)]
    assert whats[:4] == ["join:events", "join:deep", "leave:weekly", "join:weekly"] and whats[-1] == "leave-everything"


def test_erasure_removes_the_log_and_invalidates_the_link(world):
    engine, config, token = world
    secret = secret_key(config)
    prefs.set_name(engine, secret, token, "Gone Soon")
    sid = subs.get_subscriber(engine, "reader0@example.com").id
    leaving.erase_subscriber(engine, "reader0@example.com")
    with engine.connect() as conn:
        left = conn.execute(select(func.count()).select_from(PreferenceChange.__table__)
                            .where(PreferenceChange.__table__.c.subscriber_id == sid)).scalar_one()
    assert left == 0
    with pytest.raises(InvalidToken):
        prefs.show(engine, secret, token)


# --- the ledger and the footer -------------------------------------------------------------------

def test_a_paused_reader_is_skipped_by_the_ledger_and_every_copy_links_its_own_page(world):
    engine, config, token = world
    secret = secret_key(config)
    prefs.pause(engine, secret, token, 2)
    c = make_campaign(engine, config, digest=_digest())
    send_campaign(engine, c.id, config)
    copies = _copies(Path(config.outbox))
    assert list(copies) == ["reader1@example.com"]
    with engine.connect() as conn:
        rows = conn.execute(select(Delivery.__table__.c.email).where(Delivery.__table__.c.campaign_id == c.id)).scalars().all()
    assert rows == ["reader1@example.com"]
    msg = copies["reader1@example.com"]
    html, text = msg.get_body(("html",)).get_content(), msg.get_body(("plain",)).get_content()
    link = re.search(r'href="([^"]+/preferences/[^"]+)"', html).group(1)
    assert link in text and link.startswith(config.base_url + "/preferences/")
    sid = subs.get_subscriber(engine, "reader1@example.com").id
    assert tokens.verify_preferences_token(secret, _token_of(link)) == (sid, 0)
    # the pause over: the next campaign mails them again
    prefs.pause(engine, secret, token, 0)
    c2 = make_campaign(engine, config, digest=_digest())
    send_campaign(engine, c2.id, config)
    with engine.connect() as conn:
        again = conn.execute(select(Delivery.__table__.c.email).where(Delivery.__table__.c.campaign_id == c2.id)).scalars().all()
    assert sorted(again) == ["reader0@example.com", "reader1@example.com"]


def test_the_footer_templates_link_to_the_preferences_page():
    from newsletter.articles.model import Article
    from newsletter.compose.model import ComposeOptions
    from newsletter.compose.render import render
    from newsletter.config import Config

    # the templates' words are translated (newsletter/i18n.py): check what they render to
    digest = render([Article(title="A story", url="https://example.org/a")], Config(), ComposeOptions())
    assert re.search(r'<a href="\*\|PREFERENCES_URL\|\*"[^>]*>Manage your subscription</a>', digest.html)
    assert "Manage your subscription: *|PREFERENCES_URL|*" in digest.text


def test_previews_fill_the_preferences_tag():
    from newsletter.web.preview import fill_merge_tags, sample

    assert sample('<a href="*|PREFERENCES_URL|*">', html=True) == '<a href="#preferences">'
    # the anonymous archive copy: no personal link, the page itself
    assert fill_merge_tags("*|PREFERENCES_URL|*", html=False, unsubscribe_url="https://x/archive/1") == "https://x/archive/1"


# --- the page ------------------------------------------------------------------------------------

BASE = "http://127.0.0.1:8000"


def _csrf(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


@pytest.fixture
def site(world):
    engine, config, token = world
    config = config.replace(base_url=BASE)
    with TestClient(create_app(config, engine), base_url=BASE, client=("203.0.113.9", 40000)) as c:
        yield c, engine, config, token


def test_a_bad_or_revoked_link_is_404(site):
    c, engine, config, token = site
    assert c.get("/preferences/nonsense").status_code == 404
    assert c.get("/preferences/" + token[:-2] + ("AA" if not token.endswith("AA") else "BB")).status_code == 404
    prefs.link_for(engine, config, "reader0@example.com", rotate=True)
    r = c.get(f"/preferences/{token}")
    assert r.status_code == 404 and "not valid" in r.text and "Traceback" not in r.text


def test_a_post_without_the_csrf_token_or_from_another_site_is_refused(site):
    c, engine, config, token = site
    assert c.post(f"/preferences/{token}", data={"action": "leave_all"}).status_code == 403
    r = c.post(f"/preferences/{token}", data={"action": "leave_all", "csrf_token": "forged"},
               headers={"Origin": "https://evil.example"})
    assert r.status_code == 403
    assert subs.get_subscriber(engine, "reader0@example.com").lists == {"weekly": "active"}


def test_each_change_on_the_page_is_applied_and_logged(site):
    c, engine, config, token = site
    page = c.get(f"/preferences/{token}")
    assert page.status_code == 200 and "reader0@example.com" in page.text and "Deep dives" in page.text
    csrf = _csrf(page.text)
    weekly, events = get_list(engine, "weekly").id, get_list(engine, "events").id

    def post(**data):
        r = c.post(f"/preferences/{token}", data={"csrf_token": csrf, **data})
        assert r.status_code == 200, r.text[:500]
        return r.text

    assert "Your name is saved" in post(action="name", name="Ana")
    assert "paused until" in post(action="pause", months="3")
    assert "no longer paused" in post(action="resume")
    assert "Europe/Paris" in post(action="timezone", timezone="Europe/Paris")
    assert "no longer tracked" in post(action="tracking", no_tracking="1")
    assert "subscribed to Events" in post(action="join", list=str(events))
    assert "You left Weekly" in post(action="leave", list=str(weekly))
    bad = c.post(f"/preferences/{token}", data={"csrf_token": csrf, "action": "timezone", "timezone": "Nowhere/Land"})
    assert bad.status_code == 400 and "not a time zone" in bad.text
    assert "You left every list" in post(action="leave_all")
    row = subs.get_subscriber(engine, "reader0@example.com")
    assert (row.name, row.attributes.get("no_tracking")) == ("Ana", True)
    assert row.lists == {"events": "unsubscribed", "weekly": "unsubscribed"}
    log = prefs.history(engine, row.id)
    assert [c["what"] for c in log] == ["name", "pause", "pause", "timezone", "tracking", "join:events", "leave:weekly",
                                        "leave:events", "leave-everything"]
    assert {c["ip_class"] for c in log} == {"private"}  # a class (203.0.113.0/24 is documentation space), never the address
    assert "203.0.113.9" not in str([dict(c) for c in log])


def test_joining_a_double_opt_in_list_mails_a_confirmation_instead_of_activating(world):
    from smtp_server import SMTPTestServer

    from newsletter.config import SMTPServer

    engine, config, token = world
    deep = get_list(engine, "deep").id
    with SMTPTestServer() as srv:
        cfg = config.replace(base_url=BASE, outbox=None, smtp={"t": SMTPServer(name="t", url=srv.url)})
        with TestClient(create_app(cfg, engine), base_url=BASE) as c:
            csrf = _csrf(c.get(f"/preferences/{token}").text)
            r = c.post(f"/preferences/{token}", data={"csrf_token": csrf, "action": "join", "list": str(deep)})
            assert r.status_code == 200 and "sent you an email to confirm Deep dives" in r.text
            assert c.app.state.web.mailer.wait_idle(15)
        assert srv.wait_for(1, timeout=10)
        (m,) = srv.received()
        assert m.rcpt_tos == ["reader0@example.com"]
        assert "/confirm/" in m.message().get_body(("plain",)).get_content()
    assert subs.get_subscriber(engine, "reader0@example.com").lists["deep"] == "unconfirmed"


def test_the_cli_prints_the_link_and_rotates(world, monkeypatch, capsys):
    from cli_runner import run_main

    engine, config, token = world
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", config.secret_key)
    monkeypatch.setenv("NEWSLETTER_BASE_URL", config.base_url)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    db = ["--db", config.database_url]
    r = run_main(monkeypatch, capsys, [*db, "subscribers", "preferences-link", "reader0@example.com"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{config.base_url}/preferences/{token}"
    r = run_main(monkeypatch, capsys, [*db, "subscribers", "preferences-link", "reader0@example.com", "--rotate"])
    assert r.returncode == 0 and _token_of(r.stdout.strip()) != token
    with pytest.raises(InvalidToken):
        prefs.show(engine, secret_key(config), token)
    r = run_main(monkeypatch, capsys, [*db, "subscribers", "preferences-link", "nobody@example.com"])
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_the_page_is_rate_limited_like_the_other_token_pages(world):
    from newsletter.web.app import Limits

    engine, config, token = world
    app = create_app(config.replace(base_url=BASE), engine, limits=Limits(token_per_ip=(2, 60)))
    with TestClient(app, base_url=BASE) as c:
        assert [c.get(f"/preferences/{token}").status_code for _ in range(3)] == [200, 200, 429]
        assert c.post(f"/preferences/{token}", data={"action": "leave_all"}).status_code == 429
    assert subs.get_subscriber(engine, "reader0@example.com").lists == {"weekly": "active"}
