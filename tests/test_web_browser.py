"""The web app in a real browser: Debian's chromium (Playwright) against uvicorn on 127.0.0.1.

Preview frames at desktop and phone widths, the text and dark tabs, --watch reload, a test send
arriving at a real SMTP server, the whole double opt-in signup, and one-click unsubscribe.
"""

from __future__ import annotations

import re
import shutil
import time

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, browser, free_port, page  # noqa: F401  (fixtures)
from smtp_server import SMTPTestServer

from newsletter.config import Config, SMTPServer
from newsletter.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def articles(tmp_path):
    d = tmp_path / "articles"
    shutil.copytree(ARTICLES, d)
    return d


@pytest.fixture
def smtp():
    with SMTPTestServer() as srv:
        yield srv


@pytest.fixture
def port():
    return free_port()


@pytest.fixture
def config(tmp_path, articles, smtp, port):
    from newsletter.store.db import upgrade

    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(
        database_url=url, sources=[str(articles)], secret_key="test-secret-key-0123456789",
        base_url=f"http://127.0.0.1:{port}", smtp={"test": SMTPServer(name="test", url=smtp.url)},
        from_address="The Weekly Dispatch <news@example.org>",
    )


@pytest.fixture
def engine(config):
    from newsletter.store.db import get_engine

    engine = get_engine(config.database_url)
    yield engine
    engine.dispose()


@pytest.fixture
def live(config, engine, articles, port):
    with LiveServer(create_app(config, engine, watch=[articles]), port=port) as srv:
        yield srv


def signups_done(live, count: int) -> None:
    """Wait until the app's background queue has run ``count`` signups (it takes them once the
    answer has gone out, so the page can show before the database changes)."""
    assert live.server.config.app.state.web.mailer.wait_ran(count, 15), "the signup queue did not run"


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
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if "frosty December" in _frame(page, "desktop").content():
                break
        except Exception:  # the page is reloading: frames come and go
            pass
        page.wait_for_timeout(200)
    else:
        pytest.fail("the preview did not reload after the article changed")


def test_test_send_arrives_at_the_smtp_server(live, page, smtp):
    page.goto(live.url + "/admin/preview")
    page.fill("#test-to", "editor@example.com")
    page.click("text=Send test")
    assert "Test message sent to editor@example.com" in page.locator(".flash").inner_text()
    assert smtp.wait_for(1, timeout=10)
    msg = smtp.received()[0]
    assert msg.rcpt_tos == ["editor@example.com"]
    assert msg.headers["Subject"].startswith("[TEST] The Weekly Dispatch")
    message = msg.message()
    body = message.get_body(("html",)).get_content()
    assert "In praise of small tools" in body and "*|" not in body
    # The local thumbnail travels inside the message, referenced by its Content-ID.
    cids = [p["Content-ID"].strip("<>") for p in message.walk() if p.get_content_maintype() == "image"]
    assert cids and all(f"cid:{c}" in body for c in cids)
    assert 'src="assets/' not in body


def test_double_opt_in_signup_end_to_end(live, page, smtp, engine):
    from newsletter.store import lists, subscribers

    lists.create_list(engine, "weekly", "The Weekly", opt_in="double")
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(live.url + "/subscribe/weekly")
    assert page.evaluate("document.documentElement.scrollWidth") <= 375
    page.get_by_label("Email address").fill("new.reader@example.com")
    page.get_by_label("Name").fill("New Reader")
    page.get_by_role("button", name="Subscribe").click()
    assert "Check your inbox" in page.locator("h1").inner_text()
    signups_done(live, 1)
    assert subscribers.get_subscriber(engine, "new.reader@example.com").lists == {"weekly": "unconfirmed"}

    assert smtp.wait_for(1, timeout=10), "the confirmation email did not arrive"
    msg = smtp.received()[0].message()
    assert msg["To"] == "new.reader@example.com"
    text = msg.get_body(("plain",)).get_content()
    link = re.search(r"http://127\.0\.0\.1:\d+/confirm/\S+", text).group(0)
    page.goto(link)  # a mail scanner fetching the link changes nothing...
    assert subscribers.get_subscriber(engine, "new.reader@example.com").lists == {"weekly": "unconfirmed"}
    page.get_by_role("button", name="Confirm subscription").click()  # ...the reader's click does
    assert "You are subscribed" in page.locator("h1").inner_text()
    assert subscribers.get_subscriber(engine, "new.reader@example.com").lists == {"weekly": "active"}


