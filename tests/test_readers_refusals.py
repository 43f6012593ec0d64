"""Refusals speak the reader's language: an invalid address, an over-long or control-character name,
a rate limit, an expired or foreign link, a wrong time zone, a missing archive issue, a form from
another site — every reason a public page gives comes from the catalogue of the page's language
(the list's, else the browser's), never in English on a translated page; the English text stays
what the API and the CLI show. Real SQLite, the real web app; no mocks."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient

from newsletter import i18n
from newsletter.config import Config
from newsletter.errors import InvalidInput, NotFound
from newsletter.i18n import Message
from newsletter.store import lists as store_lists, preferences as prefs, subscribers
from newsletter.store.addresses import normalize_email
from newsletter.store.db import get_engine, upgrade
from newsletter.store.secret import secret_key
from newsletter.store.tokens import confirm_token, unsubscribe_token
from newsletter.web import create_app
from newsletter.web.app import Limits

TRANSLATED = ("fr", "de", "es", "pt", "ar")
BASE = "http://127.0.0.1:8000"


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", outbox=str(tmp_path / "outbox"),
                    base_url=BASE)
    engine = get_engine(url)
    for lang in TRANSLATED:
        store_lists.create_list(engine, f"l-{lang}", f"List {lang}", language=lang)
    yield config, engine
    engine.dispose()


def _client(site, **limits) -> TestClient:
    config, engine = site
    return TestClient(create_app(config, engine, limits=Limits(**limits)), base_url=BASE)


def _csrf(client, slug: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(f"/subscribe/{slug}").text).group(1)


def shown(page: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded)."""
    return html.unescape(re.sub(r"<[^>]+>", " ", page))


def assert_in_language(page: str, lang: str, message: Message) -> None:
    """The page shows ``message`` from ``lang``'s catalogue, and not its English words."""
    translated = message.in_language(lang)
    assert i18n.translations(lang).gettext(message.msgid) != message.msgid, f"{lang} has no translation of {message.msgid!r}"
    assert translated in shown(page), (lang, translated)
    assert str(message) not in shown(page), (lang, str(message))


def _reason(exc: InvalidInput) -> Message:
    assert exc.reader is not None, f"{exc} carries no translatable reason"
    return exc.reader


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_signup_forms_refusals_are_in_the_lists_language(site, lang):
    slug = f"l-{lang}"
    with _client(site) as c:
        for typed in ("not-an-address", "", "a@", "@example.org", "ana..b@example.org", "ana@example"):
            r = c.post(f"/subscribe/{slug}", data={"email": typed, "csrf_token": _csrf(c, slug)},
                       headers={"Accept-Language": "en"})  # the list's language wins over the browser's
            assert r.status_code == 400
            with pytest.raises(InvalidInput) as caught:
                normalize_email(typed)
            assert_in_language(r.text, lang, _reason(caught.value))
            assert 'aria-describedby="email-error"' in r.text
        r = c.post(f"/subscribe/{slug}", data={"email": "ana@example.org", "name": "A\x07", "csrf_token": _csrf(c, slug)})
        assert r.status_code == 400 and 'aria-describedby="name-error"' in r.text
        assert_in_language(r.text, lang, i18n.N_("the name contains a control character (U+%(code)s)", code="0007"))
        r = c.post(f"/subscribe/{slug}", data={"email": "ana@example.org"}, headers={"Origin": "https://evil.example"})
        assert r.status_code == 403
        assert_in_language(r.text, lang, i18n.N_("sign-ups are not accepted from forms on %(origin)s", origin="https://evil.example"))
        r = c.post(f"/subscribe/{slug}", data={"email": "ana@example.org"})
        assert r.status_code == 403
        assert_in_language(r.text, lang, i18n.N_("this form must be sent from its page; open the signup page and try again"))
        r = c.get("/subscribe/no-such-list", headers={"Accept-Language": lang})
        assert r.status_code == 404 and f"l-{lang}" not in r.text  # and no other list is named
        assert_in_language(r.text, lang, i18n.N_("there is no list %(slug)s here", slug="'no-such-list'"))
        assert c.app.state.web.mailer.wait_idle(15)
    with pytest.raises(NotFound):  # nothing was stored
        subscribers.get_subscriber(site[1], "ana@example.org")


