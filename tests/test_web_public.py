"""Public pages: subscribe, confirm, unsubscribe (RFC 8058 one-click), and what bad input gets:
the right status, a short page with no stack trace, and nothing changed in the database."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from newsletter.config import Config
from newsletter.errors import NotFound
from newsletter.store import lists as store_lists
from newsletter.store import subscribers as subs
from newsletter.store import leaving
from newsletter.store import optin
from newsletter.store import tokens
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app
from newsletter.web.app import Limits

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def config(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(database_url=url, secret_key=SECRET, base_url="http://127.0.0.1:8000", outbox=str(tmp_path / "outbox"))


@pytest.fixture
def engine(config):
    engine = get_engine(config.database_url)
    store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    store_lists.create_list(engine, "news", "Product news", opt_in="single")
    yield engine
    engine.dispose()


@pytest.fixture
def app(config, engine):
    return create_app(config, engine, limits=Limits(subscribe_per_ip=(8, 60), subscribe_per_address=(2, 60)))


@pytest.fixture
def client(app):
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("198.51.100.7", 40000)) as c:
        yield c


def csrf(client, url):
    r = client.get(url)
    assert r.status_code == 200, r.text
    m = re.search(r'name="csrf_token" value="([^"]+)"', r.text)
    assert m, "the form carries a CSRF token"
    return m.group(1)


def idle(client):
    """Wait until the app's background queue has done the signups posted so far (event-based)."""
    assert client.app.state.web.mailer.wait_idle(15), "the signup queue did not empty"


def lists_of(engine, email):
    try:
        return subs.get_subscriber(engine, email).lists
    except NotFound:
        return None


def assert_clean_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    assert "Traceback" not in r.text and 'File "' not in r.text
    assert "<h1>" in r.text or r.headers["content-type"].startswith("application/json")


# --- subscribe -------------------------------------------------------------------------------


def test_subscribe_form_is_labelled_and_subscribes(client, engine):
    r = client.get("/subscribe/weekly")
    assert '<label for="email">' in r.text and 'id="email"' in r.text and 'name="viewport"' in r.text
    token = csrf(client, "/subscribe/weekly")
    r = client.post("/subscribe/weekly", data={"email": "Ana@Example.com", "name": "Ana", "csrf_token": token})
    assert r.status_code == 200
    idle(client)
    assert lists_of(engine, "ana@example.com") == {"weekly": "active"}


def test_same_answer_whether_the_address_is_known_or_not(client, engine):
    subs.add_subscriber(engine, "known@example.com", list_slug="weekly")
    leaving.unsubscribe(engine, "known@example.com", "weekly")
    token = csrf(client, "/subscribe/weekly")
    known = client.post("/subscribe/weekly", data={"email": "known@example.com", "csrf_token": token})
    new = client.post("/subscribe/weekly", data={"email": "new@example.com", "csrf_token": token})
    assert known.status_code == new.status_code == 200
    assert known.text.replace("known@example.com", "X") == new.text.replace("new@example.com", "X")
    idle(client)
    # Someone who left a single opt-in list is not put back by a form anyone can fill in.
    assert lists_of(engine, "known@example.com") == {"weekly": "unsubscribed"}


def test_malformed_email_is_a_400_form_and_stores_nothing(client, engine):
    token = csrf(client, "/subscribe/weekly")
    r = client.post("/subscribe/weekly", data={"email": "not-an-address", "csrf_token": token})
    assert_clean_error(r, 400)
    assert 'aria-invalid="true"' in r.text and "not-an-address" in r.text
    assert subs.list_subscribers(engine).total == 0


def test_missing_or_wrong_csrf_is_403(client, engine):
    csrf(client, "/subscribe/weekly")
    assert_clean_error(client.post("/subscribe/weekly", data={"email": "a@example.com"}), 403)
    assert_clean_error(client.post("/subscribe/weekly", data={"email": "a@example.com", "csrf_token": "forged"}), 403)
    with TestClient(client.app, base_url="http://127.0.0.1:8000") as fresh:  # no session cookie at all
        assert_clean_error(fresh.post("/subscribe/weekly", data={"email": "a@example.com", "csrf_token": "x"}), 403)
    assert subs.list_subscribers(engine).total == 0


