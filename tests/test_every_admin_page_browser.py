"""Every page of the admin, once there is something on each, through Debian's chromium: axe-core
finds no serious or critical WCAG 2 A/AA violation at 1280 or 390 px, no page scrolls sideways on
a phone, and each is screenshot (into $NEWSLETTER_SCREENSHOTS, else the test's temporary folder).

The journeys (tests/test_publisher_day.py, test_admin_*_browser.py) check what the pages do; this
one makes sure no page is left out of the accessibility check, including error pages.
"""

from __future__ import annotations

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, admin_context, browser, free_port, look, screenshots  # noqa: F401  (fixtures)

from newsletter.config import Config

SECRET = "test-secret-key-0123456789"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A database with one of everything the admin shows: lists, people, a sent campaign, a draft,
    a recurring digest, a segment and a suppression."""
    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign
    from newsletter.dispatch.sender import send_campaign
    from newsletter.schedule.digests import DigestSpec, add_digest
    from newsletter.store import lists, segments, subscribers, suppressions
    from newsletter.store.db import get_engine, upgrade

    tmp = tmp_path_factory.mktemp("every-page")
    url = f"sqlite:///{tmp / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    port = free_port()
    config = Config(database_url=url, secret_key=SECRET, base_url=f"http://127.0.0.1:{port}", outbox=str(tmp / "outbox"),
                    sources=[str(ARTICLES)], timezone="Europe/Paris", default_since="all")
    lists.create_list(engine, "news", "The News", opt_in="single")
    lists.create_list(engine, "weekly", "The Weekly", opt_in="double")
    for i in range(4):
        subscribers.add_subscriber(engine, f"reader{i}@example.com", list_slug="news", name=f"Reader{i} Example",
                                   attributes={"city": "Porto" if i % 2 else "Lyon"})
    subscribers.add_subscriber(engine, "pending@example.com", list_slug="weekly", name="Pending Person")
    suppressions.suppress(engine, "gone@example.net", reason="asked by phone")
    segments.create_segment(engine, "porto", "news", '{"attr": "city", "eq": "Porto"}')
    digest = compose([str(ARTICLES)], config, ComposeOptions(limit=3, intro="Two good reads."))
    sent = create_campaign(engine, digest, ["news"], config).id
    send_campaign(engine, sent, config)
    draft = create_campaign(engine, digest, ["news"], config).id
    add_digest(engine, config, DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris",
                                          sources=[str(ARTICLES)], lists=["news"]))
    yield {"engine": engine, "config": config, "port": port, "sent": sent, "draft": draft, "tmp": tmp}
    engine.dispose()


def pages(w) -> list[tuple[str, str]]:
    """(name, path) of every admin page a publisher can reach, with data behind each."""
    sent, draft = w["sent"], w["draft"]
    return [
        ("overview", "/admin/"),
        ("preview", "/admin/preview"),
        ("preview-campaign", f"/admin/preview?campaign={sent}&view=text"),
        ("preview-digest", "/admin/preview?digest=weekly"),
        ("campaigns", "/admin/campaigns"),
        ("campaign-new", "/admin/campaigns/new"),
        ("campaign-draft", f"/admin/campaigns/{draft}"),
        ("campaign-edit", f"/admin/campaigns/{draft}/edit"),
        ("campaign-sent", f"/admin/campaigns/{sent}"),
        ("digest-new", "/admin/digests/new"),
        ("digest-edit", "/admin/digests/weekly/edit"),
        ("subscribers", "/admin/subscribers?list=news"),
        ("person", "/admin/subscribers/person?email=reader1@example.com"),
        ("person-unsubscribe", "/admin/subscribers/unsubscribe?email=reader1@example.com&list=news"),
        ("person-erase", "/admin/subscribers/erase?email=reader1@example.com"),
        ("import", "/admin/subscribers/import?list=weekly"),
        ("lists", "/admin/lists"),
        ("list-edit", "/admin/lists/weekly"),
        ("segments", "/admin/segments"),
        ("segment-new", "/admin/segments/new"),
        ("segment-edit", "/admin/segments/porto/edit"),
        ("segment-members", "/admin/segments/porto/members"),
        ("segment-delete", "/admin/segments/porto/delete"),
        ("suppressions", "/admin/suppressions"),
        ("suppression-remove", "/admin/suppressions/remove?value=gone@example.net"),
        ("settings", "/admin/settings"),
        ("not-found", "/admin/campaigns/99999"),
        ("api-docs", "/api/docs"),
        ("privacy", "/privacy"),
        ("archive", "/archive/"),
        ("archive-issue", f"/archive/{sent}"),
        ("subscribe", "/subscribe/weekly"),
    ]


def test_every_admin_page_passes_axe_at_both_widths_and_fits_a_phone(world, browser):  # noqa: F811
    from newsletter.web import create_app

    shots = screenshots(world["tmp"], "every-page")
    context = admin_context(browser)
    page = context.new_page()
    try:
        with LiveServer(create_app(world["config"], world["engine"]), port=world["port"]) as live:
            for name, path in pages(world):
                response = page.goto(live.url + path)
                assert response is not None
                expected = 404 if name == "not-found" else 200
                assert response.status == expected, (name, path, response.status)
                page.locator("main, body").first.wait_for()
                look(page, shots, name)
                page.set_viewport_size({"width": 390, "height": 844})
                overflow = page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")
                assert overflow <= 1, (name, f"scrolls sideways by {overflow}px at 390 px")
                page.set_viewport_size({"width": 1280, "height": 900})
            assert len({p.name for p in shots.glob("*.png")}) == 2 * len(pages(world))
    finally:
        context.close()
