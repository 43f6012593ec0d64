"""The segment builder in Debian's chromium against uvicorn on 127.0.0.1, with the page's real
Content-Security-Policy (no inline script: segments.js must work from /static): build a segment
from rows, watch the live count follow each edit (waiting on the count's text, never a timer),
add and remove a condition, see a store error in the form, save, open the members, edit, delete
after the confirm step. Every page is checked with axe-core (WCAG 2 A/AA: no serious or critical
violation) at 1280 and 390 px, in a second context that may inject axe."""

from __future__ import annotations

import json

import pytest
from playwright.sync_api import expect

from fixtures.web.harness import WIDTHS, LiveServer, admin_context, axe_problems, browser, free_port, screenshots  # noqa: F401  (fixtures)

from newsletter.config import Config
from newsletter.store import lists, segments, subscribers
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

pytestmark = pytest.mark.browser
SECRET = "test-secret-key-0123456789"


def test_a_publisher_builds_a_segment(tmp_path, browser):  # noqa: F811
    shots = screenshots(tmp_path, "segment-builder")
    url = f"sqlite:///{tmp_path / 'n.db'}"
    upgrade(url)
    engine = get_engine(url)
    lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    for email, age, city in [("ana@example.com", 34, "Lisbon"), ("bo@example.com", 9, "Porto"), ("cy@example.com", 70, "Lisbon")]:
        subscribers.add_subscriber(engine, email, list_slug="weekly", attributes={"age": age, "city": city}, source="test")
    port = free_port()
    config = Config(database_url=url, secret_key=SECRET, base_url=f"http://127.0.0.1:{port}", outbox=str(tmp_path / "outbox"))
    strict = browser.new_context(viewport={"width": 1280, "height": 900})  # the page's CSP applies
    strict.set_default_timeout(20_000)
    checker = admin_context(browser)  # may inject axe
    page, axe_page = strict.new_page(), checker.new_page()
    blocked: list[str] = []
    page.on("console", lambda m: blocked.append(m.text) if "Content Security Policy" in m.text else None)

    def look(name: str, go: bool = True) -> None:
        """axe-core at 1280 and 390 px on the page (its URL again in the checking context, unless
        ``go`` is False: that context's page as it is), with a screenshot of each."""
        if go:
            axe_page.goto(page.url)
        for width, height in WIDTHS:
            axe_page.set_viewport_size({"width": width, "height": height})
            assert axe_problems(axe_page) == [], f"{name} at {width}px"
            axe_page.screenshot(path=str(shots / f"{name}-{width}.png"), full_page=True)

    try:
        with LiveServer(create_app(config, engine), port=port) as live:
            page.goto(live.url + "/admin/segments")
            look("listing-empty")
            page.get_by_role("link", name="New segment").click()
            page.get_by_role("heading", name="New segment").wait_for()
            look("builder-new")
            matching = page.locator("#count-matching")
            page.locator("#name").fill("older")
            page.locator("#attr_0").fill("age")
            page.locator("#op_0").select_option("gt")
            page.locator("#value_0").fill("30")
            expect(matching).to_have_text("2")  # ana (34) and cy (70)
            expect(page.locator("#count-mailable")).to_have_text("2")
            page.locator("#value_0").fill("60")
            expect(matching).to_have_text("1")  # the count follows the edit
            assert json.loads(page.locator("#filter_json").input_value()) == {"attr": "age", "gt": 60}

            # A second condition, added and set by script: a field shows only its operators.
            page.get_by_role("button", name="Add a condition").click()
            page.locator("#field_1").select_option("attr")
            page.locator("#attr_1").fill("city")
            page.locator("#value_1").fill("Porto")
            expect(matching).to_have_text("0")  # all: over 60 and in Porto
            page.get_by_label("any of them").check()
            expect(matching).to_have_text("2")  # any: cy, or bo
            page.locator("#field_1").select_option("opened")
            assert page.locator("#attr_1").is_hidden() and page.locator("#op_1").input_value() == "within"
            page.get_by_role("button", name="Remove Condition 2").click()
            expect(matching).to_have_text("1")

            # A value the store refuses: the reason under the count, then in the form on save.
            page.locator("#op_0").select_option("within")
            expect(page.locator("#count-error")).to_contain_text("duration '60' is invalid")
            expect(matching).to_have_text("?")
            page.get_by_role("button", name="Save segment").click()
            page.get_by_role("alert").filter(has_text="Not saved").wait_for()
            assert page.locator("#value_0").input_value() == "60" and page.locator("#name").input_value() == "older"
            assert segments.list_segments(engine) == []
            axe_page.goto(live.url + "/admin/segments/new")  # the same refused form, in the checking context
            axe_page.locator("#name").fill("older")
            axe_page.locator("#attr_0").fill("age")
            axe_page.locator("#op_0").select_option("within")
            axe_page.locator("#value_0").fill("60")
            axe_page.get_by_role("button", name="Save segment").click()
            axe_page.get_by_role("alert").filter(has_text="Not saved").wait_for()
            look("builder-error", go=False)
            page.locator("#op_0").select_option("lt")
            expect(matching).to_have_text("2")  # 34 and 9
            page.get_by_role("button", name="Save segment").click()

            # Saved: the members, each linking to their page.
            page.get_by_role("heading", name="Segment older").wait_for()
            assert json.loads(segments.get_segment(engine, "older").filter) == {"attr": "age", "lt": 60}
            expect(page.locator("#members tbody tr")).to_have_count(2)
            look("members")
            page.get_by_role("link", name="bo@example.com").click()
            page.get_by_role("heading", name="bo@example.com").wait_for()

            # Edit: the rows come back as saved, with the count.
            page.goto(live.url + "/admin/segments/older/edit")
            assert page.locator("#attr_0").input_value() == "age" and page.locator("#value_0").input_value() == "60"
            expect(matching).to_have_text("2")
            look("builder-edit")

            # Delete, after the confirm step.
            page.goto(live.url + "/admin/segments")
            look("listing")
            page.get_by_role("link", name="Delete older").click()
            page.get_by_role("heading", name="Delete segment older?").wait_for()
            look("delete-confirm")
            assert segments.get_segment(engine, "older")
            page.get_by_role("button", name="Delete segment older").click()
            page.get_by_text("Segment older deleted").wait_for()
            assert segments.list_segments(engine) == []
            assert blocked == [], blocked
    finally:
        strict.close()
        checker.close()
        engine.dispose()