def test_unknown_or_malformed_list_is_404(client):
    assert_clean_error(client.get("/subscribe/nope"), 404)
    assert_clean_error(client.get("/subscribe/NOT..A..SLUG"), 404)
    token = csrf(client, "/subscribe/weekly")
    assert_clean_error(client.post("/subscribe/nope", data={"email": "a@example.com", "csrf_token": token}), 404)


def test_oversize_body_is_413(client, engine):
    token = csrf(client, "/subscribe/weekly")
    r = client.post("/subscribe/weekly", data={"email": "a@example.com", "csrf_token": token, "name": "x" * 400_000})
    assert_clean_error(r, 413)
    assert subs.list_subscribers(engine).total == 0


def test_rate_limited_per_address_and_per_ip(client, engine):
    token = csrf(client, "/subscribe/weekly")
    for _ in range(2):
        assert client.post("/subscribe/weekly", data={"email": "a@example.com", "csrf_token": token}).status_code == 200
    r = client.post("/subscribe/weekly", data={"email": "A@example.com", "csrf_token": token})
    assert_clean_error(r, 429)
    assert int(r.headers["retry-after"]) > 0
    codes = [client.post("/subscribe/weekly", data={"email": f"p{i}@example.com", "csrf_token": token}).status_code for i in range(8)]
    assert codes[-1] == 429 and 200 in codes
    idle(client)
    assert lists_of(engine, "p7@example.com") is None


def test_honeypot_answers_normally_and_stores_nothing(client, engine):
    token = csrf(client, "/subscribe/weekly")
    r = client.post("/subscribe/weekly", data={"email": "bot@example.com", "website": "http://spam.example", "csrf_token": token})
    assert r.status_code == 200
    idle(client)
    assert lists_of(engine, "bot@example.com") is None


# --- confirm ---------------------------------------------------------------------------------


@pytest.fixture
def pending(engine):
    store_lists.create_list(engine, "double", "Double opt-in", opt_in="double")
    r = subs.add_subscriber(engine, "pending@example.com", list_slug="double")
    return r


def test_confirm_get_changes_nothing_post_confirms(client, engine, pending, config):
    token = tokens.confirm_token(SECRET.encode(), pending.subscriber_id, pending.list_id)
    r = client.get(f"/confirm/{token}")
    assert r.status_code == 200 and "Confirm subscription" in r.text
    assert lists_of(engine, "pending@example.com") == {"double": "unconfirmed"}
    r = client.post(f"/confirm/{token}")
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert lists_of(engine, "pending@example.com") == {"double": "active"}


@pytest.mark.parametrize("kind", ["forged", "truncated", "expired", "unsubscribe-token", "garbage"])
def test_bad_confirm_tokens_are_400_and_change_nothing(client, engine, pending, kind):
    key = SECRET.encode()
    good = tokens.confirm_token(key, pending.subscriber_id, pending.list_id)
    token = {
        "forged": tokens.confirm_token(b"another-secret-key-000000", pending.subscriber_id, pending.list_id),
        "truncated": good[:-6],
        "expired": tokens.confirm_token(key, pending.subscriber_id, pending.list_id, now=datetime.now(timezone.utc) - timedelta(days=30)),
        "unsubscribe-token": tokens.unsubscribe_token(key, pending.subscriber_id, pending.list_id),
        "garbage": "%00%ff..",
    }[kind]
    assert_clean_error(client.get(f"/confirm/{token}"), 400 if kind != "garbage" else client.get(f"/confirm/{token}").status_code)
    r = client.post(f"/confirm/{token}")
    assert r.status_code in (400, 404)
    assert_clean_error(r, r.status_code)
    assert lists_of(engine, "pending@example.com") == {"double": "unconfirmed"}