def test_signup_and_unsubscribe_in_a_browser_that_keeps_no_cookies(live, page, engine, config):
    """Cookie-blocking and in-app browsers: the forms are sent without our session cookie."""
    from newsletter.store import leaving, lists, subscribers

    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    page.goto(live.url + "/subscribe/weekly")
    page.context.clear_cookies()  # the cookie the page set is not sent back
    page.get_by_label("Email address").fill("private.reader@example.com")
    page.get_by_role("button", name="Subscribe").click()
    assert "Thanks!" in page.locator("h1").inner_text()
    signups_done(live, 1)
    assert subscribers.get_subscriber(engine, "private.reader@example.com").lists == {"weekly": "active"}

    row = subscribers.get_subscriber(engine, "private.reader@example.com")
    url = leaving.unsubscribe_url(config, row.id, lists.get_list(engine, "weekly").id)
    page.goto(url)
    page.context.clear_cookies()
    page.get_by_role("button", name="Unsubscribe").click()
    assert "You are unsubscribed" in page.locator("h1").inner_text()
    assert subscribers.get_subscriber(engine, "private.reader@example.com").lists == {"weekly": "unsubscribed"}


def test_one_click_unsubscribe_from_a_sent_campaign(live, page, smtp, engine, config):
    """Send a real campaign, then POST to the URL in its List-Unsubscribe header (RFC 8058)."""
    import httpx

    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store import lists, subscribers

    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    subscribers.add_subscriber(engine, "reader@example.com", list_slug="weekly")
    digest = compose(config.sources, config, ComposeOptions())
    campaign = create_campaign(engine, digest, ["weekly"], config)
    send_campaign(engine, campaign.id, config, allow_local_links=True)  # the app under test is the loopback base_url
    assert smtp.wait_for(1, timeout=15)
    msg = smtp.received()[0]
    assert msg.headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.search(r"<(http[^>]+)>", msg.headers["List-Unsubscribe"]).group(1)
    assert url.startswith(live.url + "/unsubscribe/")
    r = httpx.post(url, data={"List-Unsubscribe": "One-Click"}, follow_redirects=False, timeout=10)
    assert r.status_code == 200
    assert subscribers.get_subscriber(engine, "reader@example.com").lists == {"weekly": "unsubscribed"}

    # The archive shows the issue with no personal data and no working token.
    archive = httpx.get(f"{live.url}/archive/{campaign.id}/issue", timeout=10)  # the issue in its page's frame
    assert archive.status_code == 200 and "In praise of small tools" in archive.text
    assert "reader@example.com" not in archive.text and "/unsubscribe/" not in archive.text and "*|" not in archive.text
    assert f"/archive/{campaign.id}" in httpx.get(f"{live.url}/archive/", timeout=10).text
    # Its frozen inline images load in a browser, which cannot follow cid: links by itself.
    page.set_viewport_size({"width": 375, "height": 800})
    page.goto(f"{live.url}/archive/{campaign.id}")
    page.wait_for_load_state("load")
    (issue,) = page.main_frame.child_frames  # the issue's sandboxed frame
    issue.wait_for_load_state("load")
    images = issue.evaluate("[...document.images].map(i => [i.getAttribute('src'), i.naturalWidth > 0, i.alt])")
    assert any(src.startswith(f"/archive/{campaign.id}/cid/") for src, _, _ in images), images
    assert all(ok and alt for _, ok, alt in images), images
    assert page.evaluate("document.documentElement.scrollWidth") <= 375


A11Y_CHECK = """() => {
  const problems = [];
  for (const el of document.querySelectorAll('input, select, textarea')) {
    if (el.type === 'hidden' || el.closest('[aria-hidden="true"]')) continue;
    if (!(el.labels && el.labels.length) && !el.getAttribute('aria-label')) problems.push('unlabelled ' + (el.name || el.id));
  }
  for (const b of document.querySelectorAll('button, a')) {
    if (!b.textContent.trim() && !b.getAttribute('aria-label')) problems.push('nameless ' + b.outerHTML.slice(0, 60));
  }
  if (document.documentElement.scrollWidth > window.innerWidth) problems.push('horizontal scroll ' + document.documentElement.scrollWidth);
  if (!document.documentElement.lang) problems.push('no lang');
  return problems;
}"""


