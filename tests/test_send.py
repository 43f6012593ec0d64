"""Sending a campaign through the ledger to a real SMTP server on 127.0.0.1 (aiosmtpd).

Each test reads like a promise the dispatcher makes: one copy per active reader, retries for
temporary failures, permanent failures recorded, unknown users suppressed, rate limits kept.
"""

from __future__ import annotations

import email
import email.policy
import random
import re
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Callable

import pytest
from sqlalchemy import select

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.campaigns import campaign_info, get_campaign, pause_campaign, resume_campaign
from newsletter.config import Config
from newsletter.dispatch.oneoff import send_one, send_test
from newsletter.dispatch.ratelimit import RateLimiter
from newsletter.dispatch.retry import retry_decision
from newsletter.dispatch.sender import send_campaign
from newsletter.errors import DispatchError, InvalidInput, StateError
from newsletter.store import queries as q
from newsletter.store.leaving import unsubscribe
from newsletter.store.suppressions import find_suppression, suppress
from smtp_server import RefusingServer, free_port, max_in_window


@pytest.fixture
def env_any(db_url, tmp_path):
    """A migrated database on SQLite and on PostgreSQL (for what depends on SQL)."""
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    yield engine, config
    engine.dispose()


@pytest.fixture
def env(sqlite_url, tmp_path):
    """A migrated SQLite database (SMTP behaviour does not depend on the database)."""
    engine = setup_db(sqlite_url)
    config = make_config(sqlite_url, tmp_path)
    yield engine, config
    engine.dispose()


def counts(engine, cid):
    with engine.begin() as conn:
        return q.counts_by_state(conn, cid)


def test_every_active_subscriber_gets_exactly_one_copy_and_nobody_else(env_any, smtp_server):
    engine, config = env_any
    weekly = add_people(engine, "weekly", 40)
    extra = add_people(engine, "extra", 10, start=100)
    add_people(engine, "weekly", 5, start=200, status="unsubscribed")
    add_people(engine, "weekly", 5, start=300, status="unconfirmed")
    add_people(engine, "other", 5, start=400)  # not a target list
    suppress(engine, "reader3@example.com", reason="test")
    # someone on both target lists gets one copy
    from newsletter.store.subscribers import add_subscriber

    add_subscriber(engine, "reader100@example.com", list_slug="weekly")
    c = make_campaign(engine, config, slugs=("weekly", "extra"))
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url, concurrency=3)
    expected = (set(weekly) | set(extra)) - {"reader3@example.com"}
    got = smtp_server.recipient_counts()
    assert set(got) == expected
    assert max(got.values()) == 1
    assert s.status == "finished" and s.counts == {"sent": len(expected)} and s.sent_now == len(expected)
    assert get_campaign(engine, c.id).finished_at is not None
    # sending a finished campaign again is refused and sends nothing
    with pytest.raises(StateError):
        send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert len(smtp_server.received()) == len(expected)


def test_messages_carry_personalization_and_list_unsubscribe(env, smtp_server):
    from newsletter.store.tokens import verify_unsubscribe_token

    engine, config = env
    add_people(engine, "weekly", 3)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    m = smtp_server.by_recipient("reader1@example.com")[0].message()
    assert m["To"] == "Reader 1 <reader1@example.com>"
    assert m["From"] == "The Weekly <news@example.org>"
    assert m["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = m["List-Unsubscribe"].split(",")[0].strip("<> ")
    assert url.startswith("https://news.example.org/unsubscribe/")
    sid, lid = verify_unsubscribe_token(config.secret_key.encode(), url.rsplit("/", 1)[1])
    with engine.begin() as conn:
        row = conn.execute(select(q.deliveries).where(q.deliveries.c.email == "reader1@example.com")).mappings().one()
    assert (sid, lid) == (row["subscriber_id"], row["list_id"])
    assert row["message_id"] == m["Message-ID"]
    html = m.get_body(("html",)).get_content()
    assert "Hello Reader 1," in html and url in html
    from newsletter.store.tokens import view_key, view_token  # the reader's own web version, signed

    assert f"https://news.example.org/view/{view_token(view_key(config.secret_key.encode()), c.id, sid)}" in html
    assert m.get_body(("plain",)).get_content().startswith("Hello Reader 1,")


def test_tempfail_is_deferred_then_retried_then_sent(env_any, smtp_server_factory):
    engine, config = env_any
    add_people(engine, "weekly", 6)
    srv = smtp_server_factory(tempfail_first=2)  # every address: 451 twice, then accepted
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.status == "finished" and s.counts == {"sent": 6}
    assert s.deferred_now == 12 and srv.recipient_counts() == {f"reader{i}@example.com": 1 for i in range(6)}
    with engine.begin() as conn:
        rows = q.delivery_rows(conn, c.id)
    assert {r.attempts for r in rows} == {3}


def test_tempfail_beyond_max_attempts_fails(env, smtp_server_factory):
    engine, config = env
    config.max_attempts = 2
    add_people(engine, "weekly", 2)
    srv = smtp_server_factory(tempfail_first=5)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"failed": 2} and s.status == "finished", s
    with engine.begin() as conn:
        assert all("gave up after 2 attempts" in r.last_reply for r in q.delivery_rows(conn, c.id))


