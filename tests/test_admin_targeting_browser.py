"""The A/B section of the campaign form and the local-time schedule form in Debian's chromium,
against uvicorn on 127.0.0.1: the section opens, the Apple Mail warning shows only while opens
is chosen, a refused test share comes back inside the form with the values typed; the campaign
page of an A/B campaign (its variants) and of a local-time campaign (its buckets, one sent by a
worker whose clock is injected). Each page is checked with axe-core (no serious or critical WCAG 2
A/AA violation) at 1280 and 390 px and screenshot (into $NEWSLETTER_SCREENSHOTS, else the test's
temporary folder)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, admin_context, browser, free_port, look, screenshots  # noqa: F401  (fixtures)
from smtp_server import SMTPTestServer

from newsletter.config import Config
from newsletter.web import create_app

pytestmark = pytest.mark.browser
UTC = timezone.utc
ZONE = "Europe/Paris"


def test_ab_and_local_time_in_the_browser(tmp_path, browser):  # noqa: F811
    from newsletter.dispatch import drafts
    from newsletter.dispatch.abtest import ab_status
    from newsletter.dispatch.campaigns import get_campaign
    from newsletter.schedule.worker import run_worker
    from newsletter.store import lists, subscribers
    from newsletter.store.db import get_engine, upgrade

    shots = screenshots(tmp_path, "admin-targeting")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    for i, zone in enumerate(["Pacific/Kiritimati", "Asia/Kolkata", None, "America/New_York"]):
        subscribers.add_subscriber(engine, f"reader{i}@example.com", list_slug="weekly", name=f"Reader{i} Example")
        if zone:
            with engine.begin() as conn:
                conn.exec_driver_sql("update subscribers set timezone = ? where email = ?", (zone, f"reader{i}@example.com"))
    port = free_port()
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                    from_address="The Weekly <news@example.org>", allow_local_links=True, sources=[str(ARTICLES)],
                    timezone=ZONE, outbox=str(tmp_path / "outbox"))
    context = admin_context(browser)
    page = context.new_page()
    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            # 1. The form's A/B section: closed at first, opened, filled; the Apple Mail warning
            # shows only while opens is chosen.
            page.goto(live.url + "/admin/campaigns/new")
            assert not page.locator("#subject_b").is_visible()
            page.locator("#ab-section summary").click()
            page.locator("#subject_b").wait_for(state="visible")
            page.locator("#since").fill("2026-11-01T00:00")
            page.locator("#until").fill("2026-11-30")
            page.locator("#subject").fill("Soil news")
            page.locator("input[name=lists][value=weekly]").check()
            page.locator("#track").select_option("opens,clicks")
            page.locator("#ab").check()
            page.locator("#subject_b").fill("What the rain did")
            page.locator("#ab_intro_b").fill("It rained a lot, *|FNAME|*.")
            page.locator("#test_share").fill("100%")
            assert not page.locator("#apple-warning").is_visible()
            page.locator("#winner-opens").check()
            page.locator("#apple-warning").wait_for(state="visible")
            assert "Apple Mail" in page.locator("#apple-warning").inner_text()
            look(page, shots, "campaign-form-ab")
            # 2. Refused: the reason inside the form, the section open, the values kept.
            page.locator("#create").click()
            page.locator("#campaign-form #form-error").wait_for(state="visible")
            assert page.locator("#form-error").inner_text().startswith("Test share '100%': must be more than 0%")
            assert page.locator("#subject_b").is_visible() and page.locator("#subject_b").input_value() == "What the rain did"
            assert page.locator("#ab_intro_b").input_value() == "It rained a lot, *|FNAME|*."
            assert page.locator("#winner-opens").is_checked() and page.locator("#apple-warning").is_visible()
            look(page, shots, "campaign-form-ab-error")
            page.locator("#test_share").fill("50%")
            page.locator("#create").click()
            page.wait_for_url("**/admin/campaigns/1")
            assert [v.subject for v in ab_status(engine, 1).variants] == ["Soil news", "What the rain did"]

            # 3. The A/B campaign's page: its variants, and no local time for it.
            assert page.locator("#ab-table tbody tr").count() == 2
            assert page.locator("[data-variant=B]").inner_text().startswith("B\tWhat the rain did")
            page.locator("#mode-local").check()
            page.locator("#ab-no-local").wait_for(state="visible")
            look(page, shots, "campaign-ab")

            # 4. A local-time campaign: the schedule form's second choice, then its buckets.
            cid = drafts.create_draft(engine, config, drafts.DraftRequest(
                sources=[str(ARTICLES)], since="2026-11-01", until="2026-11-30", limit=3, subject="Weekly", lists=["weekly"])).id
            page.goto(f"{live.url}/admin/campaigns/{cid}")
            assert page.locator("#when").is_visible() and not page.locator("#local_time").is_visible()
            page.locator("#mode-local").check()
            page.locator("#local_time").wait_for(state="visible")
            assert not page.locator("#when").is_visible()
            day = (datetime.now(UTC) + timedelta(days=10)).date()
            page.locator("#local_time").fill("08:00")
            page.locator("#local_date").fill(day.isoformat())
            page.locator("#window").fill("2h")
            page.locator("#past").select_option("skip")
            look(page, shots, "campaign-schedule-local")
            page.locator("#schedule-form button[type=submit]").click()
            page.locator("#lt-unplanned").wait_for(state="visible")
            assert page.locator("#status").inner_text() == "scheduled"
            assert get_campaign(engine, cid).meta["local_time"]["past"] == "skip"
            # A worker, its clock at Kiritimati's 08:00 (UTC+14), sends the first bucket.
            first = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) - timedelta(hours=14)
            with SMTPTestServer() as srv:
                run_worker(engine, config, once=True, now=first + timedelta(seconds=30), smtp=srv.url)
                assert [r for m in srv.received() for r in m.rcpt_tos] == ["reader0@example.com"]
            page.reload()
            page.locator("#buckets-table").wait_for(state="visible")
            assert page.locator("[data-buckets=done]").inner_text() == "1"
            assert page.locator("[data-buckets=to_come]").inner_text() == "3"
            assert page.locator("#buckets-table tbody tr").count() == 4
            look(page, shots, "campaign-local-time")
    finally:
        context.close()
        engine.dispose()
