"""A publisher's campaign from start to finish in Debian's chromium, against uvicorn on 127.0.0.1
and a real SMTP server: create a campaign from the preview with a date range and an editor's note,
send a test, schedule it and be told no worker runs, start a worker (the real loop in a thread,
its clock moved past the scheduled time), watch the progress move without reloading while the
SMTP server holds the rest of the copies, and read the finished report. Every page added is
checked with axe-core (no serious or critical WCAG 2 A/AA violation) and screenshot at 1280 and
390 px (into $NEWSLETTER_SCREENSHOTS, else the test's temporary folder)."""

from __future__ import annotations

import re
import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, admin_context, browser, free_port, look, screenshots  # noqa: F401  (fixtures)
from smtp_server import SMTPTestServer

from newsletter.config import Config, SMTPServer
from newsletter.web import create_app

pytestmark = pytest.mark.browser
UTC = timezone.utc
ZONE = "Europe/Paris"


class Gate:
    """The SMTP server's ``hold``: DATA is answered while fewer than ``allow`` messages arrived, or
    once ``open`` is set; later copies wait (the server polls ``is_set``)."""

    def __init__(self, smtp: SMTPTestServer, allow: int):
        self.smtp, self.allow, self.open = smtp, allow, threading.Event()

    def is_set(self) -> bool:
        return self.open.is_set() or len(self.smtp.received()) < self.allow


def test_a_campaign_from_the_preview_to_the_finished_report(tmp_path, browser):  # noqa: F811
    from newsletter.schedule.worker import run_worker
    from newsletter.store import lists, subscribers
    from newsletter.store.db import get_engine, upgrade

    shots = screenshots(tmp_path)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    readers = [f"reader{i}@example.com" for i in range(6)]
    for i, address in enumerate(readers):
        subscribers.add_subscriber(engine, address, list_slug="weekly", name=f"Reader{i} Example")
    port = free_port()
    stop = threading.Event()
    worker: threading.Thread | None = None
    with SMTPTestServer() as smtp:
        config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                        from_address="The Weekly <news@example.org>", smtp={"test": SMTPServer(name="test", url=smtp.url)},
                        allow_local_links=True, sources=[str(ARTICLES)], timezone=ZONE, concurrency=1)
        context = admin_context(browser)
        page = context.new_page()
        try:
            with LiveServer(create_app(config, engine), port=port) as live:
                # 1. From the preview to a new campaign: the defaults never take the whole archive.
                page.goto(live.url + "/admin/preview")
                page.locator("#make-campaign").click()
                page.wait_for_url("**/admin/campaigns/new")
                assert page.locator("#limit").input_value() == "10"
                assert page.locator("#since").input_value() != ""
                page.locator("#since").fill("2026-11-01T00:00")
                page.locator("#until").fill("2026-11-19")  # leaves out the article of 20 November
                page.locator("#limit").fill("5")
                page.locator("#subject").fill("This week for *|FNAME|*")
                page.locator("#intro").fill("A note from the editor: two good reads this week.\n\nEnjoy them.")
                page.locator("input[name=lists][value=weekly]").check()
                page.locator("button[value=preview]").click()
                assert page.locator("#preview-facts").inner_text().startswith("2 articles")
                assert page.locator("#preview-subject").inner_text() == "This week for Sam"
                frame = page.frame_locator("iframe.compose-frame")
                assert frame.get_by_text("A note from the editor: two good reads this week.").is_visible()
                look(page, shots, "campaign-new")
                page.locator("#create").click()
                page.wait_for_url("**/admin/campaigns/1")
                assert page.locator("#status").inner_text() == "draft"
                look(page, shots, "campaign-draft")

                # 2. A test to the editor, over the configured SMTP server.
                page.locator("#test-to").fill("editor@example.org")
                page.locator("#test-form button").click()
                assert "Test message sent to editor@example.org" in page.locator("main > .flash.ok").inner_text()
                assert smtp.wait_for(1, timeout=15)
                test = smtp.received()[0]
                assert test.rcpt_tos == ["editor@example.org"]
                assert str(test.message()["Subject"]).startswith("[TEST] This week for")
                assert "A note from the editor" in test.message().get_body(("plain",)).get_content()

                # 3. Scheduled in the publisher's time zone; no worker runs, and the page says so.
                when = (datetime.now(UTC) + timedelta(hours=1)).astimezone(ZoneInfo(ZONE)).replace(second=0, microsecond=0)
                page.locator("#when").fill(when.strftime("%Y-%m-%dT%H:%M"))
                page.locator("#schedule-form button").click()
                assert page.locator("#status").inner_text() == "scheduled"
                standing = page.locator("#standing").inner_text()
                assert standing == f"Scheduled for {when:%Y-%m-%d %H:%M} {ZONE} — no worker is running, start one with newsletter worker."
                look(page, shots, "campaign-scheduled")
                page.goto(live.url + "/admin/campaigns")
                assert "No worker is running" in page.locator("#workers").inner_text()
                look(page, shots, "campaigns-list")

                # 4. A worker starts (its clock past the scheduled time); the server takes two copies
                # and holds the rest, so the page is seen mid-send whatever the machine's speed.
                gate = Gate(smtp, allow=len(smtp.received()) + 2)
                smtp.behaviour.hold = gate
                page.goto(live.url + "/admin/campaigns/1")
                worker = threading.Thread(target=run_worker, args=(engine, config), kwargs={
                    "poll_interval": 0.5, "stop_event": stop, "on_event": lambda line: None,
                    "clock": lambda: datetime.now(UTC) + timedelta(hours=2)}, name="worker", daemon=True)
                worker.start()
                # The page's script notices the new status (scheduled → running) and the counts.
                page.wait_for_function("document.getElementById('status').textContent === 'running'", timeout=30_000)
                page.wait_for_function("document.querySelector('[data-count=sent]').textContent === '2'", timeout=30_000)
                page.wait_for_function("/messages\\/s/.test(document.getElementById('rate').textContent)", timeout=30_000)
                assert "to go" in page.locator("#eta").inner_text()
                assert "no worker" not in page.locator("#standing").inner_text()
                look(page, shots, "campaign-sending")
                # Two more copies: the numbers move without a reload.
                page.evaluate("window.__samePage = true")
                gate.allow += 2
                page.wait_for_function("document.querySelector('[data-count=sent]').textContent === '4'", timeout=30_000)
                assert page.locator("#progress-text").inner_text() == "4 of 6"
                assert page.evaluate("window.__samePage === true"), "the page reloaded to show progress"

                # 5. The rest goes out; the page shows the finished report.
                gate.open.set()
                page.wait_for_function("document.getElementById('status').textContent === 'finished'", timeout=30_000)
                assert page.locator("[data-count=sent]").inner_text() == "6"
                assert "it took" in page.locator("#finished").inner_text()
                assert re.fullmatch(r"\d+ s|\d+ min \d\d s", page.locator("#took").inner_text())
                assert page.locator("#standing").inner_text().startswith("Sent ")
                assert sorted(r for m in smtp.received()[1:] for r in m.rcpt_tos) == readers
                look(page, shots, "campaign-finished")

                # 6. Duplicate it as a new draft and open its editor with the choices made.
                page.locator("#duplicate").click()
                page.wait_for_url("**/admin/campaigns/2")
                page.locator("#edit").click()
                assert page.locator("#intro").input_value().startswith("A note from the editor")
                assert page.locator("#until").input_value() == "2026-11-19"
                look(page, shots, "campaign-edit")
        finally:
            stop.set()
            if worker is not None:
                worker.join(30)
            context.close()
            engine.dispose()


