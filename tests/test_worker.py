"""`newsletter worker`: digests become campaigns once, scheduled campaigns go out at their time,
real worker processes share PostgreSQL without duplicates, and stop cleanly on SIGTERM.

Real databases, a real SMTP server on 127.0.0.1 (tests/smtp_server.py), real processes; the
clock is passed in (``now=`` / ``--now``, or a ``ManualClock`` the test moves), never slept for;
threads are waited for on events (the worker's lines, its ``on_turn`` hook, the server's hold).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from smtp_server import SMTPTestServer

from newsletter.config import Config
from newsletter.dispatch.campaigns import cancel_campaign, create_campaign, get_campaign, pause_campaign, resume_campaign
from newsletter.errors import NotFound, ScheduleError
from newsletter.schedule import digests as dg
from newsletter.schedule import occurrences as occ
from newsletter.schedule.oneoff import schedule_campaign_at
from newsletter.schedule.worker import run_worker
from newsletter.store.db import get_engine, upgrade
from newsletter.store.lists import create_list

UTC = timezone.utc
PARIS = ZoneInfo("Europe/Paris")
SECRET = "test-secret-key-for-the-worker-tests-0123456789"
REPO = Path(__file__).resolve().parent.parent


def paris(*args) -> datetime:
    return datetime(*args, tzinfo=PARIS)


def write_article(folder: Path, slug: str, published: datetime) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{slug}.md").write_text(
        f"---\ntitle: {slug.replace('-', ' ').title()}\ndate: {published.isoformat()}\n"
        f"url: https://example.org/{slug}\n---\n\nA short piece about {slug.replace('-', ' ')}.\n",
        encoding="utf-8",
    )


def setup_db(url: str, subscribers: int) -> sa.Engine:
    upgrade(url)
    engine = get_engine(url)
    create_list(engine, "weekly", "The Weekly")
    rows = [{"email": f"reader{i:04d}@example.com", "email_key": f"reader{i:04d}@example.com", "name": f"Reader {i}",
             "attributes": {}, "consent_source": "test", "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)}
            for i in range(subscribers)]
    from newsletter.store.models import MailingList, Subscriber, Subscription

    with engine.begin() as conn:
        if rows:
            conn.execute(Subscriber.__table__.insert(), rows)
        lid = conn.execute(sa.select(MailingList.__table__.c.id)).scalar()
        ids = conn.execute(sa.select(Subscriber.__table__.c.id)).scalars().all()
        if ids:
            conn.execute(Subscription.__table__.insert(), [
                {"subscriber_id": sid, "list_id": lid, "status": "active", "source": "test",
                 "created_at": datetime.now(UTC), "updated_at": datetime.now(UTC)} for sid in ids])
    return engine


def config_for(url: str, tmp_path: Path) -> Config:
    return Config(database_url=url, timezone="Europe/Paris", outbox=str(tmp_path / "outbox"), secret_key=SECRET,
                  concurrency=2, allow_local_links=True)  # SMTP to 127.0.0.1 with the default base_url


def count(engine, table: str, where: str = "") -> int:
    with engine.connect() as conn:
        return conn.exec_driver_sql(f"select count(*) from {table} {where}").scalar()


def counts_by_state(engine) -> dict[str, int]:
    with engine.connect() as conn:
        return dict(conn.exec_driver_sql("select state, count(*) from deliveries group by state").all())


class ManualClock:
    """The worker's clock in these tests: it stands still until the test moves it (``set``), so
    nothing depends on how fast the machine runs; ``reads`` counts how often the worker looked
    (once per pass, and at each look of a send's schedule watch)."""

    def __init__(self, start: datetime):
        self._now = start.astimezone(UTC)
        self._cond = threading.Condition()
        self.reads = 0

    def __call__(self) -> datetime:
        with self._cond:
            self.reads += 1
            self._cond.notify_all()
            return self._now

    def set(self, when: datetime) -> None:
        with self._cond:
            self._now = when.astimezone(UTC)

    def wait_reads(self, n: int, timeout: float = 30) -> bool:
        """Block until the clock has been read ``n`` times in all (bounded); False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.reads >= n, timeout)


def wait_until(condition, timeout: float = 60) -> bool:
    """Poll ``condition`` (the real server's or database's state) until it holds; False after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@contextlib.contextmanager
def worker_thread(engine, config, **kwargs):
    """run_worker in a thread for the duration of the block, then a clean stop; yields its log lines."""
    lines: list[str] = []
    stop = threading.Event()
    t = threading.Thread(target=run_worker, args=(engine, config),
                         kwargs=dict(stop_event=stop, on_event=lines.append, **kwargs))
    t.start()
    try:
        yield lines
    finally:
        stop.set()
        t.join(30)
    assert not t.is_alive(), "the worker did not stop within 30 s"


def weekly_digest(engine, config, articles: Path, **kw) -> None:
    spec = dg.DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris",
                         sources=[str(articles)], lists=["weekly"], subject="Weekly digest — {{ date }}", **kw)
    dg.add_digest(engine, config, spec, now=paris(2026, 11, 24, 12))


