"""Local-time delivery (`campaigns schedule ID --local-time 08:00`): each reader gets the campaign
at 08:00 in their own zone, in buckets by UTC offset, DST-correct, once.

Real databases (SQLite and PostgreSQL), a real SMTP server on 127.0.0.1 that records the
worker's injected clock at each message it accepts, and a ``ManualClock`` the test moves: nothing
waits on how fast the machine is (the test waits on the server's messages and the clock's reads).
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from smtp_server import SMTPTestServer
from cli_runner import run_main
from test_worker import ManualClock, config_for, env_for, wait_until, worker_thread

from newsletter.compose import ComposeOptions
from newsletter.compose.render import render
from newsletter.articles.model import Article
from newsletter.dispatch.buckets import bucket_progress
from newsletter.dispatch.campaigns import campaign_info, create_campaign, get_campaign, pause_campaign, resume_campaign
from newsletter.errors import ScheduleError
from newsletter.schedule import localtime as lt
from newsletter.schedule.worker import run_worker
from newsletter.store.db import get_engine, transaction, upgrade
from newsletter.store.lists import create_list

UTC = timezone.utc
DAY = "2026-11-01"  # New York leaves DST at 02:00 that Sunday; Paris left it the Sunday before

# reader -> (their own zone or None, the list they are on)
READERS = {
    "kiri@example.com": ("Pacific/Kiritimati", "weekly"),  # UTC+14: the first bucket
    "kiri2@example.com": ("Pacific/Kiritimati", "weekly"),
    "tokyo@example.com": (None, "asia"),  # no zone of their own: the list's (Asia/Tokyo)
    "kolkata@example.com": ("Asia/Kolkata", "asia"),  # their own zone wins over the list's: UTC+05:30
    "paris@example.com": (None, "weekly"),  # neither: config timezone, Europe/Paris (UTC+1 since 25 October)
    "ny@example.com": ("America/New_York", "weekly"),  # 08:00 on 1 November is EST, UTC-5 (not EDT)
    "ny2@example.com": ("America/New_York", "weekly"),
}
ZONE_OF = {"kiri@example.com": "Pacific/Kiritimati", "kiri2@example.com": "Pacific/Kiritimati",
           "tokyo@example.com": "Asia/Tokyo", "kolkata@example.com": "Asia/Kolkata",
           "paris@example.com": "Europe/Paris", "ny@example.com": "America/New_York",
           "ny2@example.com": "America/New_York"}
# 08:00 local on 1 November 2026, in UTC, worked out by hand.
EXPECTED = {
    datetime(2026, 10, 31, 18, 0, tzinfo=UTC): {"kiri@example.com", "kiri2@example.com"},
    datetime(2026, 10, 31, 23, 0, tzinfo=UTC): {"tokyo@example.com"},
    datetime(2026, 11, 1, 2, 30, tzinfo=UTC): {"kolkata@example.com"},
    datetime(2026, 11, 1, 7, 0, tzinfo=UTC): {"paris@example.com"},
    datetime(2026, 11, 1, 13, 0, tzinfo=UTC): {"ny@example.com", "ny2@example.com"},
}


def setup(url: str, readers: dict = READERS) -> sa.Engine:
    upgrade(url)
    engine = get_engine(url)
    create_list(engine, "weekly", "The Weekly")
    create_list(engine, "asia", "Asia edition", timezone="Asia/Tokyo")
    from newsletter.store.models import MailingList, Subscriber, Subscription

    now = datetime(2026, 10, 1, tzinfo=UTC)
    with engine.begin() as conn:
        lists = dict(conn.execute(sa.select(MailingList.__table__.c.slug, MailingList.__table__.c.id)).all())
        for email, (zone, slug) in readers.items():
            sid = conn.execute(Subscriber.__table__.insert().values(
                email=email, email_key=email, name=email.split("@")[0].title(), attributes={}, timezone=zone,
                consent_source="test", created_at=now, updated_at=now)).inserted_primary_key[0]
            conn.execute(Subscription.__table__.insert().values(subscriber_id=sid, list_id=lists[slug], status="active",
                                                               source="test", created_at=now, updated_at=now))
    return engine


def draft(engine, config, lists=("weekly", "asia")) -> int:
    digest = render([Article(title="Autumn opening hours", url="https://example.org/autumn-hours",
                             published=datetime(2026, 10, 20, tzinfo=UTC), summary="Shorter days.")],
                    config, ComposeOptions(subject="Autumn opening hours"))
    return create_campaign(engine, digest, list(lists), config).id


@pytest.fixture
def newsletter(monkeypatch, capsys, tmp_path):
    """``newsletter ARGS`` in this process (the real entry point), with the worker tests' environment."""

    def run(*args, url: str):
        monkeypatch.chdir(tmp_path)
        for k in [k for k in os.environ if k.startswith("NEWSLETTER_")]:
            monkeypatch.delenv(k)
        for k, v in env_for(url).items():
            if k.startswith("NEWSLETTER_"):
                monkeypatch.setenv(k, v)
        monkeypatch.setenv("COLUMNS", "200")
        return run_main(monkeypatch, capsys, list(args))

    return run


