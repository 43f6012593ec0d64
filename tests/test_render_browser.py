"""The sample digest in a real browser (Debian's chromium through Playwright): it reflows on a
phone, switches palette in dark mode, and RTL cards read right to left."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path

import pytest

from conftest import REPO
from newsletter.compose import ComposeOptions, compose, write_digest
from newsletter.config import Config

pytestmark = [pytest.mark.browser]
CHROMIUM = "/usr/bin/chromium"


@pytest.fixture(scope="module")
def digest_file(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("digest")
    d = compose([str(REPO / "articles")], Config(), ComposeOptions(now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc)))
    return write_digest(d, out)["html"]


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):  # a failure in CI (which installs it), a skip elsewhere
        reason = f"{CHROMIUM} is not installed (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(reason)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


def open_digest(browser, digest_file, *, width, scheme="light"):
    page = browser.new_page(viewport={"width": width, "height": 900}, color_scheme=scheme)
    # Nothing leaves the machine: remote images (video thumbnails) are answered with nothing.
    page.route("http*://**/*", lambda route: route.abort())
    page.goto(digest_file.as_uri())
    return page


def js(page, expr):
    return page.evaluate(expr)


def test_desktop_cards_are_576_px_with_edge_to_edge_images(browser, digest_file):
    page = open_digest(browser, digest_file, width=800)
    widths = js(page, "[...document.querySelectorAll('.nl-card')].map(e => Math.round(e.getBoundingClientRect().width))")
    assert widths and set(widths) == {576}
    img_widths = js(page, "[...document.querySelectorAll('img[src^=\"assets/\"]')].map(i => Math.round(i.getBoundingClientRect().width))")
    assert img_widths and set(img_widths) == {576}
    assert js(page, "getComputedStyle(document.querySelector('.nl-title div')).fontSize") == "23px"
    page.close()


def test_phone_width_reflows_without_horizontal_scrolling(browser, digest_file):
    page = open_digest(browser, digest_file, width=375)
    assert js(page, "document.documentElement.scrollWidth") <= 375
    widths = js(page, "[...document.querySelectorAll('.nl-card')].map(e => e.getBoundingClientRect().width)")
    assert all(w <= 375 - 24 for w in widths)
    # images keep their 16:9 shape when they shrink
    ratios = js(page, "[...document.querySelectorAll('img[src^=\"assets/\"]')].map(i => i.getBoundingClientRect().width / i.getBoundingClientRect().height)")
    assert ratios and all(abs(r - 16 / 9) < 0.05 for r in ratios)
    assert js(page, "getComputedStyle(document.querySelector('.nl-title div')).fontSize") == "20px"
    page.close()


def test_dark_mode_switches_the_palette(browser, digest_file):
    light = open_digest(browser, digest_file, width=640)
    dark = open_digest(browser, digest_file, width=640, scheme="dark")
    card = "getComputedStyle(document.querySelector('.nl-card')).backgroundColor"
    title = "getComputedStyle(document.querySelector('.nl-title a')).color"
    assert js(light, card) == "rgb(255, 255, 255)"
    assert js(dark, card) == "rgb(27, 30, 36)"
    assert js(light, title) == "rgb(20, 33, 61)"
    assert js(dark, title) == "rgb(241, 241, 241)"
    light.close()
    dark.close()


def test_rtl_card_text_is_right_aligned_and_right_to_left(browser, digest_file):
    page = open_digest(browser, digest_file, width=640)
    info = js(page, """() => {
        const d = document.querySelector('.nl-title div[dir="rtl"]');
        const s = getComputedStyle(d);
        const card = d.closest('.nl-card').getBoundingClientRect(), r = d.querySelector('a').getBoundingClientRect();
        return {direction: s.direction, lang: d.lang, gapRight: card.right - r.right, gapLeft: r.left - card.left};
    }""")
    assert info["direction"] == "rtl" and info["lang"] == "ar"
    assert info["gapRight"] < info["gapLeft"]  # the title hugs the right edge
    page.close()