def env_for(url: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTER_")}
    env.update(NEWSLETTER_DATABASE_URL=url, NEWSLETTER_SECRET_KEY=SECRET, NEWSLETTER_TIMEZONE="Europe/Paris",
               NEWSLETTER_ALLOW_LOCAL_LINKS="true", PYTHONPATH=str(REPO / "src"))
    return env


def newsletter(*args, url: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "newsletter", *args], env=env_for(url), capture_output=True,
                          text=True, timeout=90, **kw)


def start_worker(*args, url: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "newsletter", "worker", *args], env=env_for(url),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# --- digests through the worker --------------------------------------------------------------

def test_each_occurrence_sends_only_articles_no_earlier_occurrence_sent(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 3)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "harbour-lights", paris(2026, 11, 26, 9))
    write_article(articles, "tram-line-opens", paris(2026, 11, 28, 9))
    weekly_digest(engine, config, articles)
    out = tmp_path / "outbox"
    with SMTPTestServer() as srv:
        send = dict(smtp=srv.url, retry_delays=(0,))
        # Week 1: both articles, one campaign, one copy each.
        r = run_worker(engine, config, once=True, now=paris(2026, 11, 30, 8, 0, 5), **send)
        [run] = r.digest_runs
        assert run.status == "created" and run.article_count == 2
        assert srv.recipient_counts() == {f"reader{i:04d}@example.com": 1 for i in range(3)}
        assert srv.received()[0].headers["Subject"] == "Weekly digest — 30 November 2026"
        # Week 2: one new article and the two old ones still in the folder: only the new one goes.
        write_article(articles, "ferry-timetable", paris(2026, 12, 3, 9))
        r = run_worker(engine, config, once=True, now=paris(2026, 12, 7, 8, 0, 5), **send)
        [run] = r.digest_runs
        assert run.status == "created" and run.article_count == 1
        week2 = [m for m in srv.received() if "7 December" in m.headers["Subject"]]
        assert len(week2) == 3
        body = week2[0].message().get_body(("html",)).get_content()
        assert "Ferry Timetable" in body and "Harbour Lights" not in body and "Tram Line Opens" not in body
        # Week 3: nothing new → skipped, nothing sent.
        r = run_worker(engine, config, once=True, now=paris(2026, 12, 14, 8, 0, 5), **send)
        [run] = r.digest_runs
        assert run.status == "skipped" and len(srv.received()) == 6
    assert count(engine, "campaigns") == 2 and count(engine, "digest_sent_articles") == 3
    assert not out.exists()


def test_an_article_dated_before_a_skipped_week_still_goes_out_later(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 1)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "first-frost", paris(2026, 11, 27, 9))
    weekly_digest(engine, config, articles, min_articles=2)
    r = run_worker(engine, config, once=True, now=paris(2026, 11, 30, 8, 1), retry_delays=(0,))
    assert [x.status for x in r.digest_runs] == ["skipped"]
    write_article(articles, "snow-ploughs-ready", paris(2026, 12, 4, 9))
    r = run_worker(engine, config, once=True, now=paris(2026, 12, 7, 8, 1), retry_delays=(0,))
    assert [(x.status, x.article_count) for x in r.digest_runs] == [("created", 2)]
    assert len(list((tmp_path / "outbox").glob("*.eml"))) == 1


def test_digests_run_now_composes_and_sends_immediately(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "library-late-hours", datetime.now(UTC) - timedelta(days=1))
    weekly_digest(engine, config, articles)
    with SMTPTestServer() as srv:
        p = newsletter("digests", "run", "weekly", "--now", "--smtp", srv.url, url=sqlite_url)
        assert p.returncode == 0, p.stderr
        assert "campaign 1 created with 1 article(s)" in p.stdout and "sent 2" in p.stdout
        assert sorted(srv.recipient_counts().values()) == [1, 1]
        # Again right away: nothing new since the last run.
        again = occ.run_digest_now(engine, config, "weekly")
        assert again.status == "skipped" and "nothing new" in again.reason and len(srv.received()) == 2