def progress(engine, cid: int) -> dict:
    with transaction(engine) as conn:
        return bucket_progress(conn, cid, get_campaign(engine, cid).meta)


@pytest.mark.parametrize("url_fixture", ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_five_zones_each_get_it_at_eight_local_through_a_dst_change_once_each(url_fixture, request, tmp_path):
    url = request.getfixturevalue(url_fixture)
    engine = setup(url)
    config = config_for(url, tmp_path)
    cid = draft(engine, config)
    c = lt.schedule_local_time(engine, cid, "08:00", tz="Europe/Paris", day=DAY, now=datetime(2026, 10, 30, 12, tzinfo=UTC))
    assert c.status == "scheduled" and c.scheduled_at == datetime(2026, 10, 31, 18, tzinfo=UTC)  # UTC+14's 08:00
    instants = sorted(EXPECTED)
    clock = ManualClock(instants[0] - timedelta(minutes=1))
    with SMTPTestServer(clock=clock) as srv:
        with worker_thread(engine, config, clock=clock, poll_interval=0.05, smtp=srv.url, concurrency=2) as lines:
            sent_so_far = 0
            for n, at in enumerate(instants):
                # A minute before the bucket: several passes of the worker send nothing.
                clock.set(at - timedelta(minutes=1))
                assert clock.wait_reads(clock.reads + 8)
                assert len(srv.received()) == sent_so_far, (at, [m.rcpt_tos for m in srv.received()])
                if n == 2:  # pause between buckets: the plan stays, nothing goes while paused
                    assert pause_campaign(engine, cid).status == "paused"
                    clock.set(at)
                    assert clock.wait_reads(clock.reads + 8)
                    assert len(srv.received()) == sent_so_far
                    assert progress(engine, cid)["to_come"] == 3
                    assert resume_campaign(engine, cid).status == "running"
                clock.set(at)
                sent_so_far += len(EXPECTED[at])
                assert srv.wait_for(sent_so_far, timeout=60), (at, lines)
                if n == 1:  # the server has the copies; the worker records them right after
                    assert wait_until(lambda: progress(engine, cid)["done"] == 2, 30)
                    assert progress(engine, cid)["to_come"] == 3
            assert wait_until(lambda: get_campaign(engine, cid).status == "finished", 30), lines
    got = srv.received()
    assert sorted(r for m in got for r in m.rcpt_tos) == sorted(READERS)  # one copy each
    for m in got:
        [rcpt] = m.rcpt_tos
        assert m.clock_at in EXPECTED and rcpt in EXPECTED[m.clock_at], (rcpt, m.clock_at)
        local = m.clock_at.astimezone(ZoneInfo(ZONE_OF[rcpt]))
        assert (local.date(), local.strftime("%H:%M")) == (date(2026, 11, 1), "08:00"), (rcpt, local)
    ny = next(m for m in got if m.rcpt_tos == ["ny@example.com"])
    assert ny.clock_at.astimezone(ZoneInfo("America/New_York")).utcoffset() == timedelta(hours=-5)  # after the change
    p = campaign_info(engine, cid).buckets
    assert p is not None and (p["done"], p["to_come"]) == (5, 0)
    assert [b["offsets"] for b in p["buckets"]] == [["UTC+14:00"], ["UTC+09:00"], ["UTC+05:30"], ["UTC+01:00"], ["UTC-05:00"]]
    assert [b["sent"] for b in p["buckets"]] == [2, 1, 1, 1, 2]
    with engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*), count(distinct subscriber_id) from deliveries").one() == (7, 7)


def plan_at(url, tmp_path, now: datetime, **options) -> tuple[sa.Engine, int, dict]:
    """Schedule for 08:00 on 1 November and let one worker pass start it at ``now`` (outbox)."""
    readers = {k: READERS[k] for k in ("kiri@example.com", "paris@example.com", "ny@example.com")}
    engine = setup(url, readers)
    config = config_for(url, tmp_path)
    cid = draft(engine, config)
    lt.schedule_local_time(engine, cid, "08:00", tz="Europe/Paris", day=DAY, now=datetime(2026, 10, 30, tzinfo=UTC),
                           **options)
    run_worker(engine, config, once=True, now=now)
    from newsletter.store.campaign_models import Delivery

    d = Delivery.__table__.c
    with engine.connect() as conn:
        due = {e: (s, at) for e, s, at in conn.execute(sa.select(d.email, d.state, d.due_at))}
    return engine, cid, due