def test_confirm_token_for_a_deleted_subscription_is_404(client, engine, pending):
    token = tokens.confirm_token(SECRET.encode(), pending.subscriber_id, pending.list_id)
    leaving.erase_subscriber(engine, "pending@example.com")
    assert_clean_error(client.get(f"/confirm/{token}"), 404)


# --- unsubscribe -----------------------------------------------------------------------------


def test_one_click_unsubscribe_rfc8058(client, engine, config):
    r = subs.add_subscriber(engine, "leaver@example.com", list_slug="weekly")
    url = leaving.unsubscribe_url(config, r.subscriber_id, r.list_id)
    path = url.removeprefix(config.base_url)
    with TestClient(client.app, base_url="http://127.0.0.1:8000", follow_redirects=False) as provider:  # no cookie, no CSRF
        resp = provider.post(path, data={"List-Unsubscribe": "One-Click"})
    assert resp.status_code == 200
    assert lists_of(engine, "leaver@example.com") == {"weekly": "unsubscribed"}
    again = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert again.status_code == 200  # idempotent


def test_unsubscribe_page_offers_other_lists_and_get_changes_nothing(client, engine, config):
    a = subs.add_subscriber(engine, "multi@example.com", list_slug="weekly")
    subs.add_subscriber(engine, "multi@example.com", list_slug="news")
    path = leaving.unsubscribe_url(config, a.subscriber_id, a.list_id).removeprefix(config.base_url)
    r = client.get(path)
    assert r.status_code == 200 and "Product news" in r.text and 'type="checkbox"' in r.text
    assert lists_of(engine, "multi@example.com") == {"news": "active", "weekly": "active"}
    news_id = store_lists.get_list(engine, "news").id
    r = client.post(path, data={"list": [str(a.list_id), str(news_id)]})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert lists_of(engine, "multi@example.com") == {"news": "unsubscribed", "weekly": "unsubscribed"}


def test_bad_unsubscribe_input(client, engine, config):
    a = subs.add_subscriber(engine, "stay@example.com", list_slug="weekly")
    good = tokens.unsubscribe_token(SECRET.encode(), a.subscriber_id, a.list_id)
    for token in [good[:-4], tokens.unsubscribe_token(b"not-the-key-000000000", a.subscriber_id, a.list_id), "x"]:
        assert_clean_error(client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}), 400)
        assert_clean_error(client.get(f"/unsubscribe/{token}"), 400)
    # The page's form naming a list that is not theirs.
    assert_clean_error(client.post(f"/unsubscribe/{good}", data={"list": "999"}), 400)
    assert lists_of(engine, "stay@example.com") == {"weekly": "active"}


def test_signup_confirm_and_unsubscribe_on_sqlite_and_postgresql(db_url):
    """The public flow through the real store on both databases (no mail: single opt-in)."""
    upgrade(db_url)
    engine = get_engine(db_url)
    try:
        store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
        config = Config(database_url=db_url, secret_key=SECRET, base_url="http://127.0.0.1:8000")
        with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000") as c:
            token = csrf(c, "/subscribe/weekly")
            assert c.post("/subscribe/weekly", data={"email": "pg@example.com", "csrf_token": token}).status_code == 200
            idle(c)
            row = subs.get_subscriber(engine, "pg@example.com")
            assert row.lists == {"weekly": "active"}
            lid = store_lists.get_list(engine, "weekly").id
            path = leaving.unsubscribe_url(config, row.id, lid).removeprefix(config.base_url)
            assert c.get(path).status_code == 200
            assert c.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200
            assert subs.get_subscriber(engine, "pg@example.com").lists == {"weekly": "unsubscribed"}
    finally:
        engine.dispose()


def test_token_for_a_list_the_person_is_not_on_is_404_and_changes_nothing(client, engine):
    a = subs.add_subscriber(engine, "one@example.com", list_slug="weekly")
    other = store_lists.get_list(engine, "news").id
    token = tokens.unsubscribe_token(SECRET.encode(), a.subscriber_id, other)
    assert_clean_error(client.get(f"/unsubscribe/{token}"), 404)
    assert_clean_error(client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}), 404)
    assert lists_of(engine, "one@example.com") == {"weekly": "active"}