def test_two_manual_runs_in_the_same_second_are_both_recorded(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    at = datetime(2026, 11, 24, 23, 46, 27, tzinfo=UTC)
    write_article(articles, "library-late-hours", at - timedelta(days=1))
    weekly_digest(engine, config, articles)
    first = occ.run_digest_now(engine, config, "weekly", now=at)
    second = occ.run_digest_now(engine, config, "weekly", now=at.replace(microsecond=500))
    assert first.status == "created" and first.article_count == 1
    assert second.status == "skipped" and "nothing new" in second.reason
    assert second.scheduled_for == at + timedelta(seconds=1)


# --- one-off scheduled campaigns ---------------------------------------------------------------

def draft_campaign(engine, config) -> int:
    from newsletter.compose import ComposeOptions
    from newsletter.compose.render import render
    from newsletter.articles.model import Article

    digest = render([Article(title="Winter opening hours", url="https://example.org/winter-hours",
                             published=datetime(2026, 11, 20, tzinfo=UTC), summary="Shorter days, longer evenings.")],
                    config, ComposeOptions(subject="Winter opening hours"))
    return create_campaign(engine, digest, ["weekly"], config).id


def test_a_scheduled_campaign_goes_out_at_its_time_and_not_before(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 4)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    c = schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24, 12))
    assert c.status == "scheduled" and c.scheduled_at == datetime(2026, 12, 1, 7, 0, tzinfo=UTC)
    with SMTPTestServer() as srv:
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 7, 59, 59), smtp=srv.url)
        assert srv.received() == [] and get_campaign(engine, cid).status == "scheduled"
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 0, 1), smtp=srv.url)
        assert sorted(srv.recipient_counts().values()) == [1, 1, 1, 1]
        assert get_campaign(engine, cid).status == "finished"
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 5), smtp=srv.url)
        assert len(srv.received()) == 4


def test_scheduling_in_the_past_or_in_an_unknown_zone_is_refused_and_changes_nothing(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 1)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    p = newsletter("campaigns", "schedule", str(cid), "--at", "2020-01-01 08:00", "--tz", "Europe/Paris", url=sqlite_url)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    [line] = p.stderr.strip().splitlines()
    assert "2020-01-01 08:00" in line and "in the past" in line
    with pytest.raises(ScheduleError, match="Moon/Tranquility"):
        schedule_campaign_at(engine, cid, "2030-01-01 08:00", "Moon/Tranquility")
    with pytest.raises(ScheduleError, match="next tuesday"):
        schedule_campaign_at(engine, cid, "next tuesday", "Europe/Paris")
    with pytest.raises(NotFound, match="999"):
        schedule_campaign_at(engine, 999, "2030-01-01 08:00", "Europe/Paris")
    assert get_campaign(engine, cid).status == "draft" and get_campaign(engine, cid).scheduled_at is None
    p = newsletter("campaigns", "schedule", str(cid), "--at", "2030-01-01 08:00", "--tz", "Europe/Paris", url=sqlite_url)
    assert p.returncode == 0 and "2030-01-01 08:00 CET = 2030-01-01 07:00 UTC" in p.stdout
    assert get_campaign(engine, cid).status == "scheduled"


