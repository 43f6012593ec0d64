"""Every public page in every shipped language, in Debian's chromium on a 390 px phone: the
subscribe form (also with a refusal), its answer, confirm (before and after), unsubscribe (before
and after), the preference centre (also after a change), the archive, the privacy note and an error
page. Each is in its language and direction, fits 390 px without sideways scrolling, and has no
serious or critical WCAG 2.1 A/AA violation (axe-core). The Arabic pages are checked on the
screenshot itself: each heading's ink sits at the right of its box. Screenshots of the five pages
the issue names (subscribe, confirm, unsubscribe, preferences, archive) in French and Arabic go to
$NEWSLETTER_SCREENSHOTS (else the test's temporary folder)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from fixtures.web.harness import LiveServer, axe_problems, browser, free_port, screenshots  # noqa: F401  (fixtures)

from newsletter.config import Config
from newsletter.i18n import available, gettext
from newsletter.web import create_app

pytestmark = pytest.mark.browser
SHOT_LANGS = ("fr", "ar")
SHOT_PAGES = ("subscribe", "confirm", "unsubscribe", "preferences", "archive")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A site with a single- and a double-opt-in list per shipped language, a reader of each
    language (on the double list, waiting for confirmation, and on the single list), and one sent
    issue in the archive."""
    from dispatch_helpers import FakeDigest
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store import lists, preferences, signup, subscribers
    from newsletter.store.db import get_engine, upgrade
    from newsletter.store.secret import secret_key
    from newsletter.store.tokens import unsubscribe_token

    tmp = tmp_path_factory.mktemp("pages")
    url = f"sqlite:///{tmp / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    port = free_port()
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                    from_address="News <news@example.org>", outbox=str(tmp / "outbox"), allow_local_links=True)
    secret = secret_key(config)
    links: dict[str, dict[str, str]] = {}
    for lang in available():
        single = lists.create_list(engine, f"news-{lang}", f"News ({lang})", language=lang,
                                   description=gettext(lang, "Every issue has a one-click unsubscribe link."))
        lists.create_list(engine, f"deep-{lang}", f"Deep ({lang})", opt_in="double", language=lang)
        address = f"reader-{lang}@example.org"
        subscribers.add_subscriber(engine, address, list_slug=f"news-{lang}", name=f"Reader {lang}")
        plan = signup.request_signup(engine, f"deep-{lang}", address, f"Reader {lang}")
        sid = subscribers.get_subscriber(engine, address).id
        links[lang] = {
            "confirm": signup.signup_url(config, plan, secret=secret),
            "unsubscribe": f"{config.base_url}/unsubscribe/{unsubscribe_token(secret, sid, single.id)}",
            "preferences": preferences.link_for(engine, config, address),
        }
    campaign = create_campaign(engine, FakeDigest(), ["news-en"], config)
    send_campaign(engine, campaign.id, config)
    yield config, engine, port, links
    engine.dispose()