def test_archive_shows_sent_campaigns_only_and_no_readers_data(client, config, engine, tmp_path):
    from dispatch_helpers import FakeDigest

    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign

    subs.add_subscriber(engine, "reader@example.com", list_slug="weekly", name="Reader Name")
    draft = create_campaign(engine, FakeDigest(subject="Draft issue"), ["weekly"], config)
    sent = create_campaign(engine, FakeDigest(subject="Sent issue"), ["weekly"], config)
    summary = send_campaign(engine, sent.id, config, outbox=str(tmp_path / "outbox"))
    assert summary.counts == {"sent": 1}

    index = client.get("/archive/")
    assert index.status_code == 200
    assert "Sent issue" in index.text and "Draft issue" not in index.text
    assert_clean_error(client.get(f"/archive/{draft.id}"), 404)
    assert_clean_error(client.get("/archive/999"), 404)
    assert_clean_error(client.get("/archive/not-a-number"), 404)
    page = client.get(f"/archive/{sent.id}")
    assert page.status_code == 200 and "Sent issue" in page.text and f'src="/archive/{sent.id}/issue"' in page.text
    issue = client.get(f"/archive/{sent.id}/issue")  # the issue itself, in the page's sandboxed frame
    assert issue.status_code == 200 and "A story about soil" in issue.text
    for text in (page.text, issue.text):
        assert "reader@example.com" not in text and "Reader Name" not in text and "*|" not in text
    assert_clean_error(client.get(f"/archive/{draft.id}/issue"), 404)


def test_signup_answers_the_same_when_the_mail_server_refuses_the_address(tmp_path, config, engine):
    from smtp_server import SMTPTestServer

    from newsletter.config import SMTPServer

    store_lists.create_list(engine, "double", "Double opt-in", opt_in="double")
    with SMTPTestServer(reject={"refused@example.com"}) as srv:
        cfg = config.replace(smtp={"t": SMTPServer(name="t", url=srv.url)})
        with TestClient(create_app(cfg, engine), base_url="http://127.0.0.1:8000") as c:
            token = csrf(c, "/subscribe/double")
            refused = c.post("/subscribe/double", data={"email": "refused@example.com", "csrf_token": token})
            fine = c.post("/subscribe/double", data={"email": "fine@example.com", "csrf_token": token})
        assert srv.wait_for(1, timeout=10)
        assert [m.rcpt_tos for m in srv.received()] == [["fine@example.com"]]
    assert refused.status_code == fine.status_code == 200
    assert refused.text.replace("refused@example.com", "X") == fine.text.replace("fine@example.com", "X")


def test_web_signup_records_the_confirmation_so_send_confirmations_skips_it(config, engine):
    from smtp_server import SMTPTestServer

    from newsletter.config import SMTPServer
    from newsletter.dispatch.oneoff import send_one

    store_lists.create_list(engine, "double", "Double opt-in", opt_in="double")
    subs.add_subscriber(engine, "imported@example.com", list_slug="double")  # never mailed
    with SMTPTestServer(reject={"refused@example.com"}) as srv:
        cfg = config.replace(smtp={"t": SMTPServer(name="t", url=srv.url)})
        with TestClient(create_app(cfg, engine), base_url="http://127.0.0.1:8000") as c:
            token = csrf(c, "/subscribe/double")
            for address in ("web@example.com", "refused@example.com"):
                assert c.post("/subscribe/double", data={"email": address, "csrf_token": token}).status_code == 200
        assert srv.wait_for(1, timeout=10)
        run = optin.send_confirmations(engine, cfg, "double", lambda to, s, h, t: send_one(cfg, to, s, h, t))
        # web@ was mailed by the signup; refused@ was not (the server refused it), so it is tried again
        assert (run.sent, run.failed, run.skipped_mailed) == (1, 1, 1)
        assert srv.recipient_counts() == {"web@example.com": 1, "imported@example.com": 1}


# --- without the session cookie (cookie-blocking and in-app browsers, embedded forms) ----------