LATE = datetime(2026, 11, 1, 9, 30, tzinfo=UTC)  # Kiritimati's 08:00 was 15.5 h ago, Paris's 2.5 h ago


def test_past_next_day_is_the_default_and_sends_passed_zones_at_eight_the_next_day(sqlite_url, tmp_path):
    engine, cid, due = plan_at(sqlite_url, tmp_path, LATE)
    assert due["kiri@example.com"] == ("pending", datetime(2026, 11, 1, 18, tzinfo=UTC))  # 2 November 08:00 +14
    assert due["paris@example.com"] == ("pending", datetime(2026, 11, 2, 7, tzinfo=UTC))
    assert due["ny@example.com"] == ("pending", datetime(2026, 11, 1, 13, tzinfo=UTC))
    assert not (tmp_path / "outbox").exists()
    kinds = [b["kind"] for b in progress(engine, cid)["buckets"]]
    assert kinds == ["on time", "next day", "next day"]


def test_past_skip_skips_passed_zones_and_past_send_sends_them_at_once(sqlite_url, tmp_path):
    engine, cid, due = plan_at(sqlite_url, tmp_path / "skip", LATE, past="skip")
    assert due["kiri@example.com"][0] == due["paris@example.com"][0] == "skipped"
    assert due["ny@example.com"] == ("pending", datetime(2026, 11, 1, 13, tzinfo=UTC))
    p = progress(engine, cid)
    assert p["skipped_past"] == 2 and p["skipped_zones"] == ["Europe/Paris", "Pacific/Kiritimati"]

    engine, cid, due = plan_at(str(sqlite_url).replace(".db", "-send.db"), tmp_path / "send", LATE, past="send")
    assert due["kiri@example.com"][0] == due["paris@example.com"][0] == "sent"
    assert due["ny@example.com"] == ("pending", datetime(2026, 11, 1, 13, tzinfo=UTC))
    assert len(list((tmp_path / "send" / "outbox").rglob("*.eml"))) == 2
    assert get_campaign(engine, cid).status == "running"


def test_a_zone_still_within_the_window_is_sent_at_once(sqlite_url, tmp_path):
    engine, cid, due = plan_at(sqlite_url, tmp_path, LATE, window="3h")  # Paris: 2.5 h late, within 3 h
    assert due["paris@example.com"] == ("sent", datetime(2026, 11, 1, 7, tzinfo=UTC))
    assert due["kiri@example.com"] == ("pending", datetime(2026, 11, 1, 18, tzinfo=UTC))  # past: next day


def test_send_stops_at_the_next_bucket_and_says_when(sqlite_url, tmp_path, newsletter):
    engine = setup(sqlite_url)
    config = config_for(sqlite_url, tmp_path)
    cid = draft(engine, config)
    lt.schedule_local_time(engine, cid, "08:00", tz="Europe/Paris", day="2030-06-01")
    out = tmp_path / "sent"
    p = newsletter("send", str(cid), "--now", "--outbox", str(out), url=sqlite_url)
    assert p.returncode == 4, p.stderr  # not finished: the buckets wait for their time
    assert "next local-time bucket" in p.stdout and "2030-05-31T18:00" in p.stdout, p.stdout
    assert not list(out.rglob("*.eml"))
    p = newsletter("campaigns", "show", str(cid), url=sqlite_url)
    assert p.returncode == 0 and "buckets 0 done, 5 to come" in p.stdout, p.stdout
    assert "UTC-04:00" in p.stdout  # New York on 1 June: summer time
    p = newsletter("campaigns", "show", str(cid), "--format", "json", url=sqlite_url)
    assert json.loads(p.stdout)["buckets"]["to_come"] == 5


BAD = [
    (["--local-time", "8am"], "--local-time '8am'"),
    (["--local-time", "24:00"], "--local-time '24:00'"),
    (["--local-time", "08:00", "--window", "6x"], "--window '6x'"),
    (["--local-time", "08:00", "--window", "0m"], "--window '0m'"),
    (["--local-time", "08:00", "--window", "25h"], "--window '25h'"),
    (["--local-time", "08:00", "--past", "later"], "--past 'later'"),
    (["--local-time", "08:00", "--tz", "Mars/Olympus"], "Mars/Olympus"),
    (["--local-time", "08:00", "--date", "tomorrow"], "--date 'tomorrow'"),
    (["--local-time", "08:00", "--date", "2020-01-01"], "passed in every time zone"),
    (["--local-time", "08:00", "--at", "2030-01-01 08:00"], "not both"),
    (["--at", "2030-01-01 08:00", "--past", "skip"], "--past only go with --local-time"),
    ([], "needs --at"),
]


