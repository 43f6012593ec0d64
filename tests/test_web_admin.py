"""Admin pages over HTTP (local client, no auth configured): subscribers, import, lists,
campaigns with pause/resume/cancel/schedule, preview of a campaign. Every form needs its CSRF token."""

from __future__ import annotations

import re
from pathlib import Path
from datetime import datetime, timezone

import pytest
from fastapi.testclient import TestClient

from fixtures.web.harness import ARTICLES
from newsletter.config import Config
from newsletter.store import lists as store_lists
from newsletter.store import subscribers as subs
from newsletter.store import suppressions as supp
from newsletter.store.db import get_engine, upgrade
from newsletter.web import create_app

SECRET = "test-secret-key-0123456789"


@pytest.fixture
def config(tmp_path):
    url = f"sqlite:///{tmp_path / 'web.db'}"
    upgrade(url)
    return Config(database_url=url, secret_key=SECRET, sources=[str(ARTICLES)], timezone="Europe/Lisbon",
                  outbox=str(tmp_path / "outbox"))


@pytest.fixture
def engine(config):
    engine = get_engine(config.database_url)
    store_lists.create_list(engine, "weekly", "The Weekly", opt_in="single")
    yield engine
    engine.dispose()


@pytest.fixture
def client(config, engine):
    with TestClient(create_app(config, engine), base_url="http://127.0.0.1:8000", client=("127.0.0.1", 5000),
                    follow_redirects=False) as c:
        yield c


def token(client, url="/admin/subscribers"):
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(url).text).group(1)


def test_subscribers_search_pagination_add_unsubscribe_erase(client, engine):
    for i in range(55):
        subs.add_subscriber(engine, f"r{i:02d}@example.com", list_slug="weekly")
    page1 = client.get("/admin/subscribers", params={"list": "weekly"}).text
    assert "55 found" in page1 and "Page 1 of 2" in page1 and "r00@example.com" in page1 and "r54@example.com" not in page1
    assert "r54@example.com" in client.get("/admin/subscribers", params={"list": "weekly", "page": 2}).text
    found = client.get("/admin/subscribers", params={"q": "r07@"}).text
    assert "1 found" in found and "weekly: active" in found

    t = token(client)
    r = client.post("/admin/subscribers/add", data={"email": "new@example.com", "name": "New", "list": "weekly", "csrf_token": t})
    assert r.status_code == 303
    assert subs.get_subscriber(engine, "new@example.com").lists == {"weekly": "active"}
    assert client.post("/admin/subscribers/add", data={"email": "bad", "list": "weekly", "csrf_token": t}).status_code == 400

    r = client.post("/admin/subscribers/unsubscribe", data={"email": "new@example.com", "list": "", "csrf_token": t})
    assert r.status_code == 303
    assert "new@example.com unsubscribed from weekly" in client.get(r.headers["location"]).text
    assert subs.get_subscriber(engine, "new@example.com").lists == {"weekly": "unsubscribed"}

    confirm = client.get("/admin/subscribers/erase", params={"email": "r01@example.com"})
    assert confirm.status_code == 200 and "cannot be undone" in confirm.text
    assert client.post("/admin/subscribers/erase", data={"email": "r01@example.com"}).status_code == 403
    assert client.post("/admin/subscribers/erase", data={"email": "r01@example.com", "suppress": "1", "csrf_token": t}).status_code == 303
    assert supp.find_suppression(engine, "r01@example.com") is not None
    assert client.get("/admin/subscribers/erase", params={"email": "r01@example.com"}).status_code == 404


def test_import_csv_shows_the_report(client, engine):
    t = token(client, "/admin/subscribers/import")
    csv = b"email,name,city\nana@example.com,Ana,Porto\nbad-address,Bad,\nANA@example.com,Ana again,\nben@example.com,Ben,Oslo\n"
    r = client.post("/admin/subscribers/import", data={"list": "weekly", "csrf_token": t},
                    files={"file": ("people.csv", csv, "text/csv")})
    assert r.status_code == 303, r.text  # step 2: the mapping, nothing imported yet
    mapping = client.get(r.headers["location"])
    assert mapping.status_code == 200 and "Porto" in mapping.text and subs.list_subscribers(engine).total == 0
    r = client.post(r.headers["location"], data={"csrf_token": t, "list": "weekly", "map_0": "email", "map_1": "name",
                                                 "map_2": "attr:city", "confirmed": "ask"})
    assert r.status_code == 303, r.text
    page = client.get(r.headers["location"]).text
    report = page[page.index('id="report"'):]
    assert re.search(r"read</th><td>4<", report) and re.search(r"added</th><td>2", report)
    assert re.search(r"skipped: invalid</th><td>1<", report) and "line 3: bad-address" in report
    assert subs.get_subscriber(engine, "ana@example.com").attributes == {"city": "Porto"}
    # A file that is not CSV changes nothing and says why, on the import page.
    r = client.post("/admin/subscribers/import", data={"list": "weekly", "csrf_token": t},
                    files={"file": ("people.csv", b"\xff\xfe\x00garbage", "text/csv")})
    assert r.status_code == 400 and "Traceback" not in r.text and 'action="/admin/subscribers/import"' in r.text
    assert subs.list_subscribers(engine).total == 2