def test_retry_time_starts_at_the_first_try_later_not_when_the_ledger_was_made(env_any, smtp_server_factory):
    """A campaign paused for three days before anyone was tried: its copies still get the whole
    retry_max_age of retries from their first 4xx, instead of failing at once."""
    engine, config = env_any
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(tempfail_first=1)
    c = make_campaign(engine, config)
    with engine.begin() as conn:  # the ledger, made three days ago (the campaign was then paused)
        q.create_ledger(conn, c.id, now=q.utcnow() - timedelta(days=3))
        conn.execute(q.campaigns.update().where(q.campaigns.c.id == c.id).values(ledger_created_at=q.utcnow() - timedelta(days=3)))
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.status == "finished" and s.counts == {"sent": 3}, s
    with engine.begin() as conn:
        rows = conn.execute(select(q.deliveries).where(q.deliveries.c.campaign_id == c.id)).all()
    assert {r.attempts for r in rows} == {2} and all(r.first_deferred_at is not None for r in rows)


def _simulate(config, outage_s: float, now0: datetime) -> tuple[str, int, float]:
    """One copy retried by the sender's policy against a server answering 4xx for ``outage_s``:
    (final state, attempts, seconds from the first attempt to that outcome), on a simulated clock."""
    t, attempts = 0.0, 0
    while True:
        attempts += 1
        if t >= outage_s:
            return "sent", attempts, t
        state, _, nxt = retry_decision(config, attempts, now0, "451 4.7.1 try later", now=now0 + timedelta(seconds=t))
        if state == "failed":
            return state, attempts, t
        t = (nxt - now0).total_seconds()


@pytest.mark.parametrize("outage_h", [10 / 60, 1, 6, 24, 47])
def test_default_retry_policy_outlasts_a_temporary_failure_of_hours(outage_h):
    """With the default settings (60 s doubling to 1 h, for 2 days), a server that answers
    "try later" for ten minutes — or for most of two days — still gets every copy in the end,
    within an hour of coming back. (The old default of 5 attempts failed about 20 % of readers
    after a ten-minute outage: their four retries all fell inside it.)"""
    config, now0 = Config(), datetime(2026, 12, 1, tzinfo=timezone.utc)
    random.seed(outage_h)
    for _ in range(2000):
        state, attempts, t = _simulate(config, outage_h * 3600, now0)
        assert state == "sent", (attempts, t)
        assert t - outage_h * 3600 <= config.retry_max_delay


def test_default_retry_policy_gives_up_on_a_permanent_4xx_after_two_days():
    config, now0 = Config(), datetime(2026, 12, 1, tzinfo=timezone.utc)
    random.seed(1)
    for _ in range(2000):
        state, attempts, t = _simulate(config, float("inf"), now0)
        assert state == "failed" and t <= config.retry_max_age and attempts <= config.max_attempts
        assert t >= config.retry_max_age or attempts == config.max_attempts


def _scaled_defaults(config, retry_base: float):
    """The default retry settings with every duration scaled so the first delay is ``retry_base``."""
    d = Config()
    k = retry_base / d.retry_base
    config.retry_base, config.retry_max_delay, config.retry_max_age = retry_base, d.retry_max_delay * k, d.retry_max_age * k
    config.max_attempts = d.max_attempts
    return k


def test_tempfail_outlasting_the_early_retries_ends_in_one_copy_each(env_any, smtp_server_factory):
    """The default policy scaled 6000× down (0.01 s doubling to 0.6 s, for 29 s): the server answers
    451 to each reader's first six attempts — an outage longer than the first five retries add up
    to, and more attempts than the old limit of five. Counted in attempts, not seconds, so a slow
    machine sees the same thing. Everyone is delivered, once."""
    engine, config = env_any
    _scaled_defaults(config, 0.01)
    people = add_people(engine, "weekly", 20)
    srv = smtp_server_factory(tempfail_first=6)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.status == "finished" and s.counts == {"sent": 20}, s
    assert srv.recipient_counts() == {p: 1 for p in people}
    with engine.begin() as conn:
        rows = q.delivery_rows(conn, c.id)
    assert {r.attempts for r in rows} == {7}  # six refusals, then the copy that went
    assert srv.stats.tempfailed == 6 * 20