@pytest.fixture
def cookieless(app):
    """A browser that never keeps our cookie: every request arrives without one."""
    with TestClient(app, base_url="http://127.0.0.1:8000", client=("198.51.100.9", 40000), cookies=None) as c:
        yield c


def post_without_cookie(client, url, data, headers=None):
    client.cookies.clear()
    r = client.post(url, data=data, headers=headers or {})
    client.cookies.clear()
    return r


def test_unsubscribe_page_form_works_without_any_cookie(cookieless, engine, config):
    a = subs.add_subscriber(engine, "nocookie@example.com", list_slug="weekly")
    subs.add_subscriber(engine, "nocookie@example.com", list_slug="news")
    news = store_lists.get_list(engine, "news").id
    path = leaving.unsubscribe_url(config, a.subscriber_id, a.list_id).removeprefix(config.base_url)
    page_ = cookieless.get(path)
    assert page_.status_code == 200 and 'name="csrf_token"' not in page_.text  # nothing cookie-bound in the form
    r = post_without_cookie(cookieless, path, {"list": [str(a.list_id), str(news)]})
    assert r.status_code == 200 and "You are unsubscribed" in r.text
    assert lists_of(engine, "nocookie@example.com") == {"news": "unsubscribed", "weekly": "unsubscribed"}
    # The button with no list chosen leaves the link's own list; from another site it works too
    # (the signed token is the authority, and only the person it was mailed to has it).
    b = subs.add_subscriber(engine, "plain@example.com", list_slug="weekly")
    path = leaving.unsubscribe_url(config, b.subscriber_id, b.list_id).removeprefix(config.base_url)
    r = post_without_cookie(cookieless, path, {}, headers={"Origin": "https://webmail.example.net"})
    assert r.status_code == 200 and lists_of(engine, "plain@example.com") == {"weekly": "unsubscribed"}


def test_confirm_works_without_any_cookie(cookieless, engine, pending):
    token = tokens.confirm_token(SECRET.encode(), pending.subscriber_id, pending.list_id)
    assert cookieless.get(f"/confirm/{token}").status_code == 200
    r = post_without_cookie(cookieless, f"/confirm/{token}", {})
    assert r.status_code == 200 and "You are subscribed" in r.text
    assert lists_of(engine, "pending@example.com") == {"double": "active"}
    # A forged token still changes nothing, cookie or not.
    forged = tokens.confirm_token(b"another-secret-key-000000", pending.subscriber_id, pending.list_id)
    assert_clean_error(post_without_cookie(cookieless, f"/confirm/{forged}", {}), 400)


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:8000"},  # our own page, in a browser that blocks cookies
    {"Referer": "http://127.0.0.1:8000/subscribe/weekly"},  # an older browser: no Origin, a Referer
    {"Origin": "https://example.org"},  # the publisher's site (site_url), a form embedded there
    {"Origin": "https://blog.example.net"},  # listed in signup_origins
    {"Origin": "HTTPS://Blog.Example.NET:443"},  # the same origin, spelled differently
], ids=["base-url", "referer", "site-url", "signup-origins", "normalised"])
def test_cookieless_signup_from_an_allowed_site_works(config, engine, headers):
    cfg = config.replace(site_url="https://example.org/blog/", signup_origins=["https://blog.example.net:443/"])
    with TestClient(create_app(cfg, engine), base_url="http://127.0.0.1:8000") as c:
        r = post_without_cookie(c, "/subscribe/weekly", {"email": "embedded@example.com", "name": "Em"}, headers)
    assert r.status_code == 200, r.text
    assert lists_of(engine, "embedded@example.com") == {"weekly": "active"}