@pytest.mark.parametrize("lang", TRANSLATED)
def test_rate_limits_and_links_refuse_in_the_readers_language(site, lang):
    config, engine = site
    secret = secret_key(config)
    slug = f"l-{lang}"
    lid = store_lists.get_list(engine, slug).id
    with _client(site, subscribe_per_ip=(1, 600), token_per_ip=(2, 600)) as c:
        assert c.post(f"/subscribe/{slug}", data={"email": "ana@example.org", "csrf_token": _csrf(c, slug)}).status_code == 200
        r = c.post(f"/subscribe/{slug}", data={"email": "bea@example.org", "csrf_token": _csrf(c, slug)},
                   headers={"Accept-Language": "en"})
        assert r.status_code == 429 and r.headers["Retry-After"].isdigit()
        assert_in_language(r.text, lang, i18n.N_("too many sign-ups from your connection; try again in %(seconds)d seconds",
                                                 seconds=int(r.headers["Retry-After"])))
        head = {"Accept-Language": f"{lang},en;q=0.5"}
        old = confirm_token(secret, 1, lid, now=datetime.now(timezone.utc) - timedelta(days=30))
        r = c.get(f"/confirm/{old}", headers=head)
        assert r.status_code == 400
        assert_in_language(r.text, lang, i18n.N_("This confirmation link has expired. Sign up again to get a fresh one."))
        r = c.get("/confirm/not-a-token", headers=head)
        assert_in_language(r.text, lang, i18n.N_("This confirmation link is not valid: it may have been cut short or mistyped. "
                                                 "Copy the whole link from the email and try again."))
        r = c.get("/confirm/not-a-token", headers=head)
        assert r.status_code == 429
        assert_in_language(r.text, lang, i18n.N_("too many link checks from your connection; try again in %(seconds)d seconds",
                                                 seconds=int(r.headers["Retry-After"])))
        r = c.get("/unsubscribe/not-a-token", headers=head)  # never rate limited
        assert_in_language(r.text, lang, i18n.N_("This unsubscribe link is not valid: it may have been cut short or mistyped. "
                                                 "Copy the whole link from the email and try again."))
        for path, message in (("/archive/12345", i18n.N_("there is no issue %(issue)s in the archive", issue=12345)),
                              ("/no/such/page", i18n.N_("there is no page at this address")),
                              ("/view/forged", i18n.N_("this web version does not exist (the link may have been cut short, "
                                                       "or the reader has left)"))):
            r = c.get(path, headers=head)
            assert r.status_code == 404, path
            assert_in_language(r.text, lang, message)
    with _client(site) as c:  # the API keeps the English words
        r = c.get("/archive/12345", headers={"Accept": "application/json", "Accept-Language": lang})
        assert r.json() == {"error": "there is no issue 12345 in the archive", "status": 404}


@pytest.mark.parametrize("lang", TRANSLATED)
def test_the_preference_centre_and_unsubscribe_page_refuse_in_the_readers_language(site, lang):
    config, engine = site
    secret = secret_key(config)
    subscribers.add_subscriber(engine, "ana@example.org", list_slug=f"l-{lang}")
    sid = subscribers.get_subscriber(engine, "ana@example.org").id
    path = prefs.link_for(engine, config, "ana@example.org").removeprefix(BASE)
    head = {"Accept-Language": lang}
    with _client(site) as c:
        page = c.get(path, headers=head).text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
        for data, message in (
            ({"action": "timezone", "timezone": "Mars/Olympus"},
             i18n.N_("%(zone)s is not a time zone: choose one from the list, like Europe/Paris", zone="'Mars/Olympus'")),
            ({"action": "name", "name": "x" * 201}, i18n.N_("the name is longer than %(max)d characters", max=200)),
            ({"action": "join", "list": "abc"}, i18n.N_("choose a list from the page")),
            ({"action": "join", "list": "999"}, i18n.N_("there is no list #%(id)s", id=999)),
            ({"action": "explode"}, i18n.N_("unknown change: reload the page and try again")),
        ):
            r = c.post(path, data={**data, "csrf_token": token}, headers=head)
            assert r.status_code == 400, data
            assert_in_language(r.text, lang, message)
        r = c.post(path, data={"action": "leave_all"}, headers=head)  # no CSRF token, no Origin
        assert r.status_code == 403
        r = c.post(path, data={"action": "leave_all", "csrf_token": "stale"}, headers=head)
        assert_in_language(r.text, lang, i18n.N_("the form's security token is missing or out of date; reload the page and try again"))
        r = c.post(path + "x", data={"action": "pause", "months": "1", "csrf_token": token}, headers=head)
        assert r.status_code == 404
        assert_in_language(r.text, lang, i18n.N_("This preferences link is not valid: it may have been cut short, or replaced by a "
                                                 "newer one. Use the link in the latest email you received."))
        unsubscribe = f"/unsubscribe/{unsubscribe_token(secret, sid, store_lists.get_list(engine, f'l-{lang}').id)}"
        r = c.post(unsubscribe, data={"list": "424242"}, headers=head)
        assert r.status_code == 400
        assert_in_language(r.text, lang, i18n.N_("that list is not one of this subscriber's lists"))
    assert subscribers.get_subscriber(engine, "ana@example.org").lists == {f"l-{lang}": "active"}


def test_in_arabic_an_address_keeps_its_own_direction_inside_the_sentence():
    with pytest.raises(InvalidInput) as caught:
        normalize_email("not-an-address")
    message = _reason(caught.value)
    assert "\u2068not-an-address\u2069" in message.in_language("ar")
    assert "\u2068" not in message.in_language("fr") and str(message).startswith("not-an-address is not a valid")
    assert str(caught.value).startswith("'not-an-address' is not a valid email address: An email address must have an @-sign")