def test_lists_page_creates_a_list(client, engine):
    t = token(client, "/admin/lists")
    r = client.post("/admin/lists", data={"slug": "daily", "name": "Daily", "opt_in": "double", "csrf_token": t})
    assert r.status_code == 303
    assert "/subscribe/daily" in client.get("/admin/lists").text
    assert client.post("/admin/lists", data={"slug": "Bad Slug!", "csrf_token": t}).status_code == 400
    assert client.post("/admin/lists", data={"slug": "daily", "csrf_token": t}).status_code in (400, 409)


@pytest.fixture
def campaign(config, engine):
    from newsletter.compose import ComposeOptions, compose
    from newsletter.dispatch.campaigns import create_campaign

    subs.add_subscriber(engine, "reader@example.com", list_slug="weekly")
    return create_campaign(engine, compose(config.sources, config, ComposeOptions()), ["weekly"], config)


def test_campaign_pages_schedule_and_cancel(client, engine, campaign):
    from newsletter.dispatch.campaigns import get_campaign

    listing = client.get("/admin/campaigns").text
    assert f'href="/admin/campaigns/{campaign.id}"' in listing and "draft" in listing
    page = client.get(f"/admin/campaigns/{campaign.id}").text
    assert "Schedule" in page and 'id="progress"' in page and "Pause" not in page
    t = token(client, f"/admin/campaigns/{campaign.id}")
    r = client.post(f"/admin/campaigns/{campaign.id}/schedule", data={"when": "2031-01-02T09:30", "csrf_token": t})
    assert r.status_code == 303
    c = get_campaign(engine, campaign.id)
    assert c.status == "scheduled" and c.scheduled_at == datetime(2031, 1, 2, 9, 30, tzinfo=timezone.utc)  # Lisbon = UTC in winter
    assert client.post(f"/admin/campaigns/{campaign.id}/schedule", data={"when": "next tuesday", "csrf_token": t}).status_code == 400
    past = client.post(f"/admin/campaigns/{campaign.id}/schedule", data={"when": "2020-01-01T08:00", "csrf_token": t})
    assert past.status_code == 400 and "past" in past.text
    assert get_campaign(engine, campaign.id).scheduled_at == datetime(2031, 1, 2, 9, 30, tzinfo=timezone.utc)
    assert "Pause" in client.get(f"/admin/campaigns/{campaign.id}").text  # a scheduled campaign can be held
    assert client.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": t}).status_code == 303
    assert get_campaign(engine, campaign.id).status == "paused"
    page = client.get(f"/admin/campaigns/{campaign.id}").text
    assert "Web version" not in page  # never sent: nothing in the archive
    assert client.post(f"/admin/campaigns/{campaign.id}/resume", data={"csrf_token": t}).status_code == 303
    assert get_campaign(engine, campaign.id).status == "scheduled"  # back on its schedule, not sent now
    assert client.post(f"/admin/campaigns/{campaign.id}/explode", data={"csrf_token": t}).status_code == 404
    assert client.post(f"/admin/campaigns/{campaign.id}/cancel", data={}).status_code == 403
    assert client.post(f"/admin/campaigns/{campaign.id}/cancel", data={"csrf_token": t}).status_code == 303
    assert get_campaign(engine, campaign.id).status == "cancelled"
    api = client.get(f"/api/campaigns/{campaign.id}").json()
    assert api["status"] == "cancelled" and api["total"] >= 0


def test_campaign_pause_resume_while_running(client, engine, campaign):
    from newsletter.dispatch.campaigns import get_campaign, transition
    from newsletter.store.db import transaction

    with transaction(engine) as conn:  # as a sender does when it starts
        transition(conn, campaign.id, "running")
    t = token(client, f"/admin/campaigns/{campaign.id}")
    assert client.post(f"/admin/campaigns/{campaign.id}/pause", data={"csrf_token": t}).status_code == 303
    assert get_campaign(engine, campaign.id).status == "paused"
    page = client.get(f"/admin/campaigns/{campaign.id}").text
    assert "Resume" in page
    # started, but no copy delivered yet: not in the public archive, and the page says why
    assert f'href="/archive/{campaign.id}">Web version</a>' not in page and "no copy has been delivered" in page
    assert client.post(f"/api/campaigns/{campaign.id}/resume").json()["status"] == "running"


