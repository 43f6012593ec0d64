"""The public archive in Debian's chromium at 1280 and 390 px: the index (dates, summaries, pages)
and an issue's page (the issue in its sandboxed frame, grown to its height) pass axe-core with no
serious or critical WCAG 2.1 A/AA violation, fit the width, and their subscribe form signs a
visitor up through the one signup handler (its time zone filled by signup.js)."""

from __future__ import annotations

import pytest

from fixtures.web.harness import LiveServer, axe_problems, browser, free_port  # noqa: F401  (fixtures)

from newsletter.config import Config
from newsletter.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two public lists and a private one; 23 issues published on 'weekly' (two pages), one more
    sent with --no-archive."""
    from dispatch_helpers import FakeDigest, add_people
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.store import lists
    from newsletter.store.db import get_engine, upgrade

    tmp = tmp_path_factory.mktemp("archive")
    url = f"sqlite:///{tmp / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    port = free_port()
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                    from_address="News <news@example.org>", outbox=str(tmp / "outbox"), allow_local_links=True,
                    timezone="Europe/Paris")
    lists.create_list(engine, "weekly", "The Weekly", description="Stories about soil, every Monday.")
    lists.create_list(engine, "events", "Events near you")
    lists.create_list(engine, "staff", "Staff notes", public=False)
    add_people(engine, "weekly", 1)
    ids = []
    for n in range(23):
        c = create_campaign(engine, FakeDigest(subject=f"The Weekly — issue {n + 1}",
                                               preheader=f"{n + 3} stories: soil, weather and small farms"),
                            ["weekly"], config)
        send_campaign(engine, c.id, config)
        ids.append(c.id)
    hidden = create_campaign(engine, FakeDigest(subject="Hidden issue"), ["weekly"], config, archive=False)
    send_campaign(engine, hidden.id, config)
    yield config, engine, port, ids
    engine.dispose()


def _check(page, what: str, width: int) -> None:
    assert page.evaluate("document.documentElement.scrollWidth") <= width, what
    assert axe_problems(page) == [], (what, width)


@pytest.mark.parametrize("width", [1280, 390])
def test_the_archive_pages_pass_axe_fit_and_sign_visitors_up(world, browser, width):  # noqa: F811
    config, engine, port, ids = world
    context = browser.new_context(viewport={"width": width, "height": 900}, locale="en", bypass_csp=True)  # for axe
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            mailer = live.server.config.app.state.web.mailer
            page.goto(f"{live.url}/archive/")
            entries = page.locator("ol.issues > li")
            assert entries.count() == 20 and "issue 23" in entries.first.inner_text()
            assert "Hidden issue" not in page.content()
            assert entries.first.locator("time").get_attribute("datetime")
            assert "25 stories" in entries.first.inner_text()
            assert page.locator("form[action='/subscribe/weekly']").count() == 1
            assert page.locator("form[action='/subscribe/events']").count() == 1
            assert page.locator("form[action='/subscribe/staff']").count() == 0
            _check(page, "index", width)
            page.locator("a[rel=next]").click()
            page.wait_for_url("**/archive/?page=2")
            assert page.locator("ol.issues > li").count() == 3
            _check(page, "index page 2", width)

            page.goto(f"{live.url}/archive/{ids[-1]}")
            frame = page.locator("iframe.issue")
            frame.wait_for()
            page.wait_for_function("document.querySelector('iframe.issue').contentDocument.readyState === 'complete'")
            inner = page.frame_locator("iframe.issue")
            assert inner.locator("text=A story about soil").first.is_visible()
            # archive.js grew the frame to the height: the page scrolls as one
            page.wait_for_function("""() => { const f = document.querySelector('iframe.issue');
                return Math.abs(f.getBoundingClientRect().height - f.contentDocument.documentElement.scrollHeight) <= 2; }""")
            _check(page, "issue", width)
            forms = page.locator("form[action^='/subscribe/']")
            assert forms.count() == 1  # the issue's own public list
            zone = page.locator("form[action='/subscribe/weekly'] input[name=timezone]")
            page.wait_for_function("document.querySelector('input[name=timezone]').value !== ''")
            assert zone.input_value()  # signup.js filled the browser's zone
            page.locator("form[action='/subscribe/weekly'] input[name=email]").fill(f"visitor-{width}@example.org")
            page.locator("form[action='/subscribe/weekly'] button[type=submit]").click()
            page.wait_for_url("**/subscribe/weekly")
            assert page.locator("h1").inner_text() == "Thanks!"
            assert mailer.wait_idle(15)
    finally:
        context.close()
    from newsletter.store.subscribers import get_subscriber

    assert get_subscriber(engine, f"visitor-{width}@example.org").lists