def test_a_campaign_cancelled_before_its_time_never_goes_out(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    cancel_campaign(engine, cid)
    run_worker(engine, config, once=True, now=paris(2026, 12, 1, 9))
    assert not (tmp_path / "outbox").exists() and get_campaign(engine, cid).status == "cancelled"


def test_a_campaign_paused_before_its_time_waits_and_resume_puts_it_back_on_schedule(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    assert pause_campaign(engine, cid).status == "paused"
    run_worker(engine, config, once=True, now=paris(2026, 12, 1, 9))
    assert not (tmp_path / "outbox").exists() and get_campaign(engine, cid).status == "paused"
    c = resume_campaign(engine, cid)
    assert c.status == "scheduled" and c.scheduled_at == datetime(2026, 12, 1, 7, tzinfo=UTC)
    run_worker(engine, config, once=True, now=paris(2026, 12, 1, 9, 1))
    assert len(list((tmp_path / "outbox").rglob("*.eml"))) == 2 and get_campaign(engine, cid).status == "finished"


def test_send_refuses_a_campaign_scheduled_for_later_unless_told_now(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2030-01-01 08:00", "Europe/Paris")
    out = tmp_path / "sent"
    p = newsletter("send", str(cid), "--outbox", str(out), url=sqlite_url)
    assert p.returncode == 1 and f"campaign {cid} is scheduled for 2030-01-01T07:00:00+00:00" in p.stderr
    assert f"newsletter send {cid} --now" in p.stderr and "Traceback" not in p.stderr
    p = newsletter("campaigns", "resume", str(cid), "--outbox", str(out), url=sqlite_url)
    assert p.returncode == 1 and "--now" in p.stderr
    assert not out.exists() and get_campaign(engine, cid).status == "scheduled"
    p = newsletter("campaigns", "pause", str(cid), url=sqlite_url)
    assert p.returncode == 0 and get_campaign(engine, cid).status == "paused"
    p = newsletter("campaigns", "resume", str(cid), url=sqlite_url)
    assert p.returncode == 0 and "scheduled again for 2030-01-01T07:00:00+00:00" in p.stdout
    p = newsletter("send", str(cid), "--now", "--outbox", str(out), url=sqlite_url)
    assert p.returncode == 0, p.stderr
    assert len(list(out.rglob("*.eml"))) == 2 and get_campaign(engine, cid).status == "finished"


def test_pause_during_sending_stops_it_and_resume_finishes_with_one_copy_each(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 60)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    clock = ManualClock(paris(2026, 12, 1, 8, 0, 1))
    with SMTPTestServer(delay=0.03) as srv:
        with worker_thread(engine, config, clock=clock, poll_interval=0.1, smtp=srv.url, concurrency=2) as lines:
            assert srv.wait_for(10, timeout=30)
            pause_campaign(engine, cid)
            # The send ends (its in-flight copies landed and were recorded) and the worker says so.
            assert wait_until(lambda: any(x.startswith(f"campaign {cid}: paused") for x in list(lines)), 30), lines
            paused_at = len(srv.received())
            assert clock.wait_reads(clock.reads + 3)  # three more passes of the worker...
            assert len(srv.received()) == paused_at < 60  # ...sent nothing while paused
            assert get_campaign(engine, cid).status == "paused"
            resume_campaign(engine, cid)
            assert srv.wait_for(60, timeout=60)
            # the worker records the last results after the server has them
            assert wait_until(lambda: get_campaign(engine, cid).status == "finished", 30)
        assert sorted(set(srv.recipient_counts().values())) == [1] and len(srv.recipient_counts()) == 60
    assert get_campaign(engine, cid).status == "finished"


# --- processes ------------------------------------------------------------------------------------

def test_a_second_worker_on_sqlite_refuses_to_start_or_waits_on_standby(sqlite_url, tmp_path):
    setup_db(sqlite_url, 0).dispose()
    first = start_worker("--poll", "0.2", url=sqlite_url)
    standby = first
    try:
        deadline = time.monotonic() + 30
        lock = Path(sqlite_url.removeprefix("sqlite:///") + ".worker.lock")
        while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = newsletter("worker", "--once", url=sqlite_url)
        assert second.returncode != 0 and "Traceback" not in second.stderr
        [line] = second.stderr.strip().splitlines()
        assert "another worker" in line and f"pid {first.pid}" in line and "--standby" in line
        standby = start_worker("--once", "--standby", "--poll", "0.2", url=sqlite_url)
        watchdog = threading.Timer(60, standby.kill)
        watchdog.start()
        first_line = standby.stderr.readline()  # blocks until the standby worker says something
        assert "standby: waiting" in first_line and f"pid {first.pid}" in first_line
        assert standby.poll() is None  # still waiting for the first worker
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert standby.wait(30) == 0
        watchdog.cancel()
        assert "stopped: one pass done" in standby.stderr.read()
    finally:
        for p in (first, standby):
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_racing_on_postgresql_make_one_campaign_and_one_copy_each(pg_url, tmp_path):
    engine = setup_db(pg_url, 40)
    config = config_for(pg_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "market-hall-reopens", paris(2026, 11, 27, 9))
    weekly_digest(engine, config, articles)
    with SMTPTestServer(delay=0.005) as srv:
        args = ("--once", "--now", "2026-11-30T08:00:05+01:00", "--smtp", srv.url, "--concurrency", "2")
        workers = [start_worker(*args, url=pg_url) for _ in range(2)]
        outs = [w.communicate(timeout=90) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs
        # Both saw the digest due; exactly one created its campaign.
        logs = "".join(err for _, err in outs)
        assert logs.count("campaign 1 created") == 1
        assert count(engine, "digest_runs") == 1 and count(engine, "campaigns") == 1
        counts = srv.recipient_counts()
        assert len(counts) == 40 and set(counts.values()) == {1}
        # A late third worker (a restart, a clock jump back) changes nothing.
        p = newsletter("worker", *args, url=pg_url)
        assert p.returncode == 0 and count(engine, "campaigns") == 1 and len(srv.received()) == 40


@pytest.mark.postgres
@pytest.mark.slow
def test_two_worker_processes_share_one_running_campaign_on_postgresql(pg_url, tmp_path):
    engine = setup_db(pg_url, 150)
    config = config_for(pg_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    with SMTPTestServer(delay=0.01) as srv:
        args = ("--once", "--now", "2026-12-01T08:00:01+01:00", "--smtp", srv.url, "--concurrency", "2")
        workers = [start_worker(*args, url=pg_url) for _ in range(2)]
        outs = [w.communicate(timeout=90) for w in workers]
        assert [w.returncode for w in workers] == [0, 0], outs
        counts = srv.recipient_counts()
        assert len(counts) == 150 and set(counts.values()) == {1}
        per_worker = {}
        with engine.connect() as conn:
            per_worker = dict(conn.exec_driver_sql(
                "select worker_id, count(*) from deliveries group by worker_id").all())
        assert sum(per_worker.values()) == 150
    assert get_campaign(engine, cid).status == "finished"


@pytest.mark.slow
@pytest.mark.parametrize("url_fixture", ["sqlite_url", pytest.param("pg_url", marks=pytest.mark.postgres)])
def test_sigterm_during_a_send_loses_and_doubles_nothing(url_fixture, request, tmp_path):
    url = request.getfixturevalue(url_fixture)
    engine = setup_db(url, 300)
    config = config_for(url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    with SMTPTestServer(delay=0.01) as srv:
        args = ("--now", "2026-12-01T08:00:01+01:00", "--smtp", srv.url, "--concurrency", "3", "--poll", "0.2")
        w = start_worker(*args, url=url)
        try:
            assert srv.wait_for(40, timeout=60)
            w.send_signal(signal.SIGTERM)
            _, err = w.communicate(timeout=60)
        finally:
            if w.poll() is None:
                w.kill()
        assert w.returncode == 0, err
        assert "stopped: stop requested" in err
        states = counts_by_state(engine)
        got = srv.recipient_counts()
        # In-flight messages finished and were recorded; nothing is left ambiguous or claimed.
        assert states.get("sending", 0) == 0 and states.get("claimed", 0) == 0
        assert states.get("sent", 0) == len(got) < 300 and set(got.values()) == {1}
        # A restart finishes the rest: everyone exactly once.
        p = newsletter("worker", "--once", *args[:4], url=url)
        assert p.returncode == 0, p.stderr
        got = srv.recipient_counts()
        assert len(got) == 300 and set(got.values()) == {1}
    assert get_campaign(engine, cid).status == "finished"


def test_digest_campaigns_carry_their_thumbnails_as_inline_images(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 1)
    config = config_for(sqlite_url, tmp_path)
    source = REPO / "tests" / "fixtures" / "compose" / "good"  # the lighthouse story has a local photo
    spec = dg.DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris", sources=[str(source)],
                         lists=["weekly"])
    dg.add_digest(engine, config, spec, now=paris(2026, 11, 19, 12))
    [run] = occ.run_due_digests(engine, config, now=paris(2026, 11, 23, 8, 0, 2))
    assert run.status == "created" and run.article_count == 1
    campaign = get_campaign(engine, run.campaign_id)
    assert campaign.status == "scheduled" and campaign.meta["digest"] == "weekly"
    assert 'src="assets/' not in campaign.html and 'src="cid:' in campaign.html
    assert count(engine, "campaign_images") == 1


def test_cancel_during_sending_stops_it_for_good(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 50)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    with SMTPTestServer(delay=0.03) as srv:
        with worker_thread(engine, config, now=paris(2026, 12, 1, 8, 0, 1), poll_interval=0.1, smtp=srv.url,
                           concurrency=2) as lines:
            assert srv.wait_for(5, timeout=30)
            cancel_campaign(engine, cid)
            # the send ends (in-flight copies landed and were recorded) and the worker says so
            assert wait_until(lambda: any(x.startswith(f"campaign {cid}: ") and "cancelled" in x
                                          for x in list(lines)), 30), lines
        got = srv.recipient_counts()
        states = counts_by_state(engine)
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 9), smtp=srv.url)  # a later pass
        assert srv.recipient_counts() == got  # sends nothing more
    assert get_campaign(engine, cid).status == "cancelled"
    assert len(got) < 50 and set(got.values()) == {1}
    assert states.get("sent", 0) == len(got) and not states.get("sending") and not states.get("claimed")


@pytest.mark.slow
def test_sigkill_during_a_send_then_restart_has_the_send_guarantees(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 300)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    with SMTPTestServer(delay=0.01) as srv:
        args = ("--now", "2026-12-01T08:00:01+01:00", "--smtp", srv.url, "--concurrency", "3", "--poll", "0.2")
        w = start_worker(*args, url=sqlite_url)
        try:
            assert srv.wait_for(60, timeout=60)
            w.kill()  # SIGKILL: no chance to clean up
            w.wait(30)
        finally:
            if w.poll() is None:
                w.kill()
        p = newsletter("worker", "--once", *args[:6], url=sqlite_url)  # the restart (same lock file: freed by the kernel)
        assert p.returncode == 0, p.stderr
        got = srv.recipient_counts()
    with engine.connect() as conn:
        ambiguous = {r[0] for r in conn.exec_driver_sql(
            "select email from deliveries where campaign_id = ? and state = 'sending'", (cid,)).all()}
    assert len(ambiguous) <= 3  # at most one per connection in flight
    missing = {f"reader{i:04d}@example.com" for i in range(300)} - set(got) - ambiguous
    doubled = {a for a, n in got.items() if n > 1}
    assert not missing and not doubled
    if ambiguous:
        assert "ambiguous" in p.stderr


def test_a_pass_with_only_deferred_copies_waiting_does_not_connect(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path)
    cid = draft_campaign(engine, config)
    schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    with SMTPTestServer(tempfail_first=1) as srv:
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 0, 1), smtp=srv.url)
        assert counts_by_state(engine) == {"deferred": 2}
        connections = srv.stats.connections
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 0, 2), smtp=srv.url)
        assert srv.stats.connections == connections and get_campaign(engine, cid).status == "running"
        with engine.begin() as conn:  # the retry time comes
            conn.exec_driver_sql("update deliveries set next_attempt_at = '2000-01-01 00:00:00'")
        run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 0, 3), smtp=srv.url)
        assert sorted(srv.recipient_counts().values()) == [1, 1]
    assert get_campaign(engine, cid).status == "finished"


