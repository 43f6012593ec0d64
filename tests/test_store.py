"""Subscribers, lists, subscriptions and suppression, on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import io

import pytest
from sqlalchemy import func, select

from newsletter.config import Config
from newsletter.errors import InvalidInput, InvalidToken, NotFound, StateError
from newsletter.store import db, lists, tokens
from newsletter.store import subscribers as S
from newsletter.store import export
from newsletter.store import leaving
from newsletter.store import optin
from newsletter.store import suppressions as supp
from newsletter.store.models import Subscriber, Subscription

from store_support import _pg_template, _sqlite_template, migrated_url  # noqa: F401  (fixtures)

SECRET = b"test-secret-key-0123456789abcdef"


@pytest.fixture
def engine(migrated_url):
    e = db.get_engine(migrated_url)
    yield e
    e.dispose()


@pytest.fixture
def weekly(engine):
    return lists.create_list(engine, "weekly", "Weekly digest")


@pytest.fixture
def double(engine):
    return lists.create_list(engine, "news", "News", opt_in="double")


def count(engine, model, *where):
    with engine.connect() as c:
        return c.execute(select(func.count()).select_from(model).where(*where)).scalar_one()


# ---------------------------------------------------------------- lists


def test_lists_crud_and_counts_by_status(engine, weekly):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    S.add_subscriber(engine, "b@example.com", list_slug="weekly")
    leaving.unsubscribe(engine, "b@example.com", "weekly")
    [summary] = lists.list_lists(engine)
    assert summary.slug == "weekly" and summary.opt_in == "single"
    assert summary.counts == {"unconfirmed": 0, "active": 1, "unsubscribed": 1, "bounced": 0, "complained": 0}
    lists.update_list(engine, "weekly", name="The Weekly", opt_in="double")
    assert lists.get_list(engine, "weekly").name == "The Weekly"
    assert lists.delete_list(engine, "weekly") == 2
    assert lists.list_lists(engine) == []
    assert count(engine, Subscriber) == 2  # people stay when a list goes


def test_list_slug_rules_and_duplicates(engine, weekly):
    with pytest.raises(InvalidInput, match="slug"):
        lists.create_list(engine, "Weekly News")
    with pytest.raises(StateError, match="already exists"):
        lists.create_list(engine, "weekly")
    with pytest.raises(NotFound, match="known lists: weekly"):
        lists.get_list(engine, "monthly")


# ---------------------------------------------------------------- add


def test_addresses_are_unique_whatever_their_case(engine, weekly):
    first = S.add_subscriber(engine, "Ana@Example.COM", list_slug="weekly", name="Ana")
    again = S.add_subscriber(engine, "ana@example.com", list_slug="weekly")
    assert first.subscriber_id == again.subscriber_id and again.outcome == "already"
    assert count(engine, Subscriber) == 1
    row = S.get_subscriber(engine, "ANA@EXAMPLE.COM")
    assert row.email == "Ana@example.com" and row.name == "Ana" and row.lists == {"weekly": "active"}


def test_idn_addresses_are_normalized(engine, weekly):
    a = S.add_subscriber(engine, "zoe@MÜNCHEN.example", list_slug="weekly")
    b = S.add_subscriber(engine, "zoe@xn--mnchen-3ya.example", list_slug="weekly")
    assert a.subscriber_id == b.subscriber_id and a.email == "zoe@münchen.example"


def test_invalid_address_is_refused(engine, weekly):
    with pytest.raises(InvalidInput, match="not a valid email address"):
        S.add_subscriber(engine, "ana@@example.com", list_slug="weekly")
    assert count(engine, Subscriber) == 0


def test_add_updates_name_and_merges_attributes(engine, weekly):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly", attributes={"city": "Porto"})
    res = S.add_subscriber(engine, "a@example.com", name="Ana", attributes={"plan": "pro"})
    assert res.outcome == "updated"
    assert S.get_subscriber(engine, "a@example.com").attributes == {"city": "Porto", "plan": "pro"}


def test_someone_who_left_is_only_re_added_with_fresh_consent(engine, weekly):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    leaving.unsubscribe(engine, "a@example.com")
    with pytest.raises(StateError, match="--resubscribe"):
        S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    res = S.add_subscriber(engine, "a@example.com", list_slug="weekly", resubscribe=True)
    assert res.outcome == "resubscribed" and res.status == "active"


def test_nonexistent_list(engine):
    with pytest.raises(NotFound, match="no lists yet"):
        S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    assert count(engine, Subscriber) == 0


# ---------------------------------------------------------------- double opt-in and tokens


def test_double_opt_in_starts_unconfirmed_and_confirms_by_token(engine, double):
    res = S.add_subscriber(engine, "a@example.com", list_slug="news")
    assert res.status == "unconfirmed" and res.needs_confirmation
    url = optin.confirm_url(Config(base_url="https://news.example.org/"), res.subscriber_id, res.list_id, secret=SECRET)
    assert url.startswith("https://news.example.org/confirm/")
    token = url.rsplit("/", 1)[1]
    peek = S.peek_token(engine, SECRET, token, "confirm")
    assert peek.status == "unconfirmed" and not peek.changed
    done = optin.confirm_by_token(engine, SECRET, token)
    assert done.changed and done.status == "active" and done.lists == {"news": "active"}
    assert not optin.confirm_by_token(engine, SECRET, token).changed  # idempotent


def test_confirm_link_does_not_revive_someone_who_unsubscribed(engine, double):
    res = S.add_subscriber(engine, "a@example.com", list_slug="news")
    token = tokens.confirm_token(SECRET, res.subscriber_id, res.list_id)
    leaving.unsubscribe(engine, "a@example.com")
    with pytest.raises(StateError):
        optin.confirm_by_token(engine, SECRET, token)


def test_unsubscribe_by_token_touches_only_that_list(engine, weekly, double):
    a = S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    b = S.add_subscriber(engine, "b@example.com", list_slug="weekly")
    url = leaving.unsubscribe_url(Config(base_url="http://127.0.0.1:8000"), a.subscriber_id, a.list_id, secret=SECRET)
    res = leaving.unsubscribe_by_token(engine, SECRET, url.rsplit("/", 1)[1])
    assert res.changed and res.email == "a@example.com" and res.lists == {"news": "unconfirmed", "weekly": "unsubscribed"}
    assert S.get_subscriber(engine, "b@example.com").lists == {"weekly": "active"}
    forged = tokens.unsubscribe_token(b"not-the-secret-key-000000000000", b.subscriber_id, b.list_id)
    with pytest.raises(InvalidToken):
        leaving.unsubscribe_by_token(engine, SECRET, forged)
    assert S.get_subscriber(engine, "b@example.com").lists == {"weekly": "active"}


def test_token_for_an_erased_subscriber(engine, weekly):
    a = S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    token = tokens.unsubscribe_token(SECRET, a.subscriber_id, a.list_id)
    leaving.erase_subscriber(engine, "a@example.com")
    c = S.add_subscriber(engine, "c@example.com", list_slug="weekly")
    assert c.subscriber_id != a.subscriber_id  # ids are never reused, so old links cannot hit someone new
    with pytest.raises(NotFound):
        leaving.unsubscribe_by_token(engine, SECRET, token)


# ---------------------------------------------------------------- suppression


def test_suppressed_address_and_domain_cannot_be_added(engine, weekly):
    supp.suppress(engine, "Spam@Example.net", reason="complaint")
    supp.suppress(engine, "example.org", reason="spam trap domain")
    with pytest.raises(StateError, match="suppressed"):
        S.add_subscriber(engine, "spam@example.net", list_slug="weekly")
    with pytest.raises(StateError, match="domain example.org"):
        S.add_subscriber(engine, "anyone@EXAMPLE.org", list_slug="weekly")
    assert count(engine, Subscriber) == 0
    assert {s.value for s in supp.list_suppressions(engine)} == {"spam@example.net", "example.org"}
    assert supp.unsuppress(engine, "example.org") and not supp.unsuppress(engine, "example.org")
    S.add_subscriber(engine, "anyone@example.org", list_slug="weekly")


def test_suppressed_condition_for_sending_queries(engine, weekly):
    for a in ("a@example.com", "b@example.net", "c@example.org"):
        S.add_subscriber(engine, a, list_slug="weekly")
    supp.suppress(engine, "example.net")
    supp.suppress(engine, "c@example.org")
    with engine.connect() as conn:
        rows = conn.execute(select(Subscriber.email).where(~supp.suppressed_condition(Subscriber.email_key))).scalars().all()
    assert rows == ["a@example.com"]


# ---------------------------------------------------------------- listing, export, erasure


def test_list_filters_search_and_pages(engine, weekly, double):
    for i in range(12):
        S.add_subscriber(engine, f"reader{i:02d}@example.com", list_slug="weekly", name=f"Reader {i}")
    S.add_subscriber(engine, "other@example.org", list_slug="news", name="Olga")
    leaving.unsubscribe(engine, "reader03@example.com", "weekly")
    page = S.list_subscribers(engine, list_slug="weekly", limit=5, offset=5)
    assert page.total == 12 and [r.email for r in page.items] == [f"reader{i:02d}@example.com" for i in range(5, 10)]
    assert S.list_subscribers(engine, list_slug="weekly", status="unsubscribed").total == 1
    assert S.list_subscribers(engine, status="unconfirmed").items[0].email == "other@example.org"
    assert [r.email for r in S.list_subscribers(engine, search="OLGA").items] == ["other@example.org"]
    assert S.list_subscribers(engine, search="100%").total == 0
    with pytest.raises(InvalidInput):
        S.list_subscribers(engine, status="gone")


def test_export_neutralises_formulas_and_reimports(engine, weekly):
    S.add_subscriber(engine, "=cmd@example.com", list_slug="weekly", name="@SUM(A1)", attributes={"note": "+1 555", "city": "-Lisbon"})
    S.add_subscriber(engine, "plain@example.com", list_slug="weekly", name="Plain")
    out = io.StringIO()
    assert export.export_csv(engine, out, list_slug="weekly") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["email"] == "'=cmd@example.com" and rows[0]["name"] == "'@SUM(A1)"
    assert rows[0]["note"] == "'+1 555" and rows[0]["city"] == "'-Lisbon" and rows[0]["status"] == "active"
    assert rows[1]["name"] == "Plain"
    for row in rows:
        for cell in row.values():
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_erase_removes_the_person_and_optionally_suppresses(engine, weekly, double):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly", attributes={"city": "Porto"})
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    row = leaving.erase_subscriber(engine, "A@example.com", suppress_address=True)
    assert row.lists == {"news": "unconfirmed", "weekly": "active"}
    assert count(engine, Subscriber) == 0 and count(engine, Subscription) == 0
    with pytest.raises(NotFound):
        S.get_subscriber(engine, "a@example.com")
    assert supp.find_suppression(engine, "a@example.com").reason == "erased on request"
    with pytest.raises(NotFound):
        leaving.erase_subscriber(engine, "a@example.com")


def test_unsubscribe_one_list_or_all(engine, weekly, double):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    assert leaving.unsubscribe(engine, "a@example.com", "news") == ["news"]
    assert leaving.unsubscribe(engine, "a@example.com") == ["weekly"]
    assert leaving.unsubscribe(engine, "a@example.com") == []
    with pytest.raises(NotFound):
        leaving.unsubscribe(engine, "nobody@example.com")


# ---------------------------------------------------------------- confirmation emails: sent once, reminders


def _mailer(srv):
    """A real send through dispatch's send_one to the test SMTP server, and its config."""
    from newsletter.config import SMTPServer
    from newsletter.dispatch.oneoff import send_one

    config = Config(base_url="https://news.example.org", smtp={"t": SMTPServer(name="t", url=srv.url)}, smtp_timeout=5.0)
    return config, lambda to, subject, html, text: send_one(config, to, subject, html, text)