def test_pages_are_labelled_keyboard_usable_and_fit_375px(live, page, engine, config):
    from newsletter.store import leaving, lists, subscribers

    lists.create_list(engine, "weekly", "The Weekly", opt_in="double")
    lists.create_list(engine, "news", "Product news", opt_in="single")
    a = subscribers.add_subscriber(engine, "multi@example.com", list_slug="news")
    subscribers.add_subscriber(engine, "multi@example.com", list_slug="weekly")
    unsub = leaving.unsubscribe_url(config, a.subscriber_id, a.list_id)
    page.set_viewport_size({"width": 375, "height": 740})
    for url in ["/subscribe/weekly", unsub, "/confirm/forged-token", "/archive/", "/admin/", "/admin/preview",
                "/admin/subscribers", "/admin/lists", "/admin/campaigns", "/admin/subscribers/import", "/nope"]:
        page.goto(url if url.startswith("http") else live.url + url)
        assert page.evaluate(A11Y_CHECK) == [], url
    # Keyboard: Tab reaches the skip link first, then the form; focus is visible.
    page.goto(live.url + "/subscribe/weekly")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Enter")
    for _ in range(4):
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "email":
            break
    assert page.evaluate("document.activeElement.id") == "email"
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline
    page.keyboard.type("kb@example.com")
    page.keyboard.press("Enter")
    assert "Check your inbox" in page.locator("h1").inner_text()


def test_campaign_page_follows_a_send_live(live, page, smtp, engine, config):
    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store import lists, subscribers

    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    for i in range(3):
        subscribers.add_subscriber(engine, f"live{i}@example.com", list_slug="weekly")
    campaign = create_campaign(engine, compose(config.sources, config, ComposeOptions()), ["weekly"], config)
    page.goto(f"{live.url}/admin/campaigns/{campaign.id}")
    assert page.locator("#status").inner_text() == "draft"
    send_campaign(engine, campaign.id, config, allow_local_links=True)  # another process would do this; the page only polls
    page.wait_for_function("() => document.getElementById('status') && document.getElementById('status').textContent === 'finished'",
                           timeout=30_000)
    assert page.locator("[data-count=sent]").inner_text() == "3"
    assert page.locator("#progress-text").inner_text() == "3 of 3"


def test_the_sample_articles_fit_a_phone_too(page, tmp_path):
    """The repository's own sample digest (RTL article, video card, wide images) at 375 px."""
    from pathlib import Path

    from newsletter.store.db import upgrade

    repo_articles = Path(__file__).resolve().parent.parent / "articles"
    url = f"sqlite:///{tmp_path / 'sample.db'}"
    upgrade(url)
    cfg = Config(database_url=url, sources=[str(repo_articles)], secret_key="test-secret-key-0123456789")
    page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("http://127.0.0.1") else route.abort())
    with LiveServer(create_app(cfg)) as srv:
        page.goto(srv.url + "/admin/preview")
        mobile = _frame(page, "mobile")
        assert mobile.evaluate("document.documentElement.scrollWidth") <= 375
        alts = mobile.evaluate("[...document.images].map(i => i.getAttribute('alt'))")
        assert alts and all(alts), alts


def test_password_login_in_the_browser_then_preview_frames_load(page, config, engine):
    cfg = config.replace(admin_password="a long enough password")
    with LiveServer(create_app(cfg, engine)) as srv:
        page.goto(srv.url + "/admin/preview")
        assert "/admin/login" in page.url
        page.get_by_label("Admin password").fill("not it")
        page.get_by_role("button", name="Log in").click()
        assert "Wrong password" in page.locator(".flash").inner_text()
        page.get_by_label("Admin password").fill("a long enough password")
        page.get_by_role("button", name="Log in").click()
        page.goto(srv.url + "/admin/preview")
        mobile = _frame(page, "mobile")
        assert "In praise of small tools" in mobile.content()
        cookie = next(c for c in page.context.cookies() if c["name"] == "nl_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"
        page.get_by_role("button", name="Log out").click()
        page.goto(srv.url + "/admin/subscribers")
        assert "/admin/login" in page.url