def test_a_recurring_digest_made_in_the_browser(tmp_path, browser):  # noqa: F811
    from newsletter.schedule.digests import show_digest
    from newsletter.store import lists
    from newsletter.store.db import get_engine, upgrade

    shots = screenshots(tmp_path)
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url="http://127.0.0.1:8000",
                    sources=[str(ARTICLES)], timezone=ZONE)
    context = admin_context(browser)
    page = context.new_page()
    try:
        with LiveServer(create_app(config, engine)) as live:
            page.goto(live.url + "/admin/campaigns")
            page.locator("#new-digest").click()
            page.wait_for_url("**/admin/digests/new")
            assert "No worker is running" in page.locator("#workers").inner_text()
            look(page, shots, "digest-new")
            page.locator("#name").fill("weekly")
            page.locator("#schedule").fill("every tuesday")  # not a schedule: the form comes back, filled
            page.locator("#subject").fill("The week — {{ date }}")
            page.locator("#save").click()
            assert page.locator("main > .flash.error").is_visible()
            assert page.locator("#subject").input_value() == "The week — {{ date }}"
            assert page.locator("nav[aria-label=Admin]").is_visible()
            look(page, shots, "digest-error")
            page.locator("#schedule").fill("weekly tue 09:00")
            page.locator("#save").click()
            page.wait_for_url("**/admin/campaigns#digests")
            assert show_digest(engine, "weekly").next_run_local.strftime("%a %H:%M") == "Tue 09:00"
            look(page, shots, "digests-list")
    finally:
        context.close()
        engine.dispose()