def test_permanent_tempfail_fails_when_the_retry_age_is_reached(env, smtp_server_factory):
    engine, config = env
    config.retry_base, config.retry_max_delay, config.retry_max_age = 0.05, 0.2, 1.0
    config.max_attempts = Config().max_attempts
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(tempfail_until=time.time() + 3600)
    c = make_campaign(engine, config)
    t0 = time.monotonic()
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.status == "finished" and s.counts == {"failed": 3} and srv.received() == []
    assert time.monotonic() - t0 >= 1.0  # not given up before retry_max_age
    with engine.begin() as conn:
        rows = q.delivery_rows(conn, c.id)
    # at least retry_max_age (1 s, checked above); a loaded machine may reach it later
    assert all(re.match(r"gave up after \d+ s of retries", r.last_reply) and "451 4.7.1" in r.last_reply for r in rows)
    # how many attempts fit in 1 s depends on the machine; that the limit is the age, not a count, does not
    assert all(2 <= r.attempts < config.max_attempts for r in rows)


def test_permanent_failure_and_unknown_user_suppressed_others_unaffected(env_any, smtp_server_factory):
    engine, config = env_any
    add_people(engine, "weekly", 8)
    srv = smtp_server_factory(reject={"reader2@example.com"})
    srv.behaviour.reject = {"reader2@example.com", "reader5@example.com"}
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.counts == {"sent": 6, "failed": 2}
    assert sorted(s.suppressed) == ["reader2@example.com", "reader5@example.com"]
    assert find_suppression(engine, "reader2@example.com") is not None
    with engine.begin() as conn:
        failed = q.delivery_rows(conn, c.id, ("failed",))
    assert all(r.last_reply.startswith("550 5.1.1") for r in failed)
    assert len(srv.received()) == 6


def test_policy_rejection_5xx_fails_without_suppressing(env, smtp_server_factory):
    engine, config = env
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(reject={"reader1@example.com"}, reject_code="554 5.7.1 <{addr}>: Relay access denied")
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"sent": 2, "failed": 1} and s.suppressed == []
    assert find_suppression(engine, "reader1@example.com") is None


@pytest.mark.parametrize("reply, suppressed", [
    ("550 5.7.1 <{addr}>: Requested action not taken: mailbox unavailable (blocked by policy)", False),
    ("550 5.7.606 Access denied, banned sending IP; mailbox unavailable", False),
    ("550 5.1.1 <{addr}>: Requested action not taken: mailbox unavailable", True),
])
def test_only_an_unknown_user_code_suppresses(env, smtp_server_factory, reply, suppressed):
    """A 5.7.x policy block at RCPT says nothing about the reader's mailbox even when its text
    says "mailbox unavailable": the copy fails, the reader stays. 5.1.1 suppresses."""
    engine, config = env
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(reject={"reader1@example.com"}, reject_code=reply)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"sent": 2, "failed": 1}
    assert s.suppressed == (["reader1@example.com"] if suppressed else [])
    assert (find_suppression(engine, "reader1@example.com") is not None) is suppressed
    with engine.begin() as conn:
        (row,) = q.delivery_rows(conn, c.id, ("failed",))
    assert row.email == "reader1@example.com" and row.last_reply.startswith(reply.split(" <")[0][:9])


def test_connection_dropped_mid_data_is_retried(env, smtp_server_factory):
    engine, config = env
    add_people(engine, "weekly", 10)
    srv = smtp_server_factory(drop_data=3)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.status == "finished" and s.counts == {"sent": 10}
    assert srv.stats.dropped == 3 and s.deferred_now == 3
    assert max(srv.recipient_counts().values()) == 1 and len(srv.recipient_counts()) == 10


def test_slow_server_beyond_timeout_defers_then_sends(env, smtp_server_factory):
    engine, config = env
    config.smtp_timeout = 0.3
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(delay=2.0)  # far beyond the client's 0.3 s, even on a busy machine
    c = make_campaign(engine, config)

    def gave_up_once() -> bool:  # a copy was deferred after the timeout (or already retried)
        with engine.begin() as conn:
            return any(r.state == "deferred" or r.attempts >= 2 for r in q.delivery_rows(conn, c.id))

    def speed_up():  # once the sender has given up on a first copy, not after a guessed time
        deadline = time.monotonic() + 30
        while not gave_up_once() and time.monotonic() < deadline:
            time.sleep(0.01)
        srv.behaviour.delay = 0.01

    threading.Thread(target=speed_up, daemon=True).start()
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=1)
    assert s.status == "finished" and s.counts.get("sent") == 3
    assert s.deferred_now >= 1
    with engine.begin() as conn:
        assert any(r.attempts > 1 for r in q.delivery_rows(conn, c.id))


def test_slow_server_within_timeout_is_just_slow(env, smtp_server_factory):
    engine, config = env
    add_people(engine, "weekly", 6)
    srv = smtp_server_factory(delay=0.05, rcpt_delay=0.02)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=3)
    assert s.counts == {"sent": 6} and s.deferred_now == 0
    assert srv.stats.peak_connections <= 3