def _sent_at(engine, email):
    with engine.connect() as c:
        return c.execute(
            select(Subscription.confirmation_sent_at).join(Subscriber, Subscriber.id == Subscription.subscriber_id)
            .where(Subscriber.email_key == email)
        ).scalar_one()


def _backdate(engine, email, when):
    sid = S.get_subscriber(engine, email).id
    with engine.begin() as c:
        c.execute(Subscription.__table__.update().where(Subscription.__table__.c.subscriber_id == sid).values(confirmation_sent_at=when))


def test_confirmations_go_once_suppressed_skipped_second_run_sends_nothing(engine, weekly, double, smtp_server):
    people = [f"p{i}@example.com" for i in range(4)]
    for a in people:
        S.add_subscriber(engine, a, list_slug="news")
    S.add_subscriber(engine, "active@example.com", list_slug="weekly")
    S.add_subscriber(engine, "gone@example.net", list_slug="news")
    supp.suppress(engine, "example.net")
    config, send = _mailer(smtp_server)
    first = optin.send_confirmations(engine, config, "news", send, secret=SECRET)
    assert (first.sent, first.failed, first.skipped_mailed, first.skipped_suppressed) == (4, 0, 0, 1)
    assert smtp_server.recipient_counts() == {a: 1 for a in people}
    assert all(_sent_at(engine, a) is not None for a in people) and _sent_at(engine, "gone@example.net") is None
    second = optin.send_confirmations(engine, config, "news", send, secret=SECRET)
    assert (second.sent, second.failed, second.skipped_mailed, second.skipped_suppressed) == (0, 0, 4, 1)
    assert len(smtp_server.received()) == 4
    token = smtp_server.by_recipient("p0@example.com")[0].message().get_body(("plain",)).get_content()
    assert "https://news.example.org/confirm/" in token