@contextlib.contextmanager
def feed_server(on_fetch):
    """An RSS feed on 127.0.0.1 with one article of 26 November 2026; ``on_fetch()`` runs in the
    server's thread each time the feed is fetched, before it is served. Yields the feed's URL."""
    import http.server

    body = ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>Quay</title>"
            "<link>https://example.org/</link><description>Harbour news.</description><item>"
            "<title>Harbour lights</title><link>https://example.org/harbour-lights</link>"
            "<guid>https://example.org/harbour-lights</guid><pubDate>Thu, 26 Nov 2026 08:00:00 +0000</pubDate>"
            "<description>A short piece about harbour lights.</description></item></channel></rss>").encode()

    class Feed(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            on_fetch()
            self.send_response(200)
            self.send_header("Content-Type", "application/rss+xml")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    t = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/feed.xml"
    finally:
        server.shutdown()
        server.server_close()


def test_an_occurrence_recorded_meanwhile_by_another_process_creates_no_campaign(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 2)
    config = config_for(sqlite_url, tmp_path).replace(allow_private_fetch=True)
    when = paris(2026, 11, 30, 8, 0).astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    armed, fetched = threading.Event(), []

    def another_worker_records_it() -> None:  # while we load the sources, "another worker" commits the same occurrence
        if not armed.is_set():
            return
        fetched.append(when)
        with engine.begin() as conn:
            conn.exec_driver_sql(
                "insert into digest_runs (digest_id, scheduled_for, status, article_count, reason, warnings, manual, "
                "started_at) values (1, ?, 'skipped', 0, 'other worker', '[]', 0, ?)", (when, when))

    with feed_server(another_worker_records_it) as url:
        spec = dg.DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris",
                             sources=[url], lists=["weekly"], subject="Weekly digest — {{ date }}")
        dg.add_digest(engine, config, spec, now=paris(2026, 11, 24, 12))
        armed.set()
        [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 5))
    assert fetched == [when], "the occurrence loaded its source once, through the real fetch"
    assert (r.status, r.reason, r.campaign_id) == ("duplicate", "recorded by another process", None)
    assert count(engine, "digest_runs") == 1 and count(engine, "campaigns") == 0
    assert count(engine, "digest_sent_articles") == 0


