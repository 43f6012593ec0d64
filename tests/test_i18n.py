"""The reader's language: every shipped catalogue is complete and keeps its placeholders; public
pages, the confirmation email and the digest's fixed words follow the list's language (or the
browser's, or the config's); Arabic lays out right to left, in a real browser on a 390 px phone."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from newsletter import i18n
from newsletter.articles.model import Article
from newsletter.compose.model import ComposeOptions
from newsletter.compose.render import render
from newsletter.config import Config
from newsletter.store import lists as store_lists
from newsletter.store import optin
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

REPO = Path(__file__).resolve().parents[1]
SHIPPED = ("fr", "de", "es", "pt", "ar")
PLACEHOLDER = re.compile(r"%\([a-z_]+\)[sd]")


# --- catalogues ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def extracted(tmp_path_factory):
    """The messages the code and templates hold now, extracted afresh with Babel (babel.cfg)."""
    from babel.messages.pofile import read_po

    out = tmp_path_factory.mktemp("pot") / "messages.pot"
    subprocess.run([sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "N_",
                    "--no-location", "-o", str(out), "."], cwd=REPO, check=True, capture_output=True)
    with out.open("rb") as f:
        return read_po(f)


def test_the_shipped_languages_are_available():
    assert set(i18n.available()) == {"en", *SHIPPED}


def test_the_committed_template_matches_the_extracted_messages(extracted):
    from babel.messages.pofile import read_po

    with (REPO / "src/newsletter/locale/messages.pot").open("rb") as f:
        committed = {m.id for m in read_po(f) if m.id}
    assert committed == {m.id for m in extracted if m.id}, "run the pybabel extract command in docs/languages.md"


@pytest.mark.parametrize("lang", SHIPPED)
def test_every_message_has_a_checked_translation_with_the_same_placeholders(extracted, lang):
    from babel.messages.pofile import read_po

    with (REPO / f"src/newsletter/locale/{lang}/LC_MESSAGES/messages.po").open("rb") as f:
        catalog = read_po(f, locale=lang)
    problems = []
    for m in extracted:
        if not m.id:
            continue
        t = catalog.get(m.id)
        if t is None:
            problems.append(f"missing: {m.id!r}")
            continue
        if t.fuzzy:
            problems.append(f"fuzzy: {m.id!r}")
        if isinstance(m.id, tuple):
            forms = list(t.string)
            if len(forms) != catalog.num_plurals or not all(forms):
                problems.append(f"plural forms: {m.id!r}")
            wanted = set(PLACEHOLDER.findall(m.id[1]))
            # a plural form may spell its number out ("شهران"), so %(num)d may be left out
            problems += [f"placeholders: {m.id!r} -> {f!r}" for f in forms if not set(PLACEHOLDER.findall(f)) <= wanted]
        else:
            if not t.string:
                problems.append(f"empty: {m.id!r}")
            elif set(PLACEHOLDER.findall(t.string)) != set(PLACEHOLDER.findall(m.id)):
                problems.append(f"placeholders: {m.id!r} -> {t.string!r}")
            elif m.id.count("<") != t.string.count("<"):
                problems.append(f"markup: {m.id!r} -> {t.string!r}")
    assert not problems, "\n".join(problems)


def test_catalogues_compile_without_a_committed_mo_file():
    assert not list((REPO / "src/newsletter/locale").glob("*/LC_MESSAGES/*.mo"))
    assert i18n.gettext("fr", "Read more") == "Lire la suite"
    assert i18n.ngettext("ar", "%(num)d story", "%(num)d stories", 2) == "مقالان"
    assert i18n.gettext("xx", "Read more") == "Read more"


def test_language_choice_prefers_the_list_then_the_browser_then_the_config():
    assert i18n.choose("de", "fr-CA,fr;q=0.9", "es") == "de"
    assert i18n.choose(None, "ja, pt-BR;q=0.8, fr;q=0.5", "es") == "pt"
    assert i18n.choose(None, "fr;q=0, de;q=0.3", "es") == "de"
    assert i18n.choose(None, "ja", "es") == "es"
    assert i18n.choose(None, None, None) == "en"
    assert i18n.direction("ar") == "rtl" and i18n.direction("ar-EG") == "rtl" and i18n.direction("fr") == "ltr"


# --- the digest ------------------------------------------------------------------------------------


def _articles():
    return [Article(title="Erste Geschichte", url="https://example.org/a", summary="Kurz.", read_time_minutes=4),
            Article(title="Zweite Geschichte", url="https://example.org/b", read_time_minutes=1)]


def test_a_german_digest_has_german_fixed_words_and_keeps_its_merge_tags():
    digest = render(_articles(), Config(), ComposeOptions(language="de"))
    for words in ("Weiterlesen", "4 Min. Lesezeit", "2 Beiträge", "Abonnement verwalten", "Im Browser ansehen", "Abmelden"):
        assert words in digest.html and words in digest.text, words
    assert "Read more" not in digest.html and "min read" not in digest.text
    assert "*|PREFERENCES_URL|*" in digest.html and "*|UNSUBSCRIBE_URL|*" in digest.text
    assert '<html lang="de" dir="ltr"' in digest.html


def test_the_config_language_is_the_default_and_arabic_is_right_to_left():
    digest = render(_articles(), Config(language="ar"), ComposeOptions())
    assert '<html lang="ar" dir="rtl"' in digest.html
    assert "اقرأ المزيد" in digest.html and "إدارة اشتراكك" in digest.text
    assert re.search(r'<div dir="rtl">[^<]*تصلك', digest.html)


def test_english_stays_as_it_was():
    digest = render(_articles(), Config(), ComposeOptions())
    assert "Read more" in digest.html and "4 min read" in digest.text and "2 stories" in digest.text


# --- the confirmation email ------------------------------------------------------------------------


def test_the_confirmation_email_is_in_the_lists_language():
    msg = optin.confirmation_message(Config(), email="a@example.org", list_name="Le Fil", confirm_url="https://x/c/1",
                                     name="Anne", language="fr")
    assert msg.subject == "Merci de confirmer votre abonnement à Le Fil"
    assert "Bonjour Anne," in msg.text and "Confirmez en ouvrant ce lien dans les 7 jours\u00a0:" in msg.text
    assert "<b>a@example.org</b>" in msg.html and "Confirmer mon abonnement" in msg.html
    ar = optin.confirmation_message(Config(), email="a@example.org", list_name="<x>", confirm_url="https://x/c/1",
                                    language="ar")
    assert '<html lang="ar" dir="rtl"' in ar.html and "&lt;x&gt;" in ar.html and "<x>" not in ar.html


# --- public pages ----------------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", outbox=str(tmp_path / "outbox"))
    engine = get_engine(url)
    store_lists.create_list(engine, "lettre", "La Lettre", language="fr")
    store_lists.create_list(engine, "nashra", "النشرة", language="ar", opt_in="double")
    store_lists.create_list(engine, "plain", "Plain")
    yield config, engine
    engine.dispose()


@pytest.fixture
def client(site):
    config, engine = site
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000") as c:
        yield c


def test_a_french_list_has_french_pages(client):
    r = client.get("/subscribe/lettre")
    assert r.status_code == 200
    assert '<html lang="fr" dir="ltr">' in r.text
    assert "S’abonner à La Lettre" in r.text and "Adresse e-mail" in r.text and "(facultatif)" in r.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = client.post("/subscribe/lettre", data={"email": "lea@example.org", "csrf_token": token})
    assert r.status_code == 200 and "Merci\u00a0!" in r.text and "<strong>lea@example.org</strong>" in r.text


def test_an_arabic_list_has_right_to_left_pages(client):
    r = client.get("/subscribe/nashra")
    assert '<html lang="ar" dir="rtl">' in r.text
    assert "الاشتراك في \u2068النشرة\u2069" in r.text and "سنرسل إليك رابطًا للتأكيد" in r.text
    assert 'type="email" dir="ltr"' in r.text  # an address reads left to right in any page


def test_confirm_and_unsubscribe_pages_use_their_lists_language(client, site):
    from newsletter.store import leaving, subscribers, tokens

    config, engine = site
    pending = subscribers.add_subscriber(engine, "amal@example.org", list_slug="nashra")
    token = tokens.confirm_token(config.secret_key.encode(), pending.subscriber_id, pending.list_id)
    r = client.get(f"/confirm/{token}", headers={"Accept-Language": "de"})
    assert '<html lang="ar" dir="rtl">' in r.text and "تأكيد الاشتراك" in r.text
    r = client.post(f"/confirm/{token}")
    assert "أنت مشترك" in r.text
    lea = subscribers.add_subscriber(engine, "lea@example.org", list_slug="lettre")
    path = leaving.unsubscribe_url(config, lea.subscriber_id, lea.list_id).removeprefix(config.base_url)
    r = client.get(path)
    assert '<html lang="fr"' in r.text and "Se désabonner" in r.text
    r = client.post(path, data={"List-Unsubscribe": "One-Click"})
    assert r.status_code == 200 and "Vous êtes désabonné" in r.text and "ne recevra plus La Lettre" in r.text


def test_pages_about_no_list_follow_the_browser_then_the_config(client, site):
    assert '<html lang="en" dir="ltr">' in client.get("/subscribe/plain").text
    assert '<html lang="de"' in client.get("/subscribe/plain", headers={"Accept-Language": "de-AT,de;q=0.9"}).text
    r = client.get("/archive/", headers={"Accept-Language": "es-MX,es;q=0.9,en;q=0.5"})
    assert '<html lang="es"' in r.text and "Números anteriores" in r.text
    r = client.get("/privacy", headers={"Accept-Language": "ar"})
    assert '<html lang="ar" dir="rtl">' in r.text and "الفتحات والنقرات" in r.text
    r = client.get("/confirm/not-a-token", headers={"Accept-Language": "fr"})
    assert r.status_code == 400 and '<html lang="fr"' in r.text and "Cela n’a pas fonctionné" in r.text
    assert "Ce lien de confirmation n’est pas valide" in r.text  # the reason, made in web/public.py, too


def test_a_reason_the_catalogue_does_not_know_is_shown_escaped():
    import jinja2

    env = jinja2.Environment(autoescape=True)
    i18n.install(env)
    t = env.from_string("{{ translate(m) }}|{{ translate(k) }}")
    known = "This preferences link is not valid: it may have been cut short, or replaced by a newer one. Use the link in the latest email you received."
    out = t.render(lang="fr", m="no list '<b>x</b>'", k=known)
    assert "&lt;b&gt;x&lt;/b&gt;" in out and "<b>" not in out and "Ce lien vers vos préférences" in out


def test_the_preference_centre_answers_in_the_browsers_language(client, site):
    from newsletter.store import preferences, subscribers

    config, engine = site
    subscribers.add_subscriber(engine, "pia@example.org", list_slug="plain")
    path = preferences.link_for(engine, config, "pia@example.org").removeprefix(config.base_url)
    r = client.get(path, headers={"Accept-Language": "de"})
    assert '<html lang="de"' in r.text and "Ihr Abonnement" in r.text and "3 Monate" in r.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', r.text).group(1)
    r = client.post(path, data={"action": "pause", "months": "1", "csrf_token": token}, headers={"Accept-Language": "de"})
    assert r.status_code == 200 and "Der Versand ist bis" in r.text and "Mail is paused" not in r.text


def test_a_list_language_is_set_and_validated_from_the_cli(site, tmp_path):
    from typer.testing import CliRunner

    from newsletter.cli import app

    config, engine = site
    db = ["--db", config.database_url]
    r = CliRunner().invoke(app, [*db, "lists", "create", "welt", "--language", "de"])
    assert r.exit_code == 0 and "language de" in r.output, r.output
    r = CliRunner().invoke(app, [*db, "lists", "update", "welt", "--language", "ar"])
    assert r.exit_code == 0 and "language ar" in r.output, r.output
    assert store_lists.get_list(engine, "welt").language == "ar"
    r = CliRunner().invoke(app, [*db, "lists", "update", "welt", "--language", "default"])
    assert r.exit_code == 0 and store_lists.get_list(engine, "welt").language is None
    r = CliRunner().invoke(app, [*db, "lists", "create", "x", "--language", "tlh"])
    assert r.exit_code != 0 and "no catalogue" in str(r.exception)


# --- in a browser ------------------------------------------------------------------------------------


@pytest.mark.browser
def test_the_arabic_subscribe_page_is_right_to_left_and_fits_a_phone(site, tmp_path):
    from fixtures.web.harness import CHROMIUM, CHROMIUM_ARGS, LiveServer, chromium_or_skip

    chromium_or_skip()
    from playwright.sync_api import sync_playwright

    config, engine = site
    with LiveServer(create_app(config, engine)) as srv, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=30_000)
        try:
            page = browser.new_page(viewport={"width": 390, "height": 844})
            page.set_default_timeout(20_000)
            page.goto(f"{srv.url}/subscribe/nashra")
            assert page.evaluate("getComputedStyle(document.body).direction") == "rtl"
            assert page.evaluate("getComputedStyle(document.querySelector('h1')).direction") == "rtl"
            assert page.evaluate("getComputedStyle(document.querySelector('#email')).direction") == "ltr"
            assert page.evaluate("document.documentElement.scrollWidth") <= 390
            # the heading starts at the right: its right edge is nearer the card's right than its left edge is to the left
            box = page.evaluate("(() => { const r = document.createRange(); r.selectNodeContents(document.querySelector('h1'));"
                                " const t = r.getBoundingClientRect(); const c = document.querySelector('.card').getBoundingClientRect();"
                                " return [t.left - c.left, c.right - t.right]; })()")
            assert box[1] < box[0], box
            shot = tmp_path / "subscribe-ar-390.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 1000
        finally:
            browser.close()