def heading_ink(png: bytes) -> tuple[int, int]:
    """(blank columns left of the ink, blank columns right of it) in a screenshot of one heading:
    ink is any pixel far from the background colour (the corner pixel)."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    bg = img.getpixel((0, 0))
    width, height = img.size
    inked = [x for x in range(width)
             if any(sum(abs(a - b) for a, b in zip(img.getpixel((x, y)), bg)) > 120 for y in range(0, height, 2))]
    assert inked, "the heading shows no ink"
    return inked[0], width - 1 - inked[-1]


def check(page, lang: str, what: str, shots: Path | None) -> None:
    """The page is in ``lang`` and its direction, fits 390 px, passes axe-core; Arabic headings are
    laid out from the right, as the screenshot shows."""
    html = page.locator("html")
    assert html.get_attribute("lang") == lang, what
    assert html.get_attribute("dir") == ("rtl" if lang == "ar" else "ltr"), what
    assert page.evaluate("document.documentElement.scrollWidth") <= 390, what
    assert axe_problems(page) == [], (lang, what)
    if lang == "ar":
        assert page.evaluate("getComputedStyle(document.body).direction") == "rtl", what
        h1 = page.locator("h1").first
        left, right = heading_ink(h1.screenshot())
        assert right < left, (what, left, right)
    if shots is not None:
        page.screenshot(path=str(shots / f"{what}-{lang}-390.png"), full_page=True)


@pytest.mark.parametrize("lang", available())
def test_every_public_page_in_every_language_fits_a_phone_and_passes_axe(world, browser, lang, tmp_path):  # noqa: F811
    config, engine, port, links = world
    shots = screenshots(tmp_path, "readers-pages") if lang in SHOT_LANGS else None
    context = browser.new_context(locale=lang, viewport={"width": 390, "height": 844}, bypass_csp=True,
                                  extra_http_headers={"Accept-Language": lang})
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            mailer = live.server.config.app.state.web.mailer
            page.goto(f"{live.url}/subscribe/news-{lang}")
            check(page, lang, "subscribe", shots)
            page.locator("input[name=email]").fill("not-an-address")
            page.locator("form button[type=submit]").click()
            assert page.locator("#email-error").is_visible()
            check(page, lang, "subscribe-refused", None)
            page.locator("input[name=email]").fill(f"new-{lang}@example.org")
            page.locator("form button[type=submit]").click()
            assert page.locator("h1").inner_text() == gettext(lang, "Thanks!")  # a single-opt-in list
            check(page, lang, "subscribed", None)
            assert mailer.wait_idle(15)

            page.goto(links[lang]["confirm"])
            check(page, lang, "confirm", shots)
            page.locator("form button[type=submit]").click()
            check(page, lang, "confirmed", None)

            page.goto(links[lang]["preferences"])
            check(page, lang, "preferences", shots)
            page.locator("input[name=months][value='1']").check()
            page.locator("button[value=pause]").click()
            assert page.locator("button[value=resume]").is_visible()
            check(page, lang, "preferences-paused", None)

            page.goto(links[lang]["unsubscribe"])
            check(page, lang, "unsubscribe", shots)
            page.locator("form button[type=submit]").first.click()
            check(page, lang, "unsubscribed", None)

            page.goto(f"{live.url}/archive/")
            assert page.locator("a[href^='/archive/']").count() >= 1
            check(page, lang, "archive", shots)
            page.goto(f"{live.url}/privacy")
            check(page, lang, "privacy", None)
            page.goto(f"{live.url}/archive/999999")
            check(page, lang, "error", None)
            page.goto(f"{live.url}/view/forged")
            check(page, lang, "view-missing", None)
    finally:
        context.close()
    if shots is not None:
        assert {p.name for p in shots.glob(f"*-{lang}-390.png")} >= {f"{p}-{lang}-390.png" for p in SHOT_PAGES}


def test_the_ink_check_sees_which_side_a_heading_starts(browser):  # noqa: F811
    """The screenshot check itself: a left-aligned heading reads as left, a right-aligned one as right."""
    context = browser.new_context(viewport={"width": 390, "height": 300})
    try:
        page = context.new_page()
        for align, expect_right in (("left", False), ("right", True)):
            page.set_content(f'<html><body style="margin:0;background:#fff"><h1 style="text-align:{align};color:#000;'
                             f'width:390px">Short</h1></body></html>')
            left, right = heading_ink(page.locator("h1").screenshot())
            assert (right < left) is expect_right, (align, left, right)
    finally:
        context.close()



def test_the_public_forms_work_with_javascript_off(world, browser):  # noqa: F811
    """Subscribe, confirm, pause on the preference centre and unsubscribe in a browser with
    JavaScript disabled: every public page is a plain form; a script, where there is one, is an
    optional enhancement from /static/, never inline."""
    from newsletter.store import lists, preferences, signup, subscribers
    from newsletter.store.secret import secret_key
    from newsletter.store.tokens import unsubscribe_token

    config, engine, port, _ = world
    secret = secret_key(config)
    plan = signup.request_signup(engine, "deep-fr", "nojs@example.org", "Sans JS")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            seen = []

            def visit(url: str) -> None:
                page.goto(url)
                seen.append(page.content())

            visit(f"{live.url}/subscribe/news-fr")
            page.locator("input[name=email]").fill("nojs-form@example.org")
            page.locator("form button[type=submit]").click()
            seen.append(page.content())
            assert live.server.config.app.state.web.mailer.wait_idle(15)
            assert subscribers.get_subscriber(engine, "nojs-form@example.org").lists == {"news-fr": "active"}
            visit(signup.signup_url(config, plan, secret=secret))
            page.locator("form button[type=submit]").click()
            seen.append(page.content())
            assert subscribers.get_subscriber(engine, "nojs@example.org").lists == {"deep-fr": "active"}
            link = preferences.link_for(engine, config, "nojs@example.org")
            visit(link)
            page.locator("input[name=months][value='2']").check()
            page.locator("button[value=pause]").click()
            seen.append(page.content())
            assert preferences.show(engine, secret, link.rsplit("/", 1)[1]).pause_until is not None
            sid = subscribers.get_subscriber(engine, "nojs@example.org").id
            visit(f"{live.url}/unsubscribe/{unsubscribe_token(secret, sid, lists.get_list(engine, 'deep-fr').id)}")
            page.locator("form button[type=submit]").first.click()
            seen.append(page.content())
            assert subscribers.get_subscriber(engine, "nojs@example.org").lists == {"deep-fr": "unsubscribed"}
            for path in ("/archive/", "/privacy"):
                visit(live.url + path)
    finally:
        context.close()
    assert len(seen) == 10
    # scripts are only optional enhancements from our own /static/ (the signup form's browser time
    # zone): no inline script, and the flows above worked without any
    scripts = [tag for html in seen for tag in re.findall(r"<script\b[^>]*>", html)]
    assert all(re.fullmatch(r'<script src="/static/[a-z_-]+\.js" defer="?"?>', tag) for tag in scripts), scripts