def test_bad_local_time_options_are_one_line_errors_and_store_nothing(sqlite_url, tmp_path, newsletter):
    engine = setup(sqlite_url, {})
    config = config_for(sqlite_url, tmp_path)
    cid = draft(engine, config)
    before = get_campaign(engine, cid)
    for args, words in BAD:
        p = newsletter("campaigns", "schedule", str(cid), *args, url=sqlite_url)
        assert p.returncode != 0 and "Traceback" not in p.stderr, (args, p.stderr)
        [line] = p.stderr.strip().splitlines()
        assert words in line, (args, line)
        after = get_campaign(engine, cid)
        assert (after.status, after.scheduled_at, after.meta) == (before.status, before.scheduled_at, before.meta)
    with pytest.raises(ScheduleError, match="--window"):
        lt.parse_window("1h30")
    assert lt.parse_window("1h30m") == timedelta(minutes=90)
    p = newsletter("campaigns", "schedule", str(cid), "--local-time", "8:05", "--date", "2030-01-01", "--window", "6h",
                   "--past", "skip", url=sqlite_url)
    assert p.returncode == 0, p.stderr
    assert "08:05 local time on 2030-01-01" in p.stdout and "2029-12-31 18:05 UTC" in p.stdout
    meta = get_campaign(engine, cid).meta["local_time"]
    assert meta == {"time": "08:05", "date": "2030-01-01", "window_minutes": 360, "past": "skip"}
    # Scheduling it again with --at makes it an ordinary campaign.
    p = newsletter("campaigns", "schedule", str(cid), "--at", "2030-01-02 08:00", url=sqlite_url)
    assert p.returncode == 0 and "local_time" not in get_campaign(engine, cid).meta


def test_list_time_zone_is_checked(sqlite_url, tmp_path, newsletter):
    setup(sqlite_url, {})
    p = newsletter("lists", "create", "latam", "--timezone", "America/Nowhere", url=sqlite_url)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    [line] = p.stderr.strip().splitlines()
    assert "America/Nowhere" in line
    p = newsletter("lists", "create", "latam", "--timezone", "America/Sao_Paulo", url=sqlite_url)
    assert p.returncode == 0 and "time zone America/Sao_Paulo" in p.stdout
    p = newsletter("lists", "update", "latam", "--timezone", "Nowhere", url=sqlite_url)
    assert p.returncode != 0 and "Nowhere" in p.stderr
    p = newsletter("lists", "list", "--format", "json", url=sqlite_url)
    assert {r["slug"]: r["timezone"] for r in json.loads(p.stdout)}["latam"] == "America/Sao_Paulo"


def test_import_stores_a_timezone_column_as_the_readers_zone_and_rejects_unknown_ones(db_url, tmp_path):
    from newsletter.store.importer import ImportOptions, import_file

    engine = setup(db_url, {})
    f = Path(tmp_path / "people.csv")
    f.write_text("email,name,timezone,city\nana@example.com,Ana,Asia/Tokyo,Tokyo\nbob@example.com,Bob,Mars/Olympus,Mars\n"
                 "cy@example.com,Cy,,Lima\n", encoding="utf-8")
    report = import_file(engine, f, ImportOptions(list_slug="weekly", rejects_path=tmp_path / "rejects.csv"))
    assert report.added == 2 and [r.email for r in report.rejects] == ["bob@example.com"]
    assert "Mars/Olympus" in report.rejects[0].reason
    with engine.connect() as conn:
        rows = {e: (tz, json.loads(a) if isinstance(a, str) else a) for e, tz, a in
                conn.exec_driver_sql("select email, timezone, attributes from subscribers")}
    assert rows == {"ana@example.com": ("Asia/Tokyo", {"city": "Tokyo"}), "cy@example.com": (None, {"city": "Lima"})}
    # Again, for someone already stored: their zone changes, their other attributes stay.
    f.write_text("email,timezone\nana@example.com,Europe/Lisbon\n", encoding="utf-8")
    import_file(engine, f, ImportOptions(list_slug="weekly", rejects_path=tmp_path / "rejects.csv"))
    with engine.connect() as conn:
        tz, attrs = conn.exec_driver_sql("select timezone, attributes from subscribers where email = 'ana@example.com'").one()
    assert tz == "Europe/Lisbon" and (json.loads(attrs) if isinstance(attrs, str) else attrs) == {"city": "Tokyo"}