@pytest.mark.parametrize("k", [0, 3])
def test_run_interrupted_after_k_sends_then_rerun_mails_exactly_the_rest(engine, double, smtp_server, k):
    people = [f"p{i}@example.com" for i in range(7)]
    for a in people:
        S.add_subscriber(engine, a, list_slug="news")
    config, send = _mailer(smtp_server)
    calls = []

    def crashes_after_k(to, subject, html, text):
        if len(calls) == k:
            raise RuntimeError("killed")  # not a NewsletterError: the run ends here
        calls.append(to)
        return send(to, subject, html, text)

    with pytest.raises(RuntimeError, match="killed"):
        optin.send_confirmations(engine, config, "news", crashes_after_k, secret=SECRET)
    assert sorted(smtp_server.recipients()) == people[:k]
    rest = optin.send_confirmations(engine, config, "news", send, secret=SECRET)
    assert (rest.sent, rest.skipped_mailed) == (7 - k, k)
    assert smtp_server.recipient_counts() == {a: 1 for a in people}


def test_limit_stops_and_the_next_run_continues(engine, double, smtp_server):
    people = [f"p{i}@example.com" for i in range(5)]
    for a in people:
        S.add_subscriber(engine, a, list_slug="news")
    config, send = _mailer(smtp_server)
    part = optin.send_confirmations(engine, config, "news", send, limit=2, secret=SECRET)
    assert part.sent == 2 and part.stopped_at_limit
    assert sorted(smtp_server.recipients()) == people[:2]  # oldest first
    rest = optin.send_confirmations(engine, config, "news", send, limit=10, secret=SECRET)
    assert rest.sent == 3 and not rest.stopped_at_limit
    assert smtp_server.recipient_counts() == {a: 1 for a in people}
    with pytest.raises(InvalidInput, match="limit"):
        optin.send_confirmations(engine, config, "news", send, limit=0, secret=SECRET)


