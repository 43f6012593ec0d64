"""The preference centre in a real browser (Debian's chromium through Playwright, uvicorn on
127.0.0.1): a reader opens the link in the footer of a composed and sent .eml, leaves one list,
pauses mail, and the next campaign's ledger skips them; the page fits a 390 px phone."""

from __future__ import annotations

import email
import re
import shutil
from email import policy
from pathlib import Path

import pytest
from sqlalchemy import select

from fixtures.web.harness import ARTICLES, LiveServer, browser, free_port, page  # noqa: F401  (fixtures)
from test_web_browser import A11Y_CHECK

from newsletter.config import Config
from newsletter.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def site(tmp_path):
    from newsletter.store.db import get_engine, upgrade

    articles = tmp_path / "articles"
    shutil.copytree(ARTICLES, articles)
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    port = free_port()
    config = Config(database_url=url, sources=[str(articles)], secret_key="test-secret-key-0123456789",
                    base_url=f"http://127.0.0.1:{port}", outbox=str(tmp_path / "outbox"),
                    from_address="The Weekly Dispatch <news@example.org>")
    engine = get_engine(url)
    with LiveServer(create_app(config, engine), port=port) as srv:
        yield srv, config, engine
    engine.dispose()


def _send(engine, config, slugs):
    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign

    campaign = create_campaign(engine, compose(config.sources, config, ComposeOptions()), slugs, config)
    send_campaign(engine, campaign.id, config, allow_local_links=True)  # the app under test is the loopback base_url
    return campaign


def test_a_reader_leaves_a_list_and_pauses_from_the_emails_footer(site, page):
    from newsletter.store import lists, subscribers
    from newsletter.store.campaign_models import Delivery

    live, config, engine = site
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    lists.create_list(engine, "news", "Product news", opt_in="single")
    for address in ("reader@example.com", "other@example.com"):
        subscribers.add_subscriber(engine, address, list_slug="weekly")
    subscribers.add_subscriber(engine, "reader@example.com", list_slug="news")
    _send(engine, config, ["weekly"])

    outbox = Path(config.outbox)
    (eml,) = [p for p in outbox.glob("*.eml") if "reader@example.com" in
              str(email.message_from_bytes(p.read_bytes(), policy=policy.default)["To"])]
    msg = email.message_from_bytes(eml.read_bytes(), policy=policy.default)
    html = msg.get_body(("html",)).get_content()
    link = re.search(r'<a href="([^"]+)"[^>]*>Manage your subscription</a>', html).group(1)
    assert link.startswith(live.url + "/preferences/")
    assert link in msg.get_body(("plain",)).get_content()

    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(link)
    assert page.locator("h1").inner_text() == "Your subscription"
    assert page.evaluate(A11Y_CHECK) == []
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    page.get_by_role("button", name="Leave Product news").click()
    assert "You left Product news" in page.locator(".flash.ok").inner_text()
    page.get_by_label("2 months").check()
    page.get_by_role("button", name="Pause mail").click()
    assert "Mail is paused until" in page.locator(".flash.ok").inner_text()
    assert page.get_by_role("button", name="End the pause now").is_visible()
    assert page.evaluate(A11Y_CHECK) == []
    page.screenshot(path=str(outbox.parent / "preferences-390.png"), full_page=True)  # kept for a look: pytest --basetemp

    assert subscribers.get_subscriber(engine, "reader@example.com").lists == {"news": "unsubscribed", "weekly": "active"}
    second = _send(engine, config, ["weekly"])
    deliveries = Delivery.__table__
    with engine.connect() as conn:
        to = conn.execute(select(deliveries.c.email).where(deliveries.c.campaign_id == second.id)).scalars().all()
    assert to == ["other@example.com"]