def record_grants() -> tuple[dict[str, list[float]], Callable[..., RateLimiter]]:
    """A ``SendOptions.limiter_factory`` whose limiters (the send's and each SMTP server's) record,
    by rate spec, the clock reading each grant was decided at (``on_grant``). The limiters run
    unchanged; the test only watches.

    Pacing is checked on these grant times, not on the server's receive times: between a grant and
    the server's receipt lie a build, a ledger commit and SMTP round trips, whose latency a busy
    machine stretches unevenly — a test on receive times depends on the machine's speed."""
    grants: dict[str, list[float]] = {}

    def limiter_factory(rate, window=None, **kw) -> RateLimiter:
        return RateLimiter.from_specs(rate, window, on_grant=grants.setdefault(str(rate), []).append, **kw)

    return grants, limiter_factory


def assert_paced(stamps, rate: float, what: str = "") -> None:
    """The bound a token bucket with a burst of 1 (GCRA) keeps, checked on its grant times.

    The limiter grants messages at least 1/rate apart, so a closed window of W seconds holds at
    most floor(rate·W) + 1 grants — exactly rate·W + 1 when W is a whole number of intervals, as
    here. Short windows catch bursts a one-second count would hide."""
    stamps = sorted(stamps)
    interval = 1 / rate
    for k in (2, 5, 10, int(rate)):  # windows of 2, 5, 10 intervals and of one second
        w = k * interval
        assert max_in_window(stamps, w) <= k + 1, f"{what}: more than {k + 1} messages within {w:.2f} s at {rate:g}/s"
    # n messages span at least (n - 1) intervals; allow the same one-interval latency spread
    assert stamps[-1] - stamps[0] >= (len(stamps) - 2) * interval, what


def test_rate_limit_holds_across_connections(env, smtp_server):
    engine, config = env
    grants, limiter_factory = record_grants()
    add_people(engine, "weekly", 30)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url, concurrency=4, rate="20/s", limiter_factory=limiter_factory)
    assert s.counts == {"sent": 30}
    assert len(grants["20/s"]) == len(smtp_server.received()) == 30  # every message went through the limiter
    assert_paced(grants["20/s"], 20)


def test_unsubscribed_or_suppressed_mid_send_are_skipped(env_any, smtp_server):
    engine, config = env_any
    add_people(engine, "weekly", 10)
    c = make_campaign(engine, config)
    with engine.begin() as conn:
        q.create_ledger(conn, c.id)
        conn.execute(q.campaigns.update().where(q.campaigns.c.id == c.id).values(ledger_created_at=q.utcnow()))
    unsubscribe(engine, "reader4@example.com", "weekly")
    suppress(engine, "reader7@example.com")
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert s.counts == {"sent": 8, "skipped": 2}
    assert "reader4@example.com" not in smtp_server.recipient_counts()
    assert "reader7@example.com" not in smtp_server.recipient_counts()


def test_who_leaves_after_their_row_was_claimed_is_still_skipped(env_any, smtp_server):
    """Claims run ahead of the lanes (all 8 rows here are claimed at once); at 4 messages/s the
    last copies wait ~2 s in the queue, and readers who leave meanwhile must get nothing."""
    engine, config = env_any
    add_people(engine, "weekly", 8)
    c = make_campaign(engine, config)

    def leaver():
        smtp_server.wait_for(1, timeout=10)
        unsubscribe(engine, "reader7@example.com", "weekly")
        suppress(engine, "reader6@example.com", reason="complaint")

    t = threading.Thread(target=leaver, daemon=True)
    t.start()
    s = send_campaign(engine, c.id, config, smtp=smtp_server.url, concurrency=1, rate="4/s")
    t.join(timeout=10)
    got = smtp_server.recipient_counts()
    assert "reader7@example.com" not in got and "reader6@example.com" not in got
    assert sum(got.values()) == 6
    assert s.counts == {"sent": 6, "skipped": 2} and s.skipped_now == 2
    with engine.begin() as conn:
        rows = {r.email: r for r in q.delivery_rows(conn, c.id, ("skipped",))}
    assert set(rows) == {"reader6@example.com", "reader7@example.com"}
    assert all("unsubscribed or suppressed" in r.last_reply for r in rows.values())


def test_pause_from_elsewhere_stops_and_resume_finishes_without_duplicates(env_any, smtp_server_factory):
    engine, config = env_any
    add_people(engine, "weekly", 40)
    srv = smtp_server_factory(delay=0.02)
    c = make_campaign(engine, config)

    def pauser():
        srv.wait_for(5, timeout=10)
        pause_campaign(engine, c.id)

    threading.Thread(target=pauser, daemon=True).start()
    s1 = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s1.status == "paused" and s1.stopped == "paused"
    left = counts(engine, c.id)
    assert left.get("claimed", 0) == 0 and left.get("sending", 0) == 0 and left.get("pending", 0) > 0
    # `send` does not override the user's pause: they resume it first
    got = len(srv.received())
    with pytest.raises(StateError, match=rf"campaign {c.id} is paused \(paused by the user\): "
                                         rf"run `newsletter campaigns resume {c.id}` first"):
        send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert counts(engine, c.id) == left and len(srv.received()) == got
    assert get_campaign(engine, c.id).status == "paused"
    resume_campaign(engine, c.id)
    s2 = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s2.status == "finished" and s2.counts == {"sent": 40}
    assert len(srv.recipient_counts()) == 40 and max(srv.recipient_counts().values()) == 1