def test_remind_mails_again_only_those_older_than_the_threshold(engine, double, smtp_server):
    from datetime import timedelta

    from newsletter.store.models import utcnow

    for a in ("old@example.com", "recent@example.com", "confirmed@example.com"):
        S.add_subscriber(engine, a, list_slug="news")
    config, send = _mailer(smtp_server)
    assert optin.send_confirmations(engine, config, "news", send, secret=SECRET).sent == 3
    now = utcnow()
    _backdate(engine, "old@example.com", now - timedelta(days=4))
    _backdate(engine, "recent@example.com", now - timedelta(days=2))
    _backdate(engine, "confirmed@example.com", now - timedelta(days=9))
    token = tokens.confirm_token(SECRET, S.get_subscriber(engine, "confirmed@example.com").id, double.id)
    optin.confirm_by_token(engine, SECRET, token)
    S.add_subscriber(engine, "new@example.com", list_slug="news")  # never mailed: a reminder run mails them too
    assert optin.send_confirmations(engine, config, "news", send, secret=SECRET).sent == 1  # only new@
    smtp_server.clear()

    run = optin.send_confirmations(engine, config, "news", send, remind_after=optin.parse_age("3d"), secret=SECRET)
    assert (run.sent, run.skipped_mailed) == (1, 2)  # recent@ (2 days) and new@ (just now) are too fresh
    assert smtp_server.recipients() == ["old@example.com"]
    assert _sent_at(engine, "old@example.com") > now - timedelta(minutes=5)
    again = optin.send_confirmations(engine, config, "news", send, remind_after=optin.parse_age("3d"), secret=SECRET)
    assert again.sent == 0 and len(smtp_server.received()) == 1


