"""A/B subject tests and local-time delivery from the web admin and the JSON API: the campaign
form's A/B section and the schedule form's "at each reader's local time" call the library
functions the CLI calls (``abtest.ab_spec``/``check_ab``, ``localtime.schedule_local_time``), keep
the values typed when they refuse, and store nothing then; the campaign page shows the test per
variant and the local-time buckets; a test send of an A/B campaign is one copy per variant, from
the page and from ``send --test``, through a real SMTP server on 127.0.0.1."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from email.header import decode_header, make_header

import pytest
from sqlalchemy import func, select

from smtp_server import SMTPTestServer
from test_admin_campaigns import client, count_campaigns, csrf, make_config, request, store  # noqa: F401  (fixture)

from newsletter.config import SMTPServer
from newsletter.dispatch import drafts
from newsletter.dispatch.abtest import ab_status
from newsletter.dispatch.campaigns import get_campaign
from newsletter.store.ab_models import ABTest
from newsletter.store.db import transaction

UTC = timezone.utc
FORM = {"sources": None, "since": "2026-11-01", "until": "2026-11-30", "limit": "10", "intro": "Editor's note",
        "subject": "Soil news", "lists": "weekly"}
AB = {"ab": "1", "subject_b": "What the rain did", "subject_c": "Small farms", "ab_intro_b": "Rain & soil, *|FNAME|*.",
      "test_share": "30%", "test_wait": "2h", "winner_by": "opens", "min_sample": "10", "track": "opens,clicks"}


def form(config, **kw) -> dict:
    return {**FORM, "sources": config.sources[0], **kw}


def count_tests(engine) -> int:
    with transaction(engine) as conn:
        return conn.execute(select(func.count()).select_from(ABTest.__table__)).scalar_one()


def subject_of(msg) -> str:
    return str(make_header(decode_header(msg["Subject"])))


# --- the campaign form ------------------------------------------------------------------------------


def test_the_form_makes_an_ab_draft_with_the_clis_checks_and_editing_starts_from_it(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    page = c.get("/admin/campaigns/new").text
    assert 'id="ab-section"' in page and 'name="subject_b"' in page and 'name="winner_by" value="opens"' in page
    assert "Apple Mail" in page  # the warning, shown (by CSS) while opens is chosen

    r = c.post("/admin/campaigns/new", data={**form(config), **AB, "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    ab = ab_status(store, cid)
    assert [v.subject for v in ab.variants] == ["Soil news", "What the rain did", "Small farms"]
    assert [v.intro for v in ab.variants] == [None, "Rain & soil, *|FNAME|*.", None]
    assert (ab.test_share, ab.wait_seconds, ab.winner_by, ab.min_sample) == (30.0, 7200, "opens", 10)
    assert get_campaign(store, cid).meta["track"] == ["clicks", "opens"]

    page = c.get(f"/admin/campaigns/{cid}").text
    assert 'id="ab-table"' in page and "Test copies" in page
    assert page.count('data-variant="') == 3 and "Intro: Rain &amp; soil" in page
    assert "one copy per variant: [TEST A], [TEST B]" in page
    assert 'id="ab-no-local"' in page  # the schedule form says an A/B test goes out at one moment

    edit = c.get(f"/admin/campaigns/{cid}/edit").text
    assert 'id="ab-section" open' in edit and 'value="Small farms"' in edit and 'value="30%"' in edit
    assert re.search(r'value="opens" id="winner-opens" checked', edit)
    # Saved without C and with clicks: the test is replaced, in the draft's transaction.
    r = c.post(f"/admin/campaigns/{cid}/edit", data={**form(config), **AB, "subject_c": "", "winner_by": "clicks",
                                                     "csrf_token": token}, follow_redirects=False)
    assert r.status_code == 303, r.text
    ab = ab_status(store, cid)
    assert [v.letter for v in ab.variants] == ["A", "B"] and ab.winner_by == "clicks"
    # Saved with the section off: an ordinary draft again.
    r = c.post(f"/admin/campaigns/{cid}/edit", data={**form(config), **AB, "ab": "", "csrf_token": token},
               follow_redirects=False)
    assert r.status_code == 303 and ab_status(store, cid) is None
    # A duplicate of an A/B campaign is an A/B draft with the same settings and no results.
    r = c.post(f"/admin/campaigns/{cid}/edit", data={**form(config), **AB, "csrf_token": token}, follow_redirects=False)
    copy = drafts.duplicate_campaign(store, cid)
    assert [v.subject for v in ab_status(store, copy.id).variants] == ["Soil news", "What the rain did", "Small farms"]


@pytest.mark.parametrize("change, words", [
    ({"test_share": "0%"}, "Test share '0%': must be more than 0% and less than 100%"),
    ({"test_share": "100%"}, "Test share '100%': must be more than 0%"),
    ({"subject_b": "", "subject_c": ""}, "A/B test with one variant: give subject B"),
    ({"subject_b": ""}, "Subject C without subject B"),
    ({"test_wait": "soon"}, "Wait 'soon': expected a duration"),
    ({"min_sample": "many"}, "Minimum sample 'many': expected a whole number"),
    ({"subject_b": "Soil news"}, "Subject B 'Soil news': the same subject as subject A"),
    ({"track": "clicks"}, "Winner by opens: the campaign does not track opens (choose Tracking: opens"),
    ({"ab_intro_c": "Hi *|NICKNAME|*"}, "Intro C: unknown merge tag"),
])
def test_a_refused_ab_draft_comes_back_with_the_reason_inside_the_form_and_the_values(store, tmp_path, change, words):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    data = {**form(config), **AB, **change, "csrf_token": token}
    r = c.post("/admin/campaigns/new", data=data)
    assert r.status_code == 400, r.text
    error = re.search(r'<form method="post" action="/admin/campaigns/new".*?<div class="flash error" role="alert" '
                      r'id="form-error">([^<]*)</div>', r.text, re.S)
    assert error and words in error.group(1).replace("&#39;", "'"), error and error.group(1)
    assert "--" not in error.group(1)
    assert 'id="ab-section" open' in r.text and 'name="ab" value="1" id="ab" checked' in r.text
    assert f'value="{data["test_share"]}"' in r.text and ">Rain &amp; soil, *|FNAME|*.</textarea>" in r.text
    assert count_campaigns(store) == 0 and count_tests(store) == 0


# --- the schedule form ---------------------------------------------------------------------------------


def test_the_schedule_form_sends_at_each_readers_local_time_or_says_why_not(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    cid = drafts.create_draft(store, config, request()).id
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    page = c.get(f"/admin/campaigns/{cid}").text
    assert 'id="mode-local"' in page and 'id="local_time"' in page

    bad = {"csrf_token": token, "mode": "local", "local_time": "25:00", "local_date": day, "window": "2h", "past": "skip"}
    r = c.post(f"/admin/campaigns/{cid}/schedule", data=bad)
    assert r.status_code == 400
    err = re.search(r'id="schedule-form".*?id="schedule-error">([^<]*)<', r.text, re.S).group(1).replace("&#39;", "'")
    assert err == "Local time '25:00': expected a time of day HH:MM (24-hour), e.g. 08:00"
    assert 'value="25:00"' in r.text and f'value="{day}"' in r.text and 'value="2h"' in r.text
    assert '<option value="skip" selected>' in r.text and 'id="mode-local" checked' in r.text
    assert get_campaign(store, cid).status == "draft"
    r = c.post(f"/admin/campaigns/{cid}/schedule", data={**bad, "local_time": "08:00", "window": "2 days"})
    assert r.status_code == 400 and "Window &#39;2 days&#39;: expected a duration" in r.text

    r = c.post(f"/admin/campaigns/{cid}/schedule", data={**bad, "local_time": "08:00"})
    assert r.status_code == 200, r.text
    got = get_campaign(store, cid)
    assert got.status == "scheduled"
    assert got.meta["local_time"] == {"time": "08:00", "date": day, "window_minutes": 120, "past": "skip"}
    assert f"scheduled for 08:00 on {day} in each reader&#39;s time zone" in r.text
    assert 'id="local-time"' in r.text and 'id="lt-unplanned"' in r.text
    # Scheduled again at one moment: the local-time wish is gone.
    when = (datetime.now(UTC) + timedelta(days=1)).astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    r = c.post(f"/admin/campaigns/{cid}/schedule", data={"csrf_token": token, "mode": "at", "when": when.strftime("%Y-%m-%dT%H:%M")})
    assert r.status_code == 200 and "local_time" not in get_campaign(store, cid).meta


def test_an_ab_campaign_cannot_be_scheduled_at_local_time_from_the_page(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    token = csrf(c)
    r = c.post("/admin/campaigns/new", data={**form(config), **AB, "csrf_token": token}, follow_redirects=False)
    cid = int(r.headers["location"].rsplit("/", 1)[1])
    day = (datetime.now(UTC) + timedelta(days=3)).date().isoformat()
    r = c.post(f"/admin/campaigns/{cid}/schedule", data={"csrf_token": token, "mode": "local", "local_time": "07:30",
                                                         "local_date": day, "window": "1h", "past": "next-day"})
    assert r.status_code == 400
    assert (f"Campaign {cid}: an A/B test cannot go out at each reader&#39;s local time; schedule it at a time in "
            "your time zone instead") in r.text
    assert 'value="07:30"' in r.text
    got = get_campaign(store, cid)
    assert got.status == "draft" and got.scheduled_at is None


def test_the_page_and_the_api_show_a_local_time_campaigns_buckets(sqlite_url, tmp_path):
    """Five zones' buckets (test_localtime's readers) on a day ten days ahead; the worker, its clock
    at the first bucket (UTC+14), sends that one: the page (at the real now, before that day) says
    one group done and four to come."""
    from test_localtime import READERS, setup
    from test_worker import config_for

    from newsletter.schedule import localtime as lt
    from newsletter.schedule.worker import run_worker
    from test_localtime import draft

    engine = setup(sqlite_url)
    config = config_for(sqlite_url, tmp_path)
    cid = draft(engine, config)
    day = (datetime.now(UTC) + timedelta(days=10)).date()
    lt.schedule_local_time(engine, cid, "08:00", tz="Europe/Paris", day=day.isoformat())
    first = datetime(day.year, day.month, day.day, 8, tzinfo=UTC) - timedelta(hours=14)  # Kiritimati's 08:00
    with SMTPTestServer() as srv:
        run_worker(engine, config, once=True, now=first + timedelta(seconds=30), smtp=srv.url)
        assert sorted(r for m in srv.received() for r in m.rcpt_tos) == ["kiri2@example.com", "kiri@example.com"]
    c = client(config.replace(base_url="http://127.0.0.1:8000"), engine)
    page = c.get(f"/admin/campaigns/{cid}").text
    assert re.search(r'data-buckets="done">1<', page) and re.search(r'data-buckets="to_come">4<', page)
    rows = re.findall(r'<tr data-bucket="([^"]+)"><th scope="row">([^<]+)<', page)
    assert [s for s, _ in rows] == ["done", "to come", "to come", "to come", "to come"]
    paris = first.astimezone(__import__("zoneinfo").ZoneInfo("Europe/Paris"))
    assert rows[0][1].startswith(paris.strftime("%Y-%m-%d %H:%M"))  # the publisher's zone
    assert "UTC+14:00" in page and f"08:00 on {day.isoformat()} in each reader" in page
    api = c.get(f"/api/campaigns/{cid}").json()["local_time"]
    assert (api["done"], api["to_come"], len(api["buckets"])) == (1, 4, 5)
    assert sum(b["copies"] for b in api["buckets"]) == len(READERS)
    engine.dispose()


# --- the API ------------------------------------------------------------------------------------------


def api_body(config, **kw) -> dict:
    return {"sources": [config.sources[0]], "since": "2026-11-01", "until": "2026-11-30", "limit": 5,
            "subject": "Soil news", "lists": ["weekly"], "track": "clicks", **kw}


def test_the_api_creates_an_ab_draft_and_schedules_at_local_time(store, tmp_path):
    config = make_config(store, tmp_path)
    c = client(config, store)
    r = c.post("/api/campaigns", json=api_body(config, ab={"subject_b": "What the rain did", "intro_b": "Rain.",
                                                            "test_share": "25%", "test_wait": "90m"}))
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    ab = ab_status(store, cid)
    assert [v.subject for v in ab.variants] == ["Soil news", "What the rain did"] and ab.variants[1].intro == "Rain."
    assert (ab.test_share, ab.wait_seconds, ab.winner_by, ab.min_sample) == (25.0, 5400, "clicks", 50)
    rep = c.get(f"/api/campaigns/{cid}/report").json()["ab"]
    assert [v["letter"] for v in rep["variants"]] == ["A", "B"] and rep["phase"] == "not started"

    day = (datetime.now(UTC) + timedelta(days=2)).date().isoformat()
    r = c.post(f"/api/campaigns/{cid}/schedule", json={"local_time": "08:00", "date": day})
    assert r.status_code == 400
    assert r.json() == {"error": f"campaign {cid}: an A/B test cannot go out at each reader's local time; "
                                 "schedule it with at instead", "status": 400}
    assert get_campaign(store, cid).status == "draft"

    plain = c.post("/api/campaigns", json=api_body(config)).json()["id"]
    assert ab_status(store, plain) is None
    kept_out = c.post("/api/campaigns", json={**api_body(config), "archive": False})
    assert kept_out.status_code == 201 and kept_out.json()["archive"]["archive"] is False  # stored with the draft
    assert get_campaign(store, kept_out.json()["id"]).archive is False
    r = c.post(f"/api/campaigns/{plain}/schedule", json={"local_time": "08:00", "date": day, "window": "30m",
                                                         "past": "send"})
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["status"] == "scheduled" and out["local_time"]["time"] == "08:00" and out["local_time"]["past"] == "send"
    assert out["local_time"]["window_minutes"] == 30 and out["local_time"]["planned"] is False


@pytest.mark.parametrize("path, body, status, words", [
    ("create", {"ab": {"subject_b": "B", "test_share": "0%"}}, 400, "ab.test_share '0%': must be more than 0%"),
    ("create", {"ab": {"subject_b": "B", "test_share": "100"}}, 400, "ab.test_share '100': must be more than 0%"),
    ("create", {"ab": {"subject_b": "Soil news"}}, 400, "ab.subject_b 'Soil news': the same subject as subject"),
    ("create", {"ab": {"subject_b": "B"}, "track": "opens"}, 400, "ab.winner_by clicks: the campaign does not track clicks"),
    ("create", {"ab": {"subject_b": "B", "winner_by": "votes"}}, 422, "ab.winner_by: Input should be 'clicks' or 'opens'"),
    ("create", {"ab": {"subject_b": "B", "subject_d": "D"}}, 400, "ab.subject_d without ab.subject_c"),
    ("create", {"sources": ["/etc"]}, 400, "source '/etc': not one of the configured sources"),
    ("schedule", {"local_time": "08:00", "at": "2099-01-01T08:00:00"}, 400, "give at (a moment) or local_time"),
    ("schedule", {}, 400, "give at (a moment) or local_time"),
    ("schedule", {"at": "2099-01-01T08:00:00", "window": "1h"}, 400, "date, window and past only go with local_time"),
    ("schedule", {"local_time": "8h"}, 400, "local_time '8h': expected a time of day HH:MM"),
    ("schedule", {"local_time": "08:00", "past": "later"}, 422, "past: Input should be 'send', 'skip' or 'next-day'"),
    ("schedule", {"local_time": "08:00", "date": "2020-01-01"}, 400, "that time has passed in every time zone; give a later date"),
    ("schedule", {"local_time": "23:59", "date": "9999-12-31", "window": "24h"}, 400, "date '9999-12-31': too far in the future"),
])
def test_bad_api_input_is_one_line_and_stores_nothing(store, tmp_path, path, body, status, words):
    config = make_config(store, tmp_path)
    c = client(config, store)
    if path == "create":
        r = c.post("/api/campaigns", json=api_body(config, **body))
        assert count_campaigns(store) == 0 and count_tests(store) == 0
    else:
        cid = drafts.create_draft(store, config, request()).id
        r = c.post(f"/api/campaigns/{cid}/schedule", json=body)
        got = get_campaign(store, cid)
        assert got.status == "draft" and "local_time" not in got.meta
    assert r.status_code == status, r.text
    assert words in r.json()["error"] and "\n" not in r.json()["error"] and "--" not in r.json()["error"]


def test_the_openapi_schema_describes_ab_and_local_time(store, tmp_path):
    config = make_config(store, tmp_path)
    schema = client(config, store).get("/api/openapi.json").json()
    parts = schema["components"]["schemas"]
    assert {"local_time", "date", "window", "past", "at"} <= set(parts["ScheduleIn"]["properties"])
    assert {"subject_b", "subject_c", "subject_d", "intro_a", "intro_b", "test_share", "test_wait", "winner_by",
            "min_sample"} <= set(parts["ABIn"]["properties"])
    assert "ab" in parts["CampaignIn"]["properties"] and "Apple Mail" in parts["ABIn"]["properties"]["winner_by"]["description"]
    assert "post" in schema["paths"]["/api/campaigns"]


# --- test sends -----------------------------------------------------------------------------------------


def test_a_test_send_of_an_ab_campaign_is_one_copy_per_variant(store, tmp_path, monkeypatch, capsys):
    from cli_runner import run_main

    with SMTPTestServer() as srv:
        config = make_config(store, tmp_path, smtp={"test": SMTPServer(name="test", url=srv.url)}, outbox=None)
        c = client(config, store)
        token = csrf(c)
        r = c.post("/admin/campaigns/new", data={**form(config), **AB, "csrf_token": token}, follow_redirects=False)
        cid = int(r.headers["location"].rsplit("/", 1)[1])
        r = c.post(f"/admin/campaigns/{cid}/test-send", data={"csrf_token": token, "to": "reader1@example.com"})
        assert r.status_code == 200 and "Test messages for variants A, B, C sent to reader1@example.com." in r.text
        assert srv.wait_for(3, timeout=15)
        got = {subject_of(m.message()): m for m in srv.received()}
        assert sorted(got) == ["[TEST A] Soil news", "[TEST B] What the rain did", "[TEST C] Small farms"]
        assert all(m.rcpt_tos == ["reader1@example.com"] for m in got.values())
        b_text = got["[TEST B] What the rain did"].message().get_body(("plain",)).get_content()
        assert b_text.startswith("Rain & soil, Reader.")  # B's intro, merge tags filled for the subscriber
        assert "Rain & soil" not in got["[TEST A] Soil news"].message().get_body(("plain",)).get_content()
        title = re.search(r"<title>([^<]*)</title>", got["[TEST C] Small farms"].message().get_body(("html",)).get_content())
        assert title and title.group(1) == "[TEST C] Small farms"
        with transaction(store) as conn:
            assert conn.exec_driver_sql("select count(*) from deliveries").scalar() == 0  # no ledger touched

        # The CLI's `send --test` sends the same three.
        monkeypatch.chdir(tmp_path)
        for k, v in {"NEWSLETTER_SECRET_KEY": config.secret_key, "NEWSLETTER_BASE_URL": "https://news.example.org",
                     "NEWSLETTER_FROM": "The Weekly <news@example.org>"}.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
        url = store.url.render_as_string(hide_password=False)
        res = run_main(monkeypatch, capsys, ["--db", url, "send", str(cid), "--test", "editor@example.org", "--smtp", srv.url])
        assert res.returncode == 0, res.stderr
        assert [ln.split(" (")[1].split(")")[0] for ln in res.stdout.splitlines() if ln.startswith("test message")] == [
            "variant A", "variant B", "variant C"]
        assert srv.wait_for(6, timeout=15)
        later = sorted(subject_of(m.message()) for m in srv.received()[3:])
        assert later == ["[TEST A] Soil news", "[TEST B] What the rain did", "[TEST C] Small farms"]


def test_a_test_send_of_an_ordinary_campaign_is_still_one_copy(store, tmp_path):
    with SMTPTestServer() as srv:
        config = make_config(store, tmp_path, smtp={"test": SMTPServer(name="test", url=srv.url)}, outbox=None)
        c = client(config, store)
        token = csrf(c)
        cid = drafts.create_draft(store, config, request(subject="Weekly")).id
        r = c.post(f"/admin/campaigns/{cid}/test-send", data={"csrf_token": token, "to": "editor@example.org"})
        assert "Test message sent to editor@example.org." in r.text
        assert srv.wait_for(1, timeout=15)
        assert [subject_of(m.message()) for m in srv.received()] == ["[TEST] Weekly"]