def test_an_occurrence_whose_list_was_deleted_fails_and_leaves_nothing_half_made(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 1)
    config = config_for(sqlite_url, tmp_path)
    create_list(engine, "extra", "Extra")
    articles = tmp_path / "articles"
    write_article(articles, "harbour-lights", paris(2026, 11, 26, 9))
    spec = dg.DigestSpec(name="weekly", schedule="weekly mon 08:00", timezone="Europe/Paris",
                         sources=[str(articles)], lists=["extra"])
    dg.add_digest(engine, config, spec, now=paris(2026, 11, 24, 12))
    from newsletter.store.lists import delete_list

    delete_list(engine, "extra")
    [r] = occ.run_due_digests(engine, config, now=paris(2026, 11, 30, 8, 0, 5))
    assert r.status == "failed" and r.campaign_id is None and "list" in r.reason
    assert count(engine, "campaigns") == 0 and count(engine, "digest_sent_articles") == 0
    assert [x.status for x in dg.show_digest(engine, "weekly").runs] == ["failed"]


# --- a long send does not hold up the schedule -----------------------------------------------

def campaign_titled(engine, config, subject: str) -> int:
    from newsletter.articles.model import Article
    from newsletter.compose import ComposeOptions
    from newsletter.compose.render import render

    digest = render([Article(title=subject, url="https://example.org/" + subject.lower().replace(" ", "-"),
                             published=datetime(2026, 11, 20, tzinfo=UTC), summary="A notice.")],
                    config, ComposeOptions(subject=subject))
    return create_campaign(engine, digest, ["weekly"], config).id


