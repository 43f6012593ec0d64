"""Tracking seen from a real browser: a reader opens a sent copy in Debian's chromium and clicks a
story, "Apple" pre-fetches another copy's pixel, "a scanner" follows every link of a third; the
report counts 1 human open and 1 human click with the machines apart — in the CLI, the API and
the admin page, whose charts are drawn (light and dark) with the numbers beside them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from fixtures.web.harness import LiveServer, browser, free_port  # noqa: F401  (fixtures)
from test_engagement import CHROME, _copies, _digest
from newsletter.dispatch.sender import send_campaign
from newsletter.web import create_app

pytestmark = pytest.mark.browser


@pytest.fixture
def reader_page(browser):  # noqa: F811
    """A chromium page that presents itself as the desktop browser it is: headless chromium says
    "HeadlessChrome", which the scanner rule rightly takes for a machine."""
    ua = browser.new_page().evaluate("navigator.userAgent").replace("HeadlessChrome", "Chrome")
    context = browser.new_context(viewport={"width": 1280, "height": 1000}, user_agent=ua)
    context.set_default_timeout(20_000)
    yield context.new_page()
    context.close()


def test_a_reader_apple_and_a_scanner_are_told_apart_end_to_end(tmp_path, reader_page, monkeypatch, capsys):
    from cli_runner import run_main

    page = reader_page
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    config = make_config(url, tmp_path, base_url=base, allow_local_links=True, scanner_seconds=0)
    add_people(engine, "weekly", 3)
    c = make_campaign(engine, config, digest=_digest(), track="opens,clicks")
    send_campaign(engine, c.id, config)
    (reader, html_r), (_, html_apple), (_, html_scan) = sorted(_copies(Path(config.outbox)).items())
    shots = tmp_path / "screenshots"
    shots.mkdir()

    with LiveServer(create_app(config, engine), port=port) as live:
        # The reader: the copy opened in chromium (its images load: the pixel), then a story clicked.
        page.route("https://example.org/**", lambda route: route.fulfill(
            status=200, content_type="text/html", body="<title>The story</title><h1>The story</h1>"))
        copy = tmp_path / "copy.html"
        copy.write_text(html_r, encoding="utf-8")
        with page.expect_response(lambda r: "/o/" in r.url) as pixel:
            page.goto(copy.as_uri())
        assert pixel.value.status == 200
        page.get_by_role("link", name="Story").click()
        page.wait_for_url("https://example.org/story")
        assert page.title() == "The story"
        # Apple's Mail Privacy Protection fetches the second copy's pixel; a scanner follows
        # every link of the third (the hidden canary too).
        with httpx.Client(base_url=base, timeout=10) as client:
            pix = re.search(rf'src="{re.escape(base)}(/o/[\w-]+\.gif)"', html_apple).group(1)
            assert client.get(pix, headers={"user-agent": "Mozilla/5.0"}).status_code == 200
            for link in re.findall(rf'href="{re.escape(base)}(/r/[\w-]+)"', html_scan):
                assert client.get(link, headers={"user-agent": CHROME}).status_code == 303
            live.server.config.app.state.hits.flush()
            api = client.get(f"/api/campaigns/{c.id}/report").json()

        assert api["opens"]["readers"] == {"human": 1, "apple-mpp": 1, "proxy": 0, "scanner": 0}
        assert api["clicks"]["readers"]["human"] == 1 and api["clicks"]["readers"]["scanner"] == 1
        assert api["clicks"]["events"]["human"] == 1 and api["click_to_open"] == 1.0
        cli = run_main(monkeypatch, capsys, ["--db", url, "campaigns", "report", str(c.id), "--format", "json"])
        assert cli.returncode == 0
        assert json.loads(cli.stdout)["opens"]["readers"] == api["opens"]["readers"]

        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.set_viewport_size({"width": 1280, "height": 1000})
            page.goto(f"{base}/admin/campaigns/{c.id}")
            assert page.locator('[data-agent="opens-human"]').inner_text() == "1"
            assert page.locator('[data-agent="opens-apple-mpp"]').inner_text() == "1"
            assert page.locator('[data-agent="clicks-human"]').inner_text() == "1"
            assert page.locator('[data-agent="clicks-scanner"]').inner_text() == "1"
            page.wait_for_selector("#chart-timeline canvas")
            page.wait_for_selector("#chart-links canvas")
            # uPlot drew series with data: its legend shows the series and the canvas is not blank.
            assert page.locator("#chart-timeline .u-legend").inner_text().count("(people)") == 2
            for chart in ("#chart-timeline", "#chart-links"):  # painted pixels: not an empty chart
                painted = page.evaluate("""sel => { const c = document.querySelector(sel + ' canvas');
                    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                    let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""", chart)
                assert painted > 300, (chart, painted)
            page.screenshot(path=str(shots / f"campaign-{scheme}-1280.png"), full_page=True)
            page.set_viewport_size({"width": 390, "height": 900})
            page.goto(f"{base}/admin/campaigns/{c.id}")
            page.wait_for_selector("#chart-links canvas")
            assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scroll
            page.screenshot(path=str(shots / f"campaign-{scheme}-390.png"), full_page=True)


def test_the_dashboard_shows_list_growth_and_the_last_campaigns_side_by_side(tmp_path, reader_page):
    page = reader_page
    port = free_port()
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    config = make_config(url, tmp_path, base_url=f"http://127.0.0.1:{port}", allow_local_links=True)
    add_people(engine, "weekly", 4)
    c = make_campaign(engine, config, digest=_digest(), track="opens")
    send_campaign(engine, c.id, config)
    with LiveServer(create_app(config, engine), port=port) as live:
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.goto(live.url + "/admin/")
            row = page.locator("#growth-table tbody tr").first
            assert row.locator("td").nth(1).inner_text() == "4"  # this week: 4 subscribed
            assert "The Weekly" in page.locator("#campaigns-compare").inner_text()
            assert page.locator("#campaigns-compare tbody tr td").nth(1).inner_text() == "4"
            page.wait_for_selector("#chart-growth canvas")
            page.screenshot(path=str(tmp_path / f"dashboard-{scheme}.png"), full_page=True)