@pytest.mark.parametrize("headers", [
    {},  # neither Origin nor Referer
    {"Origin": "https://evil.example"},
    {"Origin": "null"},  # a sandboxed frame or a privacy mode hides where it comes from
    {"Origin": "http://127.0.0.1:8000.evil.example"},
    {"Origin": "https://127.0.0.1:8000"},  # another scheme is another origin
    {"Referer": "https://evil.example/?u=http://127.0.0.1:8000/"},
    {"Origin": "https://evil.example", "Referer": "http://127.0.0.1:8000/subscribe/weekly"},  # Origin wins
], ids=["none", "cross-site", "null", "suffix", "scheme", "referer", "origin-wins"])
def test_cookieless_cross_site_signup_is_refused(cookieless, engine, headers):
    r = post_without_cookie(cookieless, "/subscribe/weekly", {"email": "victim@example.com", "csrf_token": "x"}, headers)
    assert_clean_error(r, 403)
    idle(cookieless)
    assert lists_of(engine, "victim@example.com") is None


def test_cookieless_signups_are_still_rate_limited(cookieless, engine):
    same = {"Origin": "http://127.0.0.1:8000"}
    codes = [post_without_cookie(cookieless, "/subscribe/weekly", {"email": "again@example.com"}, same).status_code
             for _ in range(3)]
    assert codes == [200, 200, 429]
    codes = [post_without_cookie(cookieless, "/subscribe/weekly", {"email": f"n{i}@example.com"}, same).status_code
             for i in range(8)]
    assert codes[-1] == 429


def test_a_signup_origin_that_is_not_an_origin_is_refused_at_start(config, engine):
    from newsletter.errors import ConfigError

    for bad in ("example.org", "https://example.org/signup", "ftp://example.org", "https://u@example.org"):
        with pytest.raises(ConfigError, match="signup_origins"):
            create_app(config.replace(signup_origins=[bad]), engine)


# --- the confirmation email goes out after the answer ---------------------------------------


def test_the_signup_answer_does_not_wait_for_the_mail_server(config, engine):
    """A new address must not be answered more slowly than a known one (that would tell an observer
    who is subscribed): with a mail server that holds every message until the test lets it go,
    the answer comes anyway, the same as for a known address, and the email then arrives. A real
    uvicorn and a real SMTP server on 127.0.0.1; nothing is timed."""
    import threading
    import time

    import httpx
    from smtp_server import SMTPTestServer

    from fixtures.web.harness import LiveServer, free_port
    from newsletter.config import SMTPServer

    store_lists.create_list(engine, "double", "Double opt-in", opt_in="double")
    known = subs.add_subscriber(engine, "known@example.com", list_slug="double")
    optin.confirm_by_token(engine, SECRET.encode(), tokens.confirm_token(SECRET.encode(), known.subscriber_id, known.list_id))
    port = free_port()
    hold = threading.Event()
    with SMTPTestServer(hold=hold) as srv:
        cfg = config.replace(base_url=f"http://127.0.0.1:{port}", smtp={"t": SMTPServer(name="t", url=srv.url)})
        with LiveServer(create_app(cfg, engine), port=port) as live, httpx.Client(base_url=live.url, timeout=20) as http:
            token = re.search(r'name="csrf_token" value="([^"]+)"', http.get("/subscribe/double").text).group(1)

            def signup(address):
                return http.post("/subscribe/double", data={"email": address, "csrf_token": token})

            old = signup("known@example.com")
            new = signup("new@example.com")  # answered while the mail server still holds the email
            assert old.status_code == new.status_code == 200
            assert old.text.replace("known@example.com", "X") == new.text.replace("new@example.com", "X")
            assert srv.received() == []  # it really was still on its way when the answer came
            hold.set()
            assert srv.wait_for(1, timeout=15), "the confirmation email never arrived"
            [mail] = srv.received()
            assert mail.rcpt_tos == ["new@example.com"] and "/confirm/" in mail.message().get_body(("plain",)).get_content()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:  # recorded right after the server accepted it
                with engine.connect() as conn:
                    sent_at = conn.exec_driver_sql(
                        "select s.confirmation_sent_at from subscriptions s join subscribers p on p.id = s.subscriber_id "
                        "where p.email = 'new@example.com'").scalar()
                if sent_at is not None:
                    break
                time.sleep(0.05)
            assert sent_at is not None, "confirmation_sent_at was not recorded"
