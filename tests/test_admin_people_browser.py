"""A publisher's round of the people pages in Debian's chromium against uvicorn on 127.0.0.1:
create a list, import a CSV choosing what its columns mean, open a subscriber, edit them,
unsubscribe them (after the confirm step), export the filtered listing. Every page visited is
checked with axe-core (WCAG 2 A/AA: no serious or critical violation) and photographed at
1280 and 390 px wide (into $NEWSLETTER_SCREENSHOTS when set, else the test's temporary folder)."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from fixtures.web.harness import LiveServer, admin_context, browser, free_port, look, screenshots  # noqa: F401  (fixtures)

from newsletter.config import Config
from newsletter.store import subscribers
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

pytestmark = pytest.mark.browser
SECRET = "test-secret-key-0123456789"
CSV = ("Correo,Nombre,Apellido,Ciudad,Estado\n"
       "ana@example.com,Ana,Silva,Porto,subscribed\n"
       "bo@example.com,Bo,Berg,Oslo,subscribed\n"
       "not-an-address,X,Y,Z,subscribed\n"
       "cy@example.com,Cy,,Lyon,unsubscribed\n")


def test_a_publisher_manages_people(tmp_path, browser):  # noqa: F811
    shots = screenshots(tmp_path, "admin-people")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    port = free_port()
    config = Config(database_url=url, secret_key=SECRET, base_url=f"http://127.0.0.1:{port}", outbox=str(tmp_path / "outbox"))
    (tmp_path / "people.csv").write_text(CSV, encoding="utf-8")
    context = admin_context(browser, accept_downloads=True)
    page = context.new_page()

    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            # 1. Create a double-opt-in list.
            page.goto(live.url + "/admin/lists")
            page.get_by_label("Slug").fill("weekly")
            page.get_by_label("Name", exact=True).fill("The Weekly")
            page.get_by_label("Opt-in").select_option("double")
            page.get_by_role("button", name="Create list").click()
            page.get_by_text("List weekly created").wait_for()
            look(page, shots, "lists")

            # 2. Import a CSV whose headers are in Spanish: map them, keep "subscribed" rows confirmed.
            page.get_by_role("link", name="Import into The Weekly").click()
            look(page, shots, "import-upload")
            page.get_by_label("CSV or JSON Lines file").set_input_files(str(tmp_path / "people.csv"))
            page.get_by_role("button", name="Upload and map columns…").click()
            page.get_by_role("heading", name="Map the columns of people.csv").wait_for()
            assert subscribers.list_subscribers(engine).total == 0  # nothing imported before the mapping
            page.get_by_label("Correo").select_option("email")
            page.get_by_label("Nombre").select_option("first_name")
            page.get_by_label("Apellido").select_option("last_name")
            page.get_by_label("Estado").select_option("status")
            assert page.get_by_label("Ciudad").input_value() == "attr:Ciudad"
            page.get_by_label("Keep them confirmed").check()
            look(page, shots, "import-mapping")
            page.get_by_role("button", name="Import", exact=True).click()
            report = page.locator("#report")
            report.wait_for()
            assert "added" in report.inner_text() and page.locator("#rejects").is_visible()
            with page.expect_download() as dl:
                page.locator("#rejects").click()
            assert "not-an-address" in Path(dl.value.path()).read_text(encoding="utf-8")
            look(page, shots, "import-report")
            ana = subscribers.get_subscriber(engine, "ana@example.com")
            assert (ana.name, ana.attributes, ana.lists) == ("Ana Silva", {"Ciudad": "Porto"}, {"weekly": "active"})
            assert subscribers.get_subscriber(engine, "cy@example.com").lists == {"weekly": "unsubscribed"}

            # 3. Open a subscriber from the listing and edit them.
            page.get_by_role("link", name="See the list's subscribers").click()
            look(page, shots, "subscribers")
            page.get_by_role("link", name="bo@example.com", exact=True).click()
            page.get_by_role("heading", name="bo@example.com").wait_for()
            look(page, shots, "subscriber")
            page.get_by_label("Name", exact=True).fill("Bo Berg-Olsen")
            page.get_by_role("textbox", name="Attributes").fill("Ciudad = Bergen\nplan = gold")
            page.get_by_role("button", name="Save").click()
            page.get_by_text("Saved.").wait_for()
            bo = subscribers.get_subscriber(engine, "bo@example.com")
            assert (bo.name, bo.attributes) == ("Bo Berg-Olsen", {"Ciudad": "Bergen", "plan": "gold"})

            # 4. Unsubscribe, with a confirm step first.
            page.get_by_role("link", name="Unsubscribe from weekly").click()
            page.get_by_role("heading", name="Unsubscribe bo@example.com from weekly?").wait_for()
            look(page, shots, "unsubscribe-confirm")
            assert subscribers.get_subscriber(engine, "bo@example.com").lists == {"weekly": "active"}
            page.get_by_role("button", name="Unsubscribe", exact=True).click()
            page.get_by_text("bo@example.com unsubscribed from weekly.").wait_for()
            assert subscribers.get_subscriber(engine, "bo@example.com").lists == {"weekly": "unsubscribed"}

            # 5. Export the filtered listing.
            page.goto(live.url + "/admin/subscribers?list=weekly&status=active")
            with page.expect_download() as dl:
                page.get_by_role("link", name="Export these as CSV").click()
            rows = list(csv.reader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
            assert [r[0] for r in rows[1:]] == ["ana@example.com"] and dl.value.suggested_filename == "subscribers-weekly-active.csv"

            # The other pages of this half: suppressions, settings, an error inside the admin.
            page.goto(live.url + "/admin/suppressions")
            look(page, shots, "suppressions")
            page.goto(live.url + "/admin/settings")
            look(page, shots, "settings")
            page.goto(live.url + "/admin/subscribers/person?email=nobody@example.com")
            assert page.get_by_role("navigation", name="Admin").is_visible()
            look(page, shots, "error")
    finally:
        context.close()
        engine.dispose()
