"""The bounce rules, on SQLite and PostgreSQL, with an injected clock.

Copies are put in the ledger and marked sent with the store's own functions at chosen times, so
each rule (hard, soft within a window and its reset, complaint, unmatched, idempotency, the rate
guard) is checked against the database state it promises, not against wall-clock luck.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from dispatch_helpers import add_people, make_campaign, make_config, setup_db
from newsletter.dispatch.campaigns import get_campaign, resume_campaign, transition
from newsletter.errors import ConfigError, StateError
from newsletter.feedback.model import Bounce, BounceKind, BounceSource
from newsletter.feedback.record import RATE_PAUSE_PREFIX, record_bounces
from newsletter.store import queries as q
from newsletter.store.bounce_models import BounceEvent
from newsletter.store.leaving import erase_subscriber
from newsletter.store.subscribers import get_subscriber
from newsletter.store.suppressions import find_suppression

T0 = datetime(2026, 11, 2, 9, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)
events_t = BounceEvent.__table__


@pytest.fixture
def env(db_url, tmp_path):
    engine = setup_db(db_url)
    config = make_config(db_url, tmp_path)
    yield engine, config
    engine.dispose()


def deliver(engine, config, when: datetime, slugs=("weekly",), *, state="sent"):
    """A campaign whose every copy our server accepted at ``when`` (the store's own ledger moves)."""
    c = make_campaign(engine, config, slugs=slugs)
    with engine.begin() as conn:
        q.create_ledger(conn, c.id, now=when)
        conn.execute(q.campaigns.update().where(q.campaigns.c.id == c.id).values(ledger_created_at=when))
        transition(conn, c.id, "running", now=when)
        ids = q.claim_batch(conn, c.id, "w1", 100000, now=when)
        q.record_and_mark_sending(conn, [], [(i, "w1") for i in ids], now=when)
        q.record_and_mark_sending(conn, [{"id": i, "state": state, "reply": "250 ok"} for i in ids], [], now=when)
    return c


def also_on(engine, addr, slug):
    """Put an existing reader on a second list (active)."""
    from newsletter.store.lists import create_list
    from newsletter.store.subscribers import add_subscriber

    create_list(engine, slug, slug.title())
    add_subscriber(engine, addr, list_slug=slug)


def hard(addr, rid, **kw):
    return Bounce(BounceKind.HARD, BounceSource.DSN, recipient=addr, status="5.1.1", reason="user unknown",
                  report_id=rid, **kw)


def soft(addr, rid, cid=None, **kw):
    return Bounce(BounceKind.SOFT, BounceSource.DSN, recipient=addr, status="4.2.2", reason="mailbox full",
                  report_id=rid, campaign_id=cid, **kw)


def statuses(engine, addr):
    return get_subscriber(engine, addr).lists


def rows(engine):
    with engine.begin() as conn:
        return [dict(r) for r in conn.execute(select(events_t).order_by(events_t.c.id)).mappings()]


def test_hard_bounce_takes_the_reader_off_every_list_and_suppresses_the_address(env):
    engine, config = env
    add_people(engine, "weekly", 3)
    also_on(engine, "reader1@example.com", "extra")
    c = deliver(engine, config, T0)
    r = record_bounces(engine, [hard("Reader1@Example.com", "<dsn-1@mx>", campaign_id=c.id)], now=T0 + DAY, config=config)
    assert (r.new, r.bounced, r.unmatched, r.duplicates) == (1, 1, 0, 0)
    assert r.suppressed == ["reader1@example.com"]
    assert statuses(engine, "reader1@example.com") == {"weekly": "bounced", "extra": "bounced"}
    entry = find_suppression(engine, "reader1@example.com")
    assert entry is not None and entry.reason.startswith("hard bounce") and "5.1.1" in entry.reason
    assert statuses(engine, "reader0@example.com") == {"weekly": "active"}
    (ev,) = rows(engine)
    assert ev["recipient"] == "reader1@example.com" and ev["outcome"] == "bounced" and ev["campaign_id"] == c.id
    assert ev["kind"] == "hard" and ev["source"] == "dsn" and ev["status"] == "5.1.1"


def test_the_same_report_twice_counts_once(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    deliver(engine, config, T0)
    b = soft("reader0@example.com", "<dsn-7@mx>")
    first = record_bounces(engine, [b, b], now=T0 + DAY, config=config)
    again = record_bounces(engine, [b], now=T0 + 2 * DAY, config=config)
    assert (first.new, first.duplicates, first.counted) == (1, 1, 1)
    assert (again.new, again.duplicates, again.counted) == (0, 1, 0)
    # a report without an id of its own gets a key from what it says: the same again is the same
    anon = Bounce(BounceKind.SOFT, BounceSource.HEURISTIC, recipient="reader1@example.com", reason="over quota")
    assert record_bounces(engine, [anon], now=T0 + DAY, config=config).new == 1
    assert record_bounces(engine, [anon], now=T0 + DAY, config=config).duplicates == 1
    assert len(rows(engine)) == 2


def test_a_report_about_an_address_we_never_mailed_is_stored_unmatched_and_changes_nothing(env):
    engine, config = env
    add_people(engine, "weekly", 2)  # on the list, but no copy ever went out
    r = record_bounces(engine, [hard("reader0@example.com", "<a@mx>"), hard("stranger@example.net", "<b@mx>"),
                                Bounce(BounceKind.COMPLAINT, BounceSource.ARF, recipient="reader1@example.com",
                                       report_id="<c@fbl>")], now=T0, config=config)
    assert (r.new, r.unmatched, r.bounced, r.complained) == (3, 3, 0, 0)
    assert statuses(engine, "reader0@example.com") == {"weekly": "active"}
    assert find_suppression(engine, "reader0@example.com") is None
    assert find_suppression(engine, "stranger@example.net") is None
    assert {e["outcome"] for e in rows(engine)} == {"unmatched"}
    assert all(e["subscriber_id"] is None for e in rows(engine))


def test_a_campaign_id_from_quoted_headers_is_kept_only_when_that_campaign_mailed_them(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = deliver(engine, config, T0)
    other = make_campaign(engine, config)  # never sent
    record_bounces(engine, [hard("reader0@example.com", "<x@mx>", campaign_id=other.id),
                            hard("reader1@example.com", "<y@mx>", campaign_id=c.id)], now=T0 + DAY, config=config)
    by = {e["recipient"]: e for e in rows(engine)}
    assert by["reader0@example.com"]["campaign_id"] is None and by["reader0@example.com"]["outcome"] == "bounced"
    assert by["reader1@example.com"]["campaign_id"] == c.id


def test_complaint_unsubscribes_as_complained_and_suppresses_with_reason_complaint(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    also_on(engine, "reader0@example.com", "extra")
    c = deliver(engine, config, T0)
    r = record_bounces(engine, [Bounce(BounceKind.COMPLAINT, BounceSource.ARF, recipient="reader0@example.com",
                                       report_id="<fbl-1@yahoo>", campaign_id=c.id)], now=T0 + DAY, config=config)
    assert (r.new, r.complained, r.bounced) == (1, 1, 0)
    assert statuses(engine, "reader0@example.com") == {"weekly": "complained", "extra": "complained"}
    assert find_suppression(engine, "reader0@example.com").reason == "complaint"


@pytest.mark.parametrize("kind", [BounceKind.AUTO_REPLY, BounceKind.DELIVERED, BounceKind.UNKNOWN])
def test_auto_replies_deliveries_and_unknown_reports_change_nothing(env, kind):
    engine, config = env
    add_people(engine, "weekly", 1)
    deliver(engine, config, T0)
    r = record_bounces(engine, [Bounce(kind, BounceSource.HEURISTIC, recipient="reader0@example.com",
                                       report_id="<r@mx>")], now=T0 + DAY, config=config)
    assert (r.new, r.bounced, r.complained, r.counted, r.unmatched) == (1, 0, 0, 0, 0)
    assert statuses(engine, "reader0@example.com") == {"weekly": "active"}
    assert find_suppression(engine, "reader0@example.com") is None
    assert rows(engine)[0]["outcome"] == "none"


def test_three_soft_bounces_within_the_window_act_like_a_hard_one(env):
    engine, config = env
    add_people(engine, "weekly", 1)
    cs = [deliver(engine, config, T0 + i * DAY) for i in range(3)]  # daily issues, each soft-bounced within hours
    a = "reader0@example.com"
    r1 = record_bounces(engine, [soft(a, "<s1@mx>", cs[0].id)], now=T0 + timedelta(hours=2), config=config)
    r2 = record_bounces(engine, [soft(a, "<s2@mx>", cs[1].id)], now=T0 + DAY + timedelta(hours=2), config=config)
    assert (r1.counted, r2.counted, r2.bounced) == (1, 1, 0)
    assert statuses(engine, a) == {"weekly": "active"}
    r3 = record_bounces(engine, [soft(a, "<s3@mx>", cs[2].id)], now=T0 + 2 * DAY + timedelta(hours=2), config=config)
    assert (r3.counted, r3.bounced) == (0, 1)
    assert statuses(engine, a) == {"weekly": "bounced"}
    assert "3 soft bounces within 30d" in find_suppression(engine, a).reason


def test_soft_bounces_older_than_the_window_no_longer_count(env):
    engine, config = env
    config.soft_bounce_window = "10d"
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    cs = [deliver(engine, config, T0 + i * DAY) for i in (0, 1, 20)]
    record_bounces(engine, [soft(a, "<s1@mx>", cs[0].id, occurred_at=T0 + timedelta(hours=1)),
                            soft(a, "<s2@mx>", cs[1].id, occurred_at=T0 + DAY + timedelta(hours=1))],
                   now=T0 + 2 * DAY, config=config)
    r = record_bounces(engine, [soft(a, "<s3@mx>", cs[2].id)], now=T0 + 20 * DAY + timedelta(hours=1), config=config)
    assert (r.counted, r.bounced) == (1, 0)
    assert statuses(engine, a) == {"weekly": "active"}


def test_a_positive_dsn_for_a_later_copy_resets_the_count_and_a_late_report_of_an_older_copy_does_not_count(env):
    engine, config = env
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    c1, c2, c3, c4 = (deliver(engine, config, T0 + i * DAY) for i in range(4))
    h = timedelta(hours=2)
    record_bounces(engine, [soft(a, "<s1@mx>", c1.id)], now=T0 + h, config=config)
    record_bounces(engine, [soft(a, "<s2@mx>", c2.id)], now=T0 + DAY + h, config=config)
    record_bounces(engine, [Bounce(BounceKind.DELIVERED, BounceSource.DSN, recipient=a, report_id="<ok3@mx>",
                                   campaign_id=c3.id)], now=T0 + 2 * DAY + h, config=config)
    # the remote server retried c1 for days and gives up only now: it is about a copy older than c3
    late = record_bounces(engine, [soft(a, "<s1-final@mx>", c1.id)], now=T0 + 3 * DAY, config=config)
    r = record_bounces(engine, [soft(a, "<s4@mx>", c4.id)], now=T0 + 3 * DAY + h, config=config)
    assert (late.counted, r.counted, r.bounced) == (1, 1, 0)
    assert statuses(engine, a) == {"weekly": "active"}


def test_a_later_copy_nobody_bounced_for_reset_after_resets_the_count(env):
    engine, config = env
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    h = timedelta(hours=2)
    c1, c2 = deliver(engine, config, T0), deliver(engine, config, T0 + DAY)
    record_bounces(engine, [soft(a, "<s1@mx>", c1.id), ], now=T0 + h, config=config)
    record_bounces(engine, [soft(a, "<s2@mx>", c2.id)], now=T0 + DAY + h, config=config)
    deliver(engine, config, T0 + 2 * DAY)  # c3: accepted, never bounced
    c4 = deliver(engine, config, T0 + 6 * DAY)
    r = record_bounces(engine, [soft(a, "<s4@mx>", c4.id)], now=T0 + 6 * DAY + h, config=config)  # c3 is 4 days quiet
    assert (r.counted, r.bounced) == (1, 0)
    assert statuses(engine, a) == {"weekly": "active"}


def test_a_later_copy_accepted_too_recently_proves_nothing(env):
    """A copy is always accepted before its own asynchronous bounce: one day of quiet (under
    soft_bounce_reset_after, 3d) does not reset the count."""
    engine, config = env
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    h = timedelta(hours=2)
    c1, c2 = deliver(engine, config, T0), deliver(engine, config, T0 + DAY)
    record_bounces(engine, [soft(a, "<s1@mx>", c1.id)], now=T0 + h, config=config)
    record_bounces(engine, [soft(a, "<s2@mx>", c2.id)], now=T0 + DAY + h, config=config)
    c3 = deliver(engine, config, T0 + 2 * DAY)
    r = record_bounces(engine, [soft(a, "<s3@mx>", c3.id)], now=T0 + 3 * DAY, config=config)
    assert r.bounced == 1 and statuses(engine, a) == {"weekly": "bounced"}


def test_a_verp_token_attributes_a_report_without_a_recipient_and_an_erased_reader_leaves_no_address(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    c = deliver(engine, config, T0)
    sid0 = get_subscriber(engine, "reader0@example.com").id
    sid1 = get_subscriber(engine, "reader1@example.com").id
    r = record_bounces(engine, [Bounce(BounceKind.HARD, BounceSource.VERP, campaign_id=c.id, subscriber_id=sid0,
                                       report_id="<v1@mx>")], now=T0 + DAY, config=config)
    assert r.bounced == 1 and statuses(engine, "reader0@example.com") == {"weekly": "bounced"}
    erase_subscriber(engine, "reader1@example.com")
    r = record_bounces(engine, [Bounce(BounceKind.HARD, BounceSource.DSN, recipient="reader1@example.com",
                                       campaign_id=c.id, subscriber_id=sid1, report_id="<v2@mx>")],
                       now=T0 + DAY, config=config)
    assert r.unmatched == 1
    assert [e for e in rows(engine) if e["report_id"] == "<v2@mx>"][0]["recipient"] == ""
    assert find_suppression(engine, "reader1@example.com") is None


def test_erasing_a_subscriber_removes_their_bounce_history(env):
    engine, config = env
    add_people(engine, "weekly", 2)
    deliver(engine, config, T0)
    record_bounces(engine, [soft("reader0@example.com", "<s@mx>"), soft("reader1@example.com", "<t@mx>")],
                   now=T0 + DAY, config=config)
    erase_subscriber(engine, "reader0@example.com")
    assert [e["recipient"] for e in rows(engine)] == ["reader1@example.com"]


def test_complaints_past_the_rate_pause_a_running_campaign_until_a_person_resumes_it(env):
    engine, config = env
    config.pause_min_sent = 20
    add_people(engine, "weekly", 40)
    c = deliver(engine, config, T0)
    with engine.begin() as conn:  # sent, but still running (more to come)
        assert q.campaign_status(conn, c.id) == "running"
    def fbl(i):
        return Bounce(BounceKind.COMPLAINT, BounceSource.ARF, recipient=f"reader{i}@example.com",
                      report_id=f"<fbl-{i}@x>", campaign_id=c.id)
    r = record_bounces(engine, [fbl(0)], now=T0 + DAY, config=config)
    assert r.paused == [c.id]  # 1 of 40 = 2.5 % > 0.3 %
    camp = get_campaign(engine, c.id)
    assert camp.status == "paused" and camp.status_reason.startswith(RATE_PAUSE_PREFIX)
    assert "complaint rate 2.50% (1 of 40 copies)" in camp.status_reason
    from newsletter.dispatch.sender import send_campaign

    with pytest.raises(StateError, match="campaigns resume"):
        send_campaign(engine, c.id, config, outbox=str(config.outbox))
    resume_campaign(engine, c.id)
    r = record_bounces(engine, [fbl(1)], now=T0 + DAY, config=config)
    assert r.paused == [] and get_campaign(engine, c.id).status == "running"


def test_hard_bounces_pause_only_past_the_rate_and_after_enough_copies(env):
    engine, config = env
    config.pause_min_sent = 40
    config.bounce_pause_rate = 0.05
    add_people(engine, "weekly", 39)
    c = deliver(engine, config, T0)
    r = record_bounces(engine, [hard(f"reader{i}@example.com", f"<h{i}@mx>", campaign_id=c.id) for i in range(5)],
                       now=T0 + DAY, config=config)
    assert r.bounced == 5 and r.paused == []  # 39 copies < pause_min_sent
    config.pause_min_sent = 30
    r = record_bounces(engine, [hard("reader5@example.com", "<h5@mx>", campaign_id=c.id)], now=T0 + DAY, config=config)
    assert r.paused == [c.id]
    assert "hard bounce rate 15.38% (6 of 39 copies)" in get_campaign(engine, c.id).status_reason


def test_bad_rule_settings_are_one_line_config_errors(env):
    engine, config = env
    config.soft_bounce_window = "30 days"
    with pytest.raises(ConfigError, match="soft_bounce_window"):
        record_bounces(engine, [], config=config)
    config.soft_bounce_window = "30d"
    config.complaint_pause_rate = 0.3 * 100
    with pytest.raises(ConfigError, match="complaint_pause_rate.*fraction"):
        record_bounces(engine, [], config=config)


def test_policy_blocks_are_stored_as_soft_but_never_count(env):
    """4.7.x/5.7.x say the receiver refused *our* mail (reputation, greylisting): three of them
    must not take a reader off the list."""
    engine, config = env
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    cs = [deliver(engine, config, T0 + i * DAY) for i in range(3)]
    rs = [record_bounces(engine, [Bounce(BounceKind.SOFT, BounceSource.DSN, recipient=a, status="5.7.1",
                                         reason="blocked by spamhaus", report_id=f"<p{i}@mx>", campaign_id=c.id)],
                         now=T0 + i * DAY + timedelta(hours=1), config=config) for i, c in enumerate(cs)]
    assert [r.counted for r in rs] == [0, 0, 0] and sum(r.bounced for r in rs) == 0
    assert statuses(engine, a) == {"weekly": "active"}
    assert {e["outcome"] for e in rows(engine)} == {"none"} and {e["kind"] for e in rows(engine)} == {"soft"}


def test_campaign_info_shows_bounce_and_complaint_rates(env):
    from newsletter.dispatch.campaigns import campaign_info

    engine, config = env
    add_people(engine, "weekly", 8)
    c = deliver(engine, config, T0)
    record_bounces(engine, [hard("reader0@example.com", "<h0@mx>", campaign_id=c.id),
                            hard("reader0@example.com", "<h0-again@mx>", campaign_id=c.id),  # one reader, once
                            soft("reader1@example.com", "<s1@mx>", c.id),
                            Bounce(BounceKind.COMPLAINT, BounceSource.ARF, recipient="reader2@example.com",
                                   report_id="<f2@fbl>", campaign_id=c.id)], now=T0 + DAY, config=config)
    fb = campaign_info(engine, c.id).feedback
    assert fb == {"copies": 8, "hard": 1, "soft": 1, "complaints": 1, "hard_rate": 0.125, "soft_rate": 0.125,
                  "complaint_rate": 0.125}


def test_a_report_of_an_unknown_kind_is_refused_with_one_line_and_stores_nothing(env):
    from newsletter.errors import InvalidInput

    engine, config = env
    with pytest.raises(InvalidInput, match="kind 'bogus'"):
        record_bounces(engine, [Bounce("bogus", BounceSource.DSN, recipient="a@example.com", report_id="<z@mx>")],
                       config=config)
    assert rows(engine) == []


def test_a_delay_notice_and_the_final_failure_of_one_copy_count_once(env):
    engine, config = env
    add_people(engine, "weekly", 1)
    a = "reader0@example.com"
    c1, c2 = deliver(engine, config, T0), deliver(engine, config, T0 + DAY)
    h = timedelta(hours=2)
    record_bounces(engine, [soft(a, "<delay-1@mx>", c1.id), soft(a, "<delay-2@mx>", c1.id)], now=T0 + h, config=config)
    r = record_bounces(engine, [soft(a, "<fail-1@mx>", c1.id), soft(a, "<delay-3@mx>", c2.id)],
                       now=T0 + DAY + h, config=config)
    assert (r.new, r.bounced) == (2, 0)  # two copies soft-bounced, not four
    assert statuses(engine, a) == {"weekly": "active"}