def test_preview_of_a_campaign_snapshot(client, campaign):
    page = client.get("/admin/preview", params={"campaign": campaign.id}).text
    assert f"campaign {campaign.id}" in page and "In praise of small tools" in page
    frame = client.get(f"/admin/preview/{campaign.id}/frame", params={"variant": "html"})
    assert frame.status_code == 200 and "script-src" not in frame.headers["content-security-policy"]
    assert "default-src 'none'" in frame.headers["content-security-policy"]
    assert "*|UNSUBSCRIBE_URL|*" not in frame.text
    images = re.findall(rf'src="(/admin/preview/{campaign.id}/cid/[^"]+)"', frame.text)
    assert images, "the frozen thumbnail is served by the preview"
    img = client.get(images[0])
    assert img.status_code == 200 and img.headers["content-type"].startswith("image/")
    assert client.get("/admin/preview", params={"campaign": "999"}).status_code == 404
    assert client.get("/admin/preview/999/frame").status_code == 404
    assert client.get("/admin/preview/abc/frame").status_code == 404


def test_dashboard_and_error_pages(client):
    r = client.get("/admin/")
    assert "subscribers" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"] and r.headers["x-frame-options"] == "DENY"
    r = client.get("/admin/nope")
    assert r.status_code == 404 and "<h1>" in r.text
    assert client.get("/api/nope").json()["status"] == 404


def test_preview_of_a_stored_recurring_digest_uses_its_own_sources_template_and_subject(client, config, engine, tmp_path):
    """?digest=NAME shows the next occurrence as the worker would compose it — not the configured
    sources — and sends a test of it."""
    import shutil

    from newsletter.schedule import digests as dg
    from newsletter.schedule import occurrences as occ

    articles = tmp_path / "harbour"
    articles.mkdir()
    for slug, day in (("quay-lights", 26), ("ferry-timetable", 27)):
        (articles / f"{slug}.md").write_text(
            f"---\ntitle: {slug.replace('-', ' ').title()}\ndate: 2026-11-{day}T09:00:00+01:00\n"
            f"url: https://harbour.example.org/{slug}\n---\n\nNews about the {slug.replace('-', ' ')}.\n", encoding="utf-8")
    template = tmp_path / "template"
    shutil.copytree(Path(__file__).resolve().parent.parent / "templates", template)
    (template / "digest.txt").write_text((template / "digest.txt").read_text() + "\nHARBOUR-TEMPLATE-MARK\n")
    dg.add_digest(engine, config, dg.DigestSpec(
        name="harbour weekly", schedule="weekly mon 08:00", timezone="Europe/Paris", sources=[str(articles)],
        lists=["weekly"], template_dir=str(template), subject="Harbour notes — {{ date }}"),
        now=datetime(2026, 11, 24, 12, tzinfo=timezone.utc))

    page = client.get("/admin/preview", params={"digest": "harbour weekly"})
    assert page.status_code == 200, page.text
    assert "Harbour notes — 30 November 2026" in page.text  # its subject, for its next occurrence
    assert "recurring digest harbour weekly, occurrence 2026-11-30 08:00 CET" in page.text
    key = re.search(r'/admin/preview/(digest-\d+)/frame', page.text).group(1)
    html = client.get(f"/admin/preview/{key}/frame", params={"variant": "html"}).text
    assert "Quay Lights" in html and "Ferry Timetable" in html
    assert "In praise of small tools" not in html  # the configured sources are not this digest's
    text = client.get(f"/admin/preview/{key}/frame", params={"variant": "text"}).text
    assert "HARBOUR-TEMPLATE-MARK" in text  # its own template
    assert "?digest=harbour+weekly" in client.get("/admin/preview").text  # offered on the preview page

    t = token(client, "/admin/preview")
    r = client.post("/admin/preview/test-send", data={"to": "me@example.com", "digest": "harbour weekly", "csrf_token": t})
    assert r.status_code == 303 and r.headers["location"] == "/admin/preview?digest=harbour+weekly"
    [eml] = list(Path(config.outbox).glob("*.eml"))
    sent = eml.read_text(encoding="utf-8", errors="replace")
    assert "[TEST] Harbour notes" in sent and "HARBOUR-TEMPLATE-MARK" in sent

    # Once an occurrence has sent them, the next one has nothing new: the preview says it would be skipped.
    occ.run_due_digests(engine, config, now=datetime(2026, 11, 30, 7, 0, 5, tzinfo=timezone.utc))
    page = client.get("/admin/preview", params={"digest": "harbour weekly"}).text
    assert "would be skipped" in page and "Quay Lights" not in page
    assert client.get("/admin/preview", params={"digest": "nope"}).status_code == 404
    assert client.get("/admin/preview/digest-999/frame").status_code == 404
