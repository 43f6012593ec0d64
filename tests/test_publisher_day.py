"""A publisher's whole day through the browser only (issue 15's end-to-end test), in Debian's
chromium against uvicorn on 127.0.0.1 and a real SMTP server: create a list, import a CSV with
a column mapping, compose a campaign from the preview with an editor's note, send a test,
schedule it and be told no worker runs, start a worker, watch the progress move without a
reload, and read the finished report. Every page is checked with axe-core and photographed at
1280 and 390 px (into $NEWSLETTER_SCREENSHOTS when set, else the test's temporary folder; the
README's two pictures come from here)."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fixtures.web.harness import ARTICLES, LiveServer, admin_context, browser, free_port, look, screenshots  # noqa: F401  (fixtures)
from smtp_server import SMTPTestServer
from test_admin_campaigns_browser import Gate

from newsletter.config import Config, SMTPServer
from newsletter.web import create_app

pytestmark = pytest.mark.browser
UTC = timezone.utc
ZONE = "Europe/Lisbon"
READERS = ["ana@example.com", "bo@example.com", "cy@example.com", "di@example.com", "ed@example.com"]
CSV = ("Email Address,First Name,Last Name,Town,Status\n"
       + "".join(f"{a},{a.split('@')[0].title()},Example,Porto,subscribed\n" for a in READERS)
       + "not-an-address,X,Y,Z,subscribed\n")


def test_a_publishers_day_in_the_browser(tmp_path, browser):  # noqa: F811
    from newsletter.schedule.worker import run_worker
    from newsletter.store.db import get_engine, upgrade

    shots = screenshots(tmp_path, "publisher-day")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    (tmp_path / "readers.csv").write_text(CSV, encoding="utf-8")
    port = free_port()
    stop = threading.Event()
    worker: threading.Thread | None = None
    events: list[str] = []

    with SMTPTestServer() as smtp:
        config = Config(database_url=url, secret_key="test-secret-key-0123456789", base_url=f"http://127.0.0.1:{port}",
                        from_address="The Weekly <news@example.org>", smtp={"test": SMTPServer(name="test", url=smtp.url)},
                        allow_local_links=True, sources=[str(ARTICLES)], timezone=ZONE, concurrency=1)
        context = admin_context(browser)
        page = context.new_page()

        try:
            with LiveServer(create_app(config, engine), port=port) as live:
                # 1. A double opt-in list.
                page.goto(live.url + "/admin/lists")
                page.get_by_label("Slug").fill("weekly")
                page.get_by_label("Name", exact=True).fill("The Weekly")
                page.get_by_label("Opt-in").select_option("double")
                page.get_by_role("button", name="Create list").click()
                page.get_by_text("List weekly created").wait_for()
                look(page, shots, "1-lists")

                # 2. Import a file from another tool: its columns are mapped by their names; its people
                # confirmed there, so they stay confirmed with the file as consent evidence.
                page.get_by_role("link", name="Import into The Weekly").click()
                page.get_by_label("CSV or JSON Lines file").set_input_files(str(tmp_path / "readers.csv"))
                page.get_by_role("button", name="Upload and map columns…").click()
                page.get_by_role("heading", name="Map the columns of readers.csv").wait_for()
                assert page.get_by_label("Email Address").input_value() == "email"
                assert page.get_by_label("First Name").input_value() == "first_name"
                assert page.get_by_label("Town").input_value() == "attr:Town"
                assert page.get_by_label("Status").input_value() == "status"
                page.get_by_label("Keep them confirmed").check()
                look(page, shots, "2-import-mapping")
                page.get_by_role("button", name="Import", exact=True).click()
                page.locator("#report").wait_for()
                assert page.locator("#rejects").is_visible()
                look(page, shots, "3-import-report")

                # 3. Compose from the preview: a date range, at most five articles, a note.
                page.goto(live.url + "/admin/preview")
                page.locator("#make-campaign").click()
                page.wait_for_url("**/admin/campaigns/new")
                page.locator("#since").fill("2026-11-01T00:00")
                page.locator("#until").fill("2026-11-30")
                page.locator("#limit").fill("5")
                page.locator("#subject").fill("This week for *|FNAME|*")
                page.locator("#intro").fill("From the editor: the month's best reads, chosen by hand.")
                page.locator("input[name=lists][value=weekly]").check()
                page.locator("button[value=preview]").click()
                frame = page.frame_locator("iframe.compose-frame")
                assert frame.get_by_text("From the editor: the month's best reads").is_visible()
                look(page, shots, "4-campaign-new")
                page.locator("#create").click()
                page.wait_for_url("**/admin/campaigns/*")
                cid = page.url.rstrip("/").rsplit("/", 1)[-1]
                assert page.locator("#status").inner_text() == "draft"

                # 4. A test to the editor.
                page.locator("#test-to").fill("editor@example.org")
                page.locator("#test-form button").click()
                assert smtp.wait_for(1, timeout=15)
                assert smtp.received()[0].rcpt_tos == ["editor@example.org"]

                # 5. Scheduled in the publisher's zone; no worker runs, and the page says so.
                when = (datetime.now(UTC) + timedelta(hours=1)).astimezone(ZoneInfo(ZONE)).replace(second=0, microsecond=0)
                page.locator("#when").fill(when.strftime("%Y-%m-%dT%H:%M"))
                page.locator("#schedule-form button").click()
                assert page.locator("#status").inner_text() == "scheduled"
                assert "no worker is running" in page.locator("#standing").inner_text()
                look(page, shots, "5-campaign-scheduled")

                # 6. A worker starts (its clock past the time); the server holds all but two copies,
                # so the page is seen mid-send whatever the machine's speed.
                gate = Gate(smtp, allow=len(smtp.received()) + 2)
                smtp.behaviour.hold = gate
                worker = threading.Thread(target=run_worker, args=(engine, config), kwargs={
                    "poll_interval": 0.5, "stop_event": stop, "on_event": events.append,
                    "clock": lambda: datetime.now(UTC) + timedelta(hours=2)}, name="worker", daemon=True)
                worker.start()
                try:
                    page.wait_for_function("document.getElementById('status').textContent === 'running'", timeout=30_000)
                except Exception:
                    raise AssertionError(f"the worker said: {events}") from None
                try:
                    page.wait_for_function("document.querySelector('[data-count=sent]').textContent === '2'", timeout=30_000)
                except Exception:
                    with engine.begin() as conn:
                        rows = conn.exec_driver_sql("select state, count(*) from deliveries group by state").all()
                    raise AssertionError(f"{events} {len(smtp.received())} {rows} {page.locator('main').inner_text()}") from None
                assert "no worker" not in page.locator("#standing").inner_text()
                look(page, shots, "6-campaign-sending")

                # 7. The rest goes out; the finished report, every reader once.
                gate.open.set()
                page.wait_for_function("document.getElementById('status').textContent === 'finished'", timeout=30_000)
                assert page.locator("[data-count=sent]").inner_text() == str(len(READERS))
                assert "it took" in page.locator("#finished").inner_text()
                assert sorted(r for m in smtp.received()[1:] for r in m.rcpt_tos) == READERS
                first = next(m for m in smtp.received()[1:] if m.rcpt_tos == ["ana@example.com"]).message()
                assert str(first["Subject"]) == "This week for Ana"
                look(page, shots, "7-campaign-finished")
                page.goto(live.url + f"/admin/campaigns/{cid}")
                assert page.locator("#status").inner_text() == "finished"
        finally:
            stop.set()
            if worker is not None:
                worker.join(30)
            context.close()
            engine.dispose()