def finished(engine, *cids: int) -> bool:
    return all(get_campaign(engine, cid).status == "finished" for cid in cids)


def digest_done(engine, long_send: int) -> bool:
    """The weekly digest's occurrence was handled: not created (a failure, seen at once), or its
    campaign and the long send both finished."""
    runs = dg.show_digest(engine, "weekly").runs
    if not runs:
        return False
    return runs[0].status != "created" or finished(engine, long_send, runs[0].campaign_id)


def test_a_digest_that_comes_due_during_a_long_send_runs_on_time(sqlite_url, tmp_path):
    """The long send is under way — the server holds its first copy — when the clock passes the
    Monday 08:00 digest (catch-up none: at most 5 minutes late). The worker must notice it while
    sending, not after (when it would be too late). The server lets the copy through only once the
    worker has decided to make way (``on_turn``), so the send cannot end first, however fast or
    slow the machine is; and the clock moves only when the test moves it."""
    engine = setup_db(sqlite_url, 40)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "harbour-lights", paris(2026, 11, 26, 9))
    weekly_digest(engine, config, articles, catch_up="none")
    long_send = campaign_titled(engine, config, "Winter opening hours")
    schedule_campaign_at(engine, long_send, "2026-11-30 07:50", "Europe/Paris", now=paris(2026, 11, 24))
    clock, gate, turns = ManualClock(paris(2026, 11, 30, 7, 59, 30)), threading.Event(), []

    def on_turn(cid, reason):
        turns.append((cid, reason))
        gate.set()

    with SMTPTestServer(hold=gate) as srv:
        with worker_thread(engine, config, clock=clock, poll_interval=0.1, smtp=srv.url, concurrency=1,
                           retry_delays=(0,), on_turn=on_turn) as lines:
            try:
                assert wait_until(lambda: srv.stats.rcpt_attempts > 0, 30), lines  # the long send's first copy
                clock.set(paris(2026, 11, 30, 8, 0, 30))
                assert wait_until(lambda: digest_done(engine, long_send), 60), lines
            finally:
                gate.set()
        counts = srv.recipient_counts()
    assert turns == [(long_send, "digest 'weekly' came due")], lines
    [run] = dg.show_digest(engine, "weekly").runs
    assert run.status == "created", lines
    assert not [x for x in lines if x.startswith("warning: ")], lines
    created = next(i for i, x in enumerate(lines) if f"campaign {run.campaign_id} created" in x)
    done = next(i for i, x in enumerate(lines) if x.startswith(f"campaign {long_send}: finished"))
    assert created < done, lines  # the digest ran while the long send was still going
    assert any(f"campaign {long_send}: running (interrupted: digest 'weekly' came due" in x for x in lines), lines
    # The interrupted send lost and doubled nothing; both went to everyone once.
    assert len(counts) == 40 and set(counts.values()) == {2}
    assert finished(engine, long_send, run.campaign_id)