def test_stop_event_releases_claimed_rows_and_send_resumes(env_any, smtp_server_factory):
    engine, config = env_any
    add_people(engine, "weekly", 40)
    srv = smtp_server_factory(delay=0.02)
    c = make_campaign(engine, config)
    stop = threading.Event()
    threading.Thread(target=lambda: (srv.wait_for(4, timeout=10), stop.set()), daemon=True).start()
    s1 = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2, stop_event=stop)
    assert s1.stopped == "stop requested" and s1.status == "running"
    mid = counts(engine, c.id)
    assert mid.get("claimed", 0) == 0 and mid.get("sending", 0) == 0
    s2 = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s2.status == "finished" and s2.counts == {"sent": 40} and s2.ambiguous == []
    assert max(srv.recipient_counts().values()) == 1


def test_keyboard_interrupt_in_the_callers_thread_stops_the_lanes_too(env_any, smtp_server):
    """A library caller's Ctrl-C (KeyboardInterrupt in the thread running send_campaign) must not
    leave the lanes sending the claimed rows: they stop, the rows go back to pending."""
    engine, config = env_any
    add_people(engine, "weekly", 20)
    c = make_campaign(engine, config)
    at: list[float] = []

    def progress(p):
        if p.sent_now >= 2 and not at:
            at.append(time.time())
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        send_campaign(engine, c.id, config, smtp=smtp_server.url, concurrency=2, rate="4/s", progress_callback=progress)
    # no lane is left running (rather than sleeping and hoping one would show itself)
    assert not [t for t in threading.enumerate() if t.name.startswith("send-lane-") and t.is_alive()]
    got = smtp_server.received()
    assert len([m for m in got if m.received_at > at[0]]) <= 2
    assert counts(engine, c.id) == {"sent": len(got), "pending": 20 - len(got)}


def test_auto_pause_after_consecutive_connection_failures(env, smtp_server_factory):
    engine, config = env
    config.max_connection_failures = 3
    add_people(engine, "weekly", 10)
    srv = smtp_server_factory(drop_data=1000)  # the server dies during every DATA
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=1)
    assert s.status == "paused" and "auto-paused after 3 consecutive connection failures" in s.status_reason
    left = counts(engine, c.id)
    assert left.get("sent", 0) == 0 and left.get("claimed", 0) == 0 and left.get("sending", 0) == 0
    with engine.begin() as conn:
        assert sum(r.attempts for r in q.delivery_rows(conn, c.id)) == 3 == srv.stats.dropped
    # the sender's own pause may be continued by `send` once the server is back; the summary says so
    good = smtp_server_factory()
    s2 = send_campaign(engine, c.id, config, smtp=good.url, concurrency=1)
    assert s2.status == "finished" and s2.counts == {"sent": 10}
    assert s2.resumed_from and s2.resumed_from.startswith("auto-paused after 3 consecutive connection failures")


def test_several_servers_spread_each_paced_and_a_dead_one_leaves_rotation(env, smtp_server_factory):
    from newsletter.config import SMTPServer

    engine, config = env
    grants, limiter_factory = record_grants()
    config.max_connection_failures = 2
    a, b = smtp_server_factory(), smtp_server_factory()
    with RefusingServer() as dead:  # up, but greets every connection with 421 and hangs up
        config.smtp = {
            "a": SMTPServer(name="a", url=a.url, max_connections=2, rate="20/s"),
            "b": SMTPServer(name="b", url=b.url, max_connections=2, rate="10/s"),
            "dead": SMTPServer(name="dead", url=dead.url, max_connections=1),
        }
        add_people(engine, "weekly", 60)
        c = make_campaign(engine, config)
        s = send_campaign(engine, c.id, config, smtp="a,b,dead", concurrency=5, limiter_factory=limiter_factory)
    assert s.status == "finished" and s.counts == {"sent": 60}
    got = a.recipient_counts() + b.recipient_counts()
    assert len(got) == 60 and max(got.values()) == 1
    assert a.stats.peak_connections <= 2 and b.stats.peak_connections <= 2
    # each server's own rate holds, from its own limiter's grants (30/s together: about 2 s)
    assert len(grants["20/s"]) >= len(a.received()) and len(grants["10/s"]) >= len(b.received())
    assert_paced(grants["20/s"], 20, "a")
    assert_paced(grants["10/s"], 10, "b")
    assert len(b.received()) >= 10 and len(a.received()) >= 20  # both carried their share
    # dead: tried when the send started, then by its lane until max_connection_failures in a row,
    # then never again while a and b carried on
    assert len(dead.connections) == 1 + config.max_connection_failures
    last_try = max(dead.connections)
    assert sum(1 for t in a.timestamps() + b.timestamps() if t > last_try) >= 10


