"""The web app in a real browser: Debian's chromium (Playwright) against uvicorn on 127.0.0.1.

Preview frames at desktop and phone widths, the text and dark tabs, --watch reload, a test send
arriving at a real SMTP server, the whole double opt-in signup, and one-click unsubscribe.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, browser, page  # noqa: F401  (fixtures)
from newsletter.config import Config
from newsletter.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def articles(tmp_path):
    d = tmp_path / "articles"
    shutil.copytree(ARTICLES, d)
    return d


@pytest.fixture
def config(tmp_path, articles):
    from newsletter.store.db import upgrade

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(database_url=url, sources=[str(articles)], secret_key="test-secret-key-0123456789", outbox=str(tmp_path / "outbox"))


@pytest.fixture
def live(config, articles):
    with LiveServer(create_app(config, watch=[articles])) as srv:
        yield srv


def _frame(page, name):
    """The named preview frame once its email document (not about:blank) has loaded."""
    page.wait_for_function(
        "n => { const f = document.querySelector(`iframe[name='${n}']`);"
        " return f && f.contentDocument && f.contentDocument.readyState === 'complete'"
        " && f.contentDocument.URL.includes('/frame'); }",
        arg=name,
    )
    return page.frame(name=name)


def test_preview_fits_a_phone_and_every_image_has_alt(live, page):
    page.goto(live.url + "/admin/preview")
    assert "In praise of small tools" in page.locator("#subject").inner_text()
    mobile = _frame(page, "mobile")
    desktop = _frame(page, "desktop")
    assert mobile.evaluate("document.documentElement.clientWidth") == 375
    assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
    assert desktop.evaluate("document.documentElement.clientWidth") >= 600
    images = mobile.evaluate("[...document.images].map(i => [i.getAttribute('alt'), i.complete && i.naturalWidth > 0])")
    assert images, "the fixture digest has a thumbnail"
    assert all(alt for alt, _ in images), images
    assert all(loaded for _, loaded in images), f"an image did not load in the preview: {images}"
    assert page.locator("#warning-count").inner_text() == "(0)"


def test_tabs_show_plain_text_and_dark_mode(live, page):
    page.goto(live.url + "/admin/preview")
    assert page.locator("#panel-text").is_hidden()
    page.click("#tab-text")
    assert page.locator("#panel-text").is_visible()
    text = page.locator("#plain-text").inner_text()
    assert "Garden notes for a wet November" in text and "<" not in text
    assert "view=text" in page.url  # the tab is in the URL: a reload keeps it
    page.click("#tab-dark")
    dark = _frame(page, "dark-mobile")
    bg = dark.evaluate("getComputedStyle(document.body).backgroundColor")
    light = _frame(page, "mobile").evaluate("getComputedStyle(document.body).backgroundColor")
    assert bg != light, (bg, light)
    r, g, b = map(int, re.findall(r"\d+", bg)[:3])
    assert r + g + b < 200, f"dark mode background is not dark: {bg}"
    # The same views work without JavaScript, as links.
    page.goto(live.url + "/admin/preview?view=text")
    assert page.locator("#panel-text").is_visible() and page.locator("#panel-email").is_hidden()


def test_keyboard_moves_between_tabs(live, page):
    page.goto(live.url + "/admin/preview")
    page.focus("#tab-email")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-text"
    assert page.locator("#panel-text").is_visible()


def test_watch_reloads_the_preview_when_an_article_changes(live, page, articles):
    page.goto(live.url + "/admin/preview")
    assert "Garden notes" in _frame(page, "desktop").content()
    f = articles / "2026-11-18-garden-notes.md"
    f.write_text(f.read_text().replace("Garden notes for a wet November", "Garden notes for a frosty December"))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if "frosty December" in _frame(page, "desktop").content():
                break
        except Exception:  # the page is reloading: frames come and go
            pass
        page.wait_for_timeout(200)
    else:
        pytest.fail("the preview did not reload after the article changed")
