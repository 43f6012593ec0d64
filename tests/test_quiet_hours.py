"""Quiet hours per list (`lists create|update --quiet-hours 22:00-07:00`): a local-time campaign
never plans a copy for a reader of that list inside them, in the reader's zone — the copy moves
to the end of the quiet period — while readers of other lists keep the local time. Real SQLite
and PostgreSQL, a real SMTP server on 127.0.0.1, the worker's clock injected (test_localtime's
readers: five zones over two lists)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from smtp_server import SMTPTestServer
from test_localtime import DAY, READERS, ZONE_OF, draft, newsletter, progress, setup  # noqa: F401  (fixture)
from test_worker import config_for

from newsletter.errors import InvalidInput
from newsletter.schedule import localtime as lt
from newsletter.schedule.quiet import parse_quiet_hours
from newsletter.schedule.worker import run_worker
from newsletter.store.campaign_models import Delivery
from newsletter.store.lists import get_list, update_list

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")


@pytest.mark.parametrize("text, at, zone, end", [
    ("22:00-07:00", datetime(2026, 11, 1, 23, 0), "Europe/Paris", datetime(2026, 11, 2, 7, 0)),  # crosses midnight
    ("22:00-07:00", datetime(2026, 11, 2, 3, 15), "Europe/Paris", datetime(2026, 11, 2, 7, 0)),  # after midnight
    ("22:00-07:00", datetime(2026, 11, 2, 7, 0), "Europe/Paris", None),  # the end is not quiet
    ("22:00-07:00", datetime(2026, 11, 1, 21, 59), "Europe/Paris", None),
    ("12:30-14:00", datetime(2026, 11, 1, 13, 0), "Asia/Kolkata", datetime(2026, 11, 1, 14, 0)),  # same day
    ("12:30-14:00", datetime(2026, 11, 1, 14, 0), "Asia/Kolkata", None),
    # The end falls in the spring-forward gap (02:00 → 03:00 on 29 March): the end of the gap.
    ("01:00-02:30", datetime(2026, 3, 29, 1, 30), "Europe/Paris", datetime(2026, 3, 29, 3, 0)),
])
def test_the_end_of_quiet_hours_in_the_readers_zone(text, at, zone, end):
    z = ZoneInfo(zone)
    got = parse_quiet_hours(text).end_after(at.replace(tzinfo=z), z)
    assert got == (end.replace(tzinfo=z).astimezone(UTC) if end else None)


def test_the_end_of_quiet_hours_is_never_earlier_at_the_autumn_change():
    """On 25 October 2026 Paris goes from 03:00 CEST back to 02:00 CET (01:00 UTC), so 02:30 happens
    twice. A copy due at 02:15 CET (01:15 UTC, after the change) ends its quiet hours at the second
    02:30 (01:30 UTC), not at the first one, 45 minutes before it was due."""
    at = datetime(2026, 10, 25, 1, 15, tzinfo=UTC)
    assert parse_quiet_hours("00:30-02:30").end_after(at, PARIS) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    before = datetime(2026, 10, 25, 0, 15, tzinfo=UTC)  # 02:15 CEST, the first time round: the first 02:30
    assert parse_quiet_hours("00:30-02:30").end_after(before, PARIS) == datetime(2026, 10, 25, 0, 30, tzinfo=UTC)


@pytest.mark.parametrize("text, words", [
    ("22-07", "expected HH:MM-HH:MM"), ("24:00-07:00", "expected HH:MM-HH:MM"), ("22:00-22:00", "the same time"),
    ("22:00", "expected HH:MM-HH:MM"),
])
def test_bad_quiet_hours_name_the_option(text, words):
    with pytest.raises(InvalidInput, match=f"^--quiet-hours {text!r}: .*{words}"):
        parse_quiet_hours(text)


def dues(engine) -> dict[str, datetime | None]:
    d = Delivery.__table__.c
    with engine.connect() as conn:
        return {e: at for e, at in conn.execute(sa.select(d.email, d.due_at))}


@pytest.mark.parametrize("url_fixture", ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_a_local_time_campaign_waits_out_a_lists_quiet_hours_in_each_readers_zone(url_fixture, request, tmp_path):
    url = request.getfixturevalue(url_fixture)
    engine = setup(url)
    config = config_for(url, tmp_path)
    update_list(engine, "weekly", quiet_hours="22:00-07:00")  # kiri, kiri2, paris, ny, ny2; not asia's tokyo, kolkata
    cid = draft(engine, config)
    c = lt.schedule_local_time(engine, cid, "23:00", tz="Europe/Paris", day=DAY, now=datetime(2026, 10, 30, tzinfo=UTC))
    start = c.scheduled_at  # 23:00 at UTC+14
    assert start == datetime(2026, 11, 1, 9, tzinfo=UTC)
    with SMTPTestServer() as srv:
        run_worker(engine, config, once=True, now=start + timedelta(seconds=30), smtp=srv.url)
        assert srv.received() == []  # Kiritimati's 23:00 is quiet for the weekly list
        expected = {
            "kiri@example.com": datetime(2026, 11, 1, 17, tzinfo=UTC),  # 07:00 on 2 November at UTC+14
            "kiri2@example.com": datetime(2026, 11, 1, 17, tzinfo=UTC),
            "tokyo@example.com": datetime(2026, 11, 1, 14, tzinfo=UTC),  # asia: no quiet hours, 23:00 at UTC+9
            "kolkata@example.com": datetime(2026, 11, 1, 17, 30, tzinfo=UTC),  # 23:00 at UTC+05:30
            "paris@example.com": datetime(2026, 11, 2, 6, tzinfo=UTC),  # 07:00 at UTC+1
            "ny@example.com": datetime(2026, 11, 2, 12, tzinfo=UTC),  # 07:00 EST
            "ny2@example.com": datetime(2026, 11, 2, 12, tzinfo=UTC),
        }
        assert dues(engine) == expected
        # Every bucket in turn, the worker's clock just past it: each reader gets it then, once, and
        # no weekly reader between 22:00 and 07:00 their time.
        got: dict[str, datetime] = {}
        for at in sorted(set(expected.values())):
            before = len(srv.received())
            run_worker(engine, config, once=True, now=at + timedelta(seconds=30), smtp=srv.url)
            for m in srv.received()[before:]:
                for r in m.rcpt_tos:
                    assert r not in got
                    got[r] = at
        assert got == expected
        for reader, at in got.items():
            local = at.astimezone(ZoneInfo(ZONE_OF[reader]))
            if READERS[reader][1] == "weekly":
                assert 7 <= local.hour < 22, (reader, local)
            else:
                assert (local.hour, local.minute) == (23, 0)
    kinds = {b["at"]: b["kind"] for b in progress(engine, cid)["buckets"]}
    assert kinds[datetime(2026, 11, 1, 17, tzinfo=UTC).isoformat()] == "after quiet hours"
    assert kinds[datetime(2026, 11, 1, 14, tzinfo=UTC).isoformat()] == "on time"
    assert progress(engine, cid)["done"] == 5
    engine.dispose()


def test_lists_create_and_update_take_quiet_hours(sqlite_url, newsletter):  # noqa: F811
    from newsletter.store.db import get_engine, upgrade

    upgrade(sqlite_url)
    p = newsletter("lists", "create", "night", "--quiet-hours", "22:30-6:45", url=sqlite_url)
    assert p.returncode == 0, p.stderr
    assert "quiet hours 22:30-06:45" in p.stdout
    engine = get_engine(sqlite_url)
    assert get_list(engine, "night").quiet_hours == "22:30-06:45"
    p = newsletter("lists", "update", "night", "--quiet-hours", "10pm-7am", url=sqlite_url)
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode != 0 and len(lines) == 1 and "--quiet-hours '10pm-7am': expected HH:MM-HH:MM" in lines[0]
    assert get_list(engine, "night").quiet_hours == "22:30-06:45"  # unchanged
    shown = json.loads(newsletter("lists", "list", "--format", "json", url=sqlite_url).stdout)
    assert shown[0]["quiet_hours"] == "22:30-06:45"
    assert newsletter("lists", "update", "night", "--quiet-hours", "none", url=sqlite_url).returncode == 0
    assert get_list(engine, "night").quiet_hours is None
    p = newsletter("lists", "create", "bad", "--quiet-hours", "07:00-07:00", url=sqlite_url)
    assert p.returncode != 0 and "the start and the end are the same time" in p.stderr
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from lists where slug = 'bad'").scalar() == 0
    engine.dispose()