def test_auth_login_and_refused_login_leaves_ledger_unchanged(env_any, smtp_server_factory, monkeypatch):
    engine, config = env_any
    add_people(engine, "weekly", 3)
    srv = smtp_server_factory(auth=("ana", "correct horse"))
    c = make_campaign(engine, config)
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "wrong")
    with pytest.raises(DispatchError) as e:
        send_campaign(engine, c.id, config, smtp=srv.url)
    assert "refused the login" in str(e.value) and "wrong" not in str(e.value)
    assert counts(engine, c.id) == {} and get_campaign(engine, c.id).status == "draft"
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "correct horse")
    s = send_campaign(engine, c.id, config, smtp=srv.url)
    assert s.counts == {"sent": 3}


def test_server_requiring_a_login_stops_the_send_at_once_and_burns_no_attempt(env_any, smtp_server_factory,
                                                                             monkeypatch):
    """530 5.7.0 at MAIL FROM is a configuration problem, not a temporary one: no retries for
    minutes, no deferred rows — one clear error and the ledger as it was (rows pending)."""
    engine, config = env_any
    add_people(engine, "weekly", 12)
    srv = smtp_server_factory(auth=("ana", "correct horse"))
    c = make_campaign(engine, config)
    bare = f"smtp://127.0.0.1:{srv.port}"
    with pytest.raises(DispatchError) as e:
        send_campaign(engine, c.id, config, smtp=bare, concurrency=2)
    msg = str(e.value)
    assert msg.startswith(f"{bare} requires authentication: give a user in the URL and NEWSLETTER_SMTP_PASSWORD")
    assert "\n" not in msg and "530" in msg
    assert srv.stats.mail_attempts <= 2  # one try per connection, then stop
    assert counts(engine, c.id) == {"pending": 12}
    with engine.begin() as conn:
        assert all(r.attempts == 0 for r in q.delivery_rows(conn, c.id))
    monkeypatch.setenv("NEWSLETTER_SMTP_PASSWORD", "correct horse")
    s = send_campaign(engine, c.id, config, smtp=f"smtp://ana@127.0.0.1:{srv.port}", concurrency=2)
    assert s.counts == {"sent": 12} and max(srv.recipient_counts().values()) == 1


@pytest.mark.parametrize("mode", ["starttls", "implicit"])
def test_tls_modes(env, smtp_server_factory, monkeypatch, mode):
    engine, config = env
    add_people(engine, "weekly", 2)
    srv = smtp_server_factory(tls=mode)
    monkeypatch.setenv("SSL_CERT_FILE", str(srv.cert))
    c = make_campaign(engine, config)
    url = srv.url.replace("127.0.0.1", "localhost")
    s = send_campaign(engine, c.id, config, smtp=url, tls="starttls" if mode == "starttls" else None)
    assert s.counts == {"sent": 2} and len(srv.received()) == 2


def test_unreachable_server_is_one_error_and_nothing_changes(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    with pytest.raises(DispatchError, match="connection refused"):
        send_campaign(engine, c.id, config, smtp=f"smtp://127.0.0.1:{free_port()}")
    assert counts(engine, c.id) == {} and get_campaign(engine, c.id).status == "draft"


def test_no_active_subscribers_refused(env_any, smtp_server):
    engine, config = env_any
    add_people(engine, "weekly", 3, status="unsubscribed")
    c = make_campaign(engine, config)
    with pytest.raises(DispatchError, match="no active subscribers"):
        send_campaign(engine, c.id, config, smtp=smtp_server.url)
    assert counts(engine, c.id) == {} and get_campaign(engine, c.id).status == "draft"


def test_header_injection_refused_at_creation(env):
    engine, config = env
    add_people(engine, "weekly", 1)
    for kw in ({"subject": "Hi\r\nBcc: victim@example.net"}, {"reply_to": "a@example.org\nBcc: x@example.net"},
               {"headers": {"X-Tag": "a\r\nBcc: x@example.net"}}, {"from_address": "News <n@example.org>\r\nBcc: x@example.net"}):
        with pytest.raises(InvalidInput):
            make_campaign(engine, config, **kw)
    with engine.begin() as conn:
        assert conn.execute(select(q.campaigns.c.id)).first() is None


def test_outbox_writes_one_file_per_recipient_atomically(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 25)
    c = make_campaign(engine, config)
    out = tmp_path / "mail"
    s = send_campaign(engine, c.id, config, outbox=str(out), concurrency=3)
    files = sorted(out.iterdir())
    assert s.counts == {"sent": 25} and len(files) == 25
    assert all(f.suffix == ".eml" and not f.name.startswith(".tmp") for f in files)
    tos = set()
    for f in files:
        m = email.message_from_bytes(f.read_bytes(), policy=email.policy.default)
        tos.add(m["To"].addresses[0].addr_spec)
        assert m["X-Envelope-To"] == f"<{m['To'].addresses[0].addr_spec}>"
    assert len(tos) == 25


def test_default_transport_is_the_outbox(env, tmp_path):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    s = send_campaign(engine, c.id, config)
    assert "outbox" in s.transport and len(list((tmp_path / "outbox").glob("*.eml"))) == 2


def test_second_sqlite_sender_is_told_who_holds_the_campaign(tmp_path, smtp_server_factory):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    engine = setup_db(url)
    config = make_config(url, tmp_path)
    add_people(engine, "weekly", 30)
    srv = smtp_server_factory(delay=0.03)
    c = make_campaign(engine, config)
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("s", send_campaign(engine, c.id, config, smtp=srv.url, concurrency=1)))
    t.start()
    srv.wait_for(2, timeout=10)
    with pytest.raises(DispatchError, match="being sent by another process"):
        send_campaign(engine, c.id, config, smtp=srv.url)
    t.join(30)
    assert result["s"].counts == {"sent": 30} and max(srv.recipient_counts().values()) == 1