def test_a_failed_send_is_not_recorded_and_is_tried_again(engine, double, smtp_server_factory):
    srv = smtp_server_factory(reject={"refused@example.com"})
    for a in ("ok@example.com", "refused@example.com"):
        S.add_subscriber(engine, a, list_slug="news")
    config, send = _mailer(srv)
    run = optin.send_confirmations(engine, config, "news", send, secret=SECRET)
    assert (run.sent, run.failed) == (1, 1) and run.failures[0][0] == "refused@example.com"
    assert _sent_at(engine, "refused@example.com") is None
    srv.behaviour.reject = set()
    again = optin.send_confirmations(engine, config, "news", send, secret=SECRET)
    assert (again.sent, again.failed, again.skipped_mailed) == (1, 0, 1)
    assert srv.recipient_counts() == {"ok@example.com": 1, "refused@example.com": 1}


def test_someone_mailed_or_suppressed_during_a_run_is_not_mailed_by_it(engine, double, smtp_server):
    for a in ("a@example.com", "b@example.com", "c@example.com"):
        S.add_subscriber(engine, a, list_slug="news")
    config, send = _mailer(smtp_server)
    b = S.get_subscriber(engine, "b@example.com").id

    def meanwhile(to, subject, html, text):
        if to == "a@example.com":  # while a@ is mailed, the web signup mails b@ and c@ is suppressed
            optin.record_confirmation_sent(engine, b, double.id)
            supp.suppress(engine, "c@example.com")
        return send(to, subject, html, text)

    run = optin.send_confirmations(engine, config, "news", meanwhile, secret=SECRET)
    assert (run.sent, run.skipped_mailed, run.skipped_suppressed) == (1, 1, 1)
    assert smtp_server.recipients() == ["a@example.com"]


def test_send_confirmations_refuses_unknown_and_single_opt_in_lists(engine, weekly):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    with pytest.raises(NotFound, match="'nope' does not exist"):
        optin.send_confirmations(engine, Config(), "nope", lambda *a: None, secret=SECRET)
    with pytest.raises(StateError, match="single opt-in"):
        optin.send_confirmations(engine, Config(), "weekly", lambda *a: None, secret=SECRET)


def test_parse_age():
    from datetime import timedelta

    assert optin.parse_age("30m") == timedelta(minutes=30) and optin.parse_age(" 3D ") == timedelta(days=3)
    assert optin.parse_age("12h") == timedelta(hours=12) and optin.parse_age("2w") == timedelta(weeks=2)
    for bad in ("", "3", "d", "-1d", "1.5d", "3 days", "999999999w"):
        with pytest.raises(InvalidInput):
            optin.parse_age(bad)


def test_resubscribing_to_a_double_opt_in_list_starts_a_new_confirmation(engine, double):
    res = S.add_subscriber(engine, "a@example.com", list_slug="news")
    assert optin.record_confirmation_sent(engine, res.subscriber_id, res.list_id)
    leaving.unsubscribe(engine, "a@example.com")
    again = S.add_subscriber(engine, "a@example.com", list_slug="news", resubscribe=True)
    assert again.status == "unconfirmed" and _sent_at(engine, "a@example.com") is None
    assert not optin.record_confirmation_sent(engine, res.subscriber_id, res.list_id + 100)