def test_a_scheduled_campaign_that_comes_due_during_a_long_send_starts_at_its_time(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 30)
    config = config_for(sqlite_url, tmp_path)
    long_send = campaign_titled(engine, config, "Winter opening hours")
    notice = campaign_titled(engine, config, "Road closure tonight")
    schedule_campaign_at(engine, long_send, "2026-12-01 07:50", "Europe/Paris", now=paris(2026, 11, 24))
    schedule_campaign_at(engine, notice, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    clock, gate = ManualClock(paris(2026, 12, 1, 7, 59, 50)), threading.Event()
    with SMTPTestServer(hold=gate) as srv:  # the long send's first copy waits until the worker makes way
        with worker_thread(engine, config, clock=clock, poll_interval=0.1, smtp=srv.url, concurrency=1,
                           on_turn=lambda cid, reason: gate.set()) as lines:
            try:
                assert wait_until(lambda: srv.stats.rcpt_attempts > 0, 30), lines
                clock.set(paris(2026, 12, 1, 8, 0, 1))
                assert wait_until(lambda: finished(engine, long_send, notice), 60), lines
            finally:
                gate.set()
        subjects = [m.headers["Subject"] for m in srv.received()]
    started = next(i for i, x in enumerate(lines) if f"campaign {notice}: scheduled time reached" in x)
    done = next(i for i, x in enumerate(lines) if x.startswith(f"campaign {long_send}: finished"))
    assert started < done, lines
    assert any(f"campaign {long_send}: running (interrupted: campaign {notice} came due" in x for x in lines), lines
    # ... and it is sent then too, not after the long one: its copies come before the long one's last.
    assert subjects.index("Road closure tonight") < len(subjects) - 1 - subjects[::-1].index("Winter opening hours")


def test_two_running_campaigns_take_turns(sqlite_url, tmp_path):
    engine = setup_db(sqlite_url, 20)
    config = config_for(sqlite_url, tmp_path)
    first = campaign_titled(engine, config, "Winter opening hours")
    second = campaign_titled(engine, config, "Road closure tonight")
    for cid in (first, second):
        schedule_campaign_at(engine, cid, "2026-12-01 08:00", "Europe/Paris", now=paris(2026, 11, 24))
    gate, turns = threading.Event(), []

    def on_turn(cid, reason):
        turns.append((cid, reason))
        gate.set()

    # The first campaign's first copy waits at the server until its slice is over and it makes way.
    with SMTPTestServer(hold=gate) as srv:
        report = run_worker(engine, config, once=True, now=paris(2026, 12, 1, 8, 0, 1), smtp=srv.url, concurrency=1,
                            poll_interval=0.1, campaign_slice=0.3, on_turn=on_turn)
        subjects = [m.headers["Subject"] for m in srv.received()]
        counts = srv.recipient_counts()
    # One `--once` run finishes both, and neither waited for the other to end.
    assert get_campaign(engine, first).status == get_campaign(engine, second).status == "finished"
    assert turns[0] == (first, f"campaign {second}'s turn")
    assert report.passes >= 2 and not report.errors
    last_first = len(subjects) - 1 - subjects[::-1].index("Winter opening hours")
    assert subjects.index("Road closure tonight") < last_first, subjects
    assert len(counts) == 20 and set(counts.values()) == {2}


def test_an_occurrence_dropped_under_catch_up_none_is_a_warning_line(sqlite_url, tmp_path, caplog):
    import logging

    engine = setup_db(sqlite_url, 1)
    config = config_for(sqlite_url, tmp_path)
    articles = tmp_path / "articles"
    write_article(articles, "harbour-lights", paris(2026, 11, 26, 9))
    weekly_digest(engine, config, articles, catch_up="none")
    lines: list[str] = []
    report = run_worker(engine, config, once=True, now=paris(2026, 11, 30, 8, 10), on_event=lines.append)
    assert report.digest_runs == []
    [warning] = [x for x in lines if x.startswith("warning: ")]
    assert "digest 'weekly'" in warning and "dropped 1 missed occurrence(s)" in warning and "10 min late" in warning
    # Without an event sink (a library caller), it is logged at WARNING level.
    with caplog.at_level(logging.INFO, logger="newsletter.worker"):
        run_worker(engine, config, once=True, now=paris(2026, 12, 7, 8, 30))
    dropped = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert [r.levelno for r in dropped] == [logging.WARNING] and "30 min late" in dropped[0].getMessage()
