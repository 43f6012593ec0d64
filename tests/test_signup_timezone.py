"""The signup form's time zone (for local-time campaigns): the browser's IANA zone in a hidden
field (static/signup.js), checked on the server, stored for a new address only; the form still
works without JavaScript. Real chromium with a chosen zone (Playwright ``timezone_id``) and
without JavaScript, against uvicorn on 127.0.0.1; TestClient for the server-side checks.
"""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from fixtures.web.harness import LiveServer, browser, free_port  # noqa: F401  (fixtures)
from test_web_public import app, assert_clean_error, client, config, csrf, engine, idle  # noqa: F401  (fixtures)

from newsletter.store import subscribers as subs
from newsletter.web import create_app


def zone_of(engine, email: str):
    with engine.connect() as conn:
        return conn.execute(sa.text("select timezone from subscribers where email_key = :e"), {"e": email}).scalar()


def test_a_known_zone_is_stored_for_a_new_address(client, engine):
    token = csrf(client, "/subscribe/weekly")
    r = client.post("/subscribe/weekly", data={"email": "ana@example.com", "timezone": "Asia/Tokyo", "csrf_token": token})
    assert r.status_code == 200
    idle(client)
    assert zone_of(engine, "ana@example.com") == "Asia/Tokyo"


def test_an_unknown_zone_is_a_400_naming_it_and_stores_nothing(client, engine):
    token = csrf(client, "/subscribe/weekly")
    for bad in ("Mars/Olympus", "../../etc/passwd", "Europe/Paris\r\nBcc: x@example.com"):
        r = client.post("/subscribe/weekly", data={"email": "bob@example.com", "timezone": bad, "csrf_token": token})
        assert_clean_error(r, 400)
        assert "time zone" in r.text
    assert "Mars/Olympus" in client.post("/subscribe/weekly", data={
        "email": "bob@example.com", "timezone": "Mars/Olympus", "csrf_token": token}).text
    idle(client)
    assert subs.list_subscribers(engine).total == 0


def test_a_known_address_keeps_its_zone(client, engine):
    """The form is no consent (anyone can fill it in): it changes nothing stored about a known person."""
    subs.add_subscriber(engine, "known@example.com", list_slug="news")
    token = csrf(client, "/subscribe/weekly")
    client.post("/subscribe/weekly", data={"email": "known@example.com", "timezone": "Asia/Tokyo", "csrf_token": token})
    idle(client)
    assert zone_of(engine, "known@example.com") is None


@pytest.fixture
def live(config, engine):  # noqa: F811
    with LiveServer(create_app(config, engine)) as srv:
        yield srv


def _sign_up(browser, live, email: str, **context) -> None:  # noqa: F811
    ctx = browser.new_context(**context)
    ctx.set_default_timeout(20_000)
    page = ctx.new_page()
    try:
        page.goto(live.url + "/subscribe/weekly")
        page.get_by_label("Email address").fill(email)
        page.get_by_role("button", name="Subscribe").click()
        assert page.locator("h1").inner_text()  # the answer page
    finally:
        ctx.close()


@pytest.mark.browser
def test_the_browser_sends_its_zone_and_the_form_works_without_javascript(browser, live, engine):  # noqa: F811
    _sign_up(browser, live, "tokyo@example.com", timezone_id="Asia/Tokyo")
    _sign_up(browser, live, "nojs@example.com", timezone_id="America/New_York", java_script_enabled=False)
    assert live.server.config.app.state.web.mailer.wait_ran(2, 15), "the signup queue did not run"
    assert zone_of(engine, "tokyo@example.com") == "Asia/Tokyo"
    assert zone_of(engine, "nojs@example.com") is None  # no script: the list's or the config's zone applies
    assert subs.get_subscriber(engine, "nojs@example.com").lists == {"weekly": "active"}