def test_dkim_signature_verifies(env, smtp_server, tmp_path):
    import subprocess

    import dkim

    pem_path = tmp_path / "dkim.pem"
    subprocess.run(["openssl", "genrsa", "-traditional", "-out", str(pem_path), "2048"], check=True, capture_output=True)
    pub = subprocess.run(["openssl", "rsa", "-in", str(pem_path), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    engine, config = env
    config.dkim_key_file, config.dkim_selector, config.dkim_domain = str(tmp_path / "dkim.pem"), "nl", "example.org"
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    import base64

    record = b"v=DKIM1; k=rsa; p=" + base64.b64encode(pub)

    def dnsfunc(name, timeout=5):
        assert name == b"nl._domainkey.example.org."
        return record

    for m in smtp_server.received():
        assert m.headers["DKIM-Signature"]
        assert "list-unsubscribe" in m.headers["DKIM-Signature"].lower()
        assert dkim.verify(m.data, dnsfunc=dnsfunc)
        tampered = m.data.replace(b"soil", b"SOIL", 1)
        assert tampered != m.data
        assert not dkim.verify(tampered, dnsfunc=dnsfunc)


def test_send_one_and_send_test(env, smtp_server):
    engine, config = env
    r = send_one(config, "Zoë <zoe@example.com>", "Please confirm", "<p>Click</p>", "Click", smtp=smtp_server.url)
    m = smtp_server.received()[0]
    assert m.rcpt_tos == ["zoe@example.com"] and m.message_id == r.message_id
    assert m.message()["To"].addresses[0].display_name == "Zoë"
    with pytest.raises(InvalidInput):
        send_one(config, "a@example.com", "x\r\nBcc: b@example.net", None, "t", smtp=smtp_server.url)
    add_people(engine, "weekly", 2)
    c = make_campaign(engine, config)
    send_test(engine, c.id, config, "reader1@example.com", smtp=smtp_server.url)
    t = smtp_server.by_recipient("reader1@example.com")[0].message()
    assert t["Subject"].startswith("[TEST] ") and "Hello Reader 1" in t.get_body(("html",)).get_content()
    assert counts(engine, c.id) == {}


def test_campaign_info_counts(env, smtp_server):
    engine, config = env
    add_people(engine, "weekly", 4)
    c = make_campaign(engine, config)
    assert campaign_info(engine, c.id).audience == 4
    send_campaign(engine, c.id, config, smtp=smtp_server.url)
    info = campaign_info(engine, c.id)
    assert info.counts == {"sent": 4} and info.status == "finished" and info.as_dict()["total"] == 4


def test_sliding_window_quota_remembers_earlier_sends(env, smtp_server):
    engine, config = env
    config.rate_window = "5/h"
    add_people(engine, "weekly", 3)
    add_people(engine, "later", 5, start=100)
    first = make_campaign(engine, config)
    assert send_campaign(engine, first.id, config, smtp=smtp_server.url).counts == {"sent": 3}
    second = make_campaign(engine, config, slugs=("later",))
    stop = threading.Event()
    threading.Timer(1.0, stop.set).start()
    s = send_campaign(engine, second.id, config, smtp=smtp_server.url, stop_event=stop)
    # the hour's quota of 5 had 3 used by the first campaign: only 2 more went out
    assert s.sent_now == 2 and s.stopped == "stop requested"
    assert len(smtp_server.received()) == 5


def test_send_one_with_inline_images_and_campaign_images(env, smtp_server):
    from newsletter.compose.model import InlineImage
    from newsletter.dispatch.campaigns import campaign_content, campaign_images

    engine, config = env
    img = InlineImage("thumb@newsletter", "thumb.png", "image/png", b"\x89PNG" + bytes(50))
    send_one(config, "ana@example.com", "Preview", '<img src="cid:thumb@newsletter">', "text", images=[img],
             smtp=smtp_server.url)
    m = smtp_server.received()[0].message()
    assert [p.get_content_type() for p in m.walk()] == [
        "multipart/alternative", "text/plain", "multipart/related", "text/html", "image/png"]
    add_people(engine, "weekly", 1)
    from dispatch_helpers import FakeDigest

    c = make_campaign(engine, config, digest=FakeDigest(images=[img]))
    assert campaign_images(engine, c.id) == [img]
    assert campaign_content(engine, c.id).images == [img]


def test_cancel_while_sending_skips_what_was_claimed(env, smtp_server_factory):
    from newsletter.dispatch.campaigns import cancel_campaign

    engine, config = env
    add_people(engine, "weekly", 60)
    srv = smtp_server_factory(delay=0.02)
    c = make_campaign(engine, config)
    threading.Thread(target=lambda: (srv.wait_for(3, timeout=10), cancel_campaign(engine, c.id)), daemon=True).start()
    s = send_campaign(engine, c.id, config, smtp=srv.url, concurrency=2)
    assert s.status == "cancelled" and s.stopped == "cancelled"
    left = counts(engine, c.id)
    assert set(left) <= {"sent", "skipped"} and left["sent"] == len(srv.received()) < 60


def test_a_copy_s_html_title_is_the_subject_it_is_sent_with(env, tmp_path):
    """Filters flag a <title> that differs from the Subject (SpamAssassin HTML_TITLE_SUBJ_DIFF)."""
    from dispatch_helpers import FakeDigest

    engine, config = env
    add_people(engine, "weekly", 1)
    digest = FakeDigest(html=FakeDigest().html.replace("<html>", "<html><head><title>The composed title</title></head>"))
    c = make_campaign(engine, config, digest=digest, subject="Harbour <news> for *|NAME:reader|*")
    send_campaign(engine, c.id, config, outbox=str(tmp_path / "out"))
    [path] = list((tmp_path / "out").rglob("*.eml"))
    msg = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    html = msg.get_body(("html",)).get_content()
    assert msg["Subject"] == "Harbour <news> for Reader 0"
    assert "<title>Harbour &lt;news&gt; for Reader 0</title>" in html and "composed title" not in html


def test_concurrency_beyond_the_servers_max_connections_is_said_and_a_url_takes_what_is_asked(env, smtp_server_factory,
                                                                                             caplog):
    """A named server's max_connections caps the lanes, with a warning naming both numbers; a
    server given by URL has no table to set a cap in, so --concurrency decides."""
    from newsletter.config import SMTPServer
    from newsletter.dispatch.lanes import lane_plan
    from newsletter.dispatch.preflight import make_transports

    engine, config = env
    srv = smtp_server_factory()
    assert len(lane_plan(make_transports(config, smtp=srv.url), 8)) == 8
    config.smtp = {"main": SMTPServer(name="main", url=srv.url, max_connections=2)}
    add_people(engine, "weekly", 6)
    c = make_campaign(engine, config)
    with caplog.at_level("WARNING", logger="newsletter.dispatch.sender"):
        s = send_campaign(engine, c.id, config, smtp="main", concurrency=5)
    assert s.status == "finished" and s.counts == {"sent": 6}
    assert srv.stats.peak_connections <= 2
    assert any("concurrency 5" in r.getMessage() and "allow 2 connection" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
def test_a_sender_starting_while_another_makes_the_ledger_waits_for_it_and_does_not_make_it_again(
        pg_url, tmp_path, smtp_server):
    """Two workers starting on a campaign together: one makes the ledger, the other waits on the
    campaign's row (``campaign_state(lock=True)``) and then finds it made. Before, both ran the
    ``INSERT … SELECT`` over the whole list (the second after the first committed: a million
    readers took it twice), and the second added readers who joined in between — the ledger is
    made once, at one moment. Here the "other worker" is this test's own transaction."""
    from sqlalchemy import text

    from newsletter.dispatch.campaigns import transition

    engine = setup_db(pg_url)
    config = make_config(pg_url, tmp_path)
    first = add_people(engine, "weekly", 5)
    c = make_campaign(engine, config)
    other = engine.connect()
    try:
        tx = other.begin()
        assert q.campaign_state(other, c.id, lock=True).ledger_created_at is None
        assert q.create_ledger(other, c.id) == 5
        q.mark_ledger_created(other, c.id)
        transition(other, c.id, "running")
        add_people(engine, "weekly", 3, start=50)  # they join while the other worker's ledger is uncommitted
        result: dict = {}
        sender = threading.Thread(target=lambda: result.update(s=send_campaign(engine, c.id, config, smtp=smtp_server.url)))
        sender.start()
        deadline = time.monotonic() + 30
        with engine.connect() as watch:  # the server's own view: some session waits on a lock of ours
            while not watch.execute(text("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                                         "AND wait_event_type = 'Lock'")).scalar():
                assert time.monotonic() < deadline, "the sender never waited for the other worker's ledger"
                assert sender.is_alive(), f"the sender ended without waiting: {result}"
                watch.rollback()
                time.sleep(0.01)
        tx.commit()
    finally:
        other.close()
    sender.join(60)
    assert not sender.is_alive()
    assert result["s"].counts == {"sent": 5}
    assert set(smtp_server.recipient_counts()) == set(first)
    engine.dispose()
