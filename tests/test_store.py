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
    S.unsubscribe(engine, "b@example.com", "weekly")
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
    S.unsubscribe(engine, "a@example.com")
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
    url = S.confirm_url(Config(base_url="https://news.example.org/"), res.subscriber_id, res.list_id, secret=SECRET)
    assert url.startswith("https://news.example.org/confirm/")
    token = url.rsplit("/", 1)[1]
    peek = S.peek_token(engine, SECRET, token, "confirm")
    assert peek.status == "unconfirmed" and not peek.changed
    done = S.confirm_by_token(engine, SECRET, token)
    assert done.changed and done.status == "active" and done.lists == {"news": "active"}
    assert not S.confirm_by_token(engine, SECRET, token).changed  # idempotent


def test_confirm_link_does_not_revive_someone_who_unsubscribed(engine, double):
    res = S.add_subscriber(engine, "a@example.com", list_slug="news")
    token = tokens.confirm_token(SECRET, res.subscriber_id, res.list_id)
    S.unsubscribe(engine, "a@example.com")
    with pytest.raises(StateError):
        S.confirm_by_token(engine, SECRET, token)


def test_unsubscribe_by_token_touches_only_that_list(engine, weekly, double):
    a = S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    b = S.add_subscriber(engine, "b@example.com", list_slug="weekly")
    url = S.unsubscribe_url(Config(base_url="http://127.0.0.1:8000"), a.subscriber_id, a.list_id, secret=SECRET)
    res = S.unsubscribe_by_token(engine, SECRET, url.rsplit("/", 1)[1])
    assert res.changed and res.email == "a@example.com" and res.lists == {"news": "unconfirmed", "weekly": "unsubscribed"}
    assert S.get_subscriber(engine, "b@example.com").lists == {"weekly": "active"}
    forged = tokens.unsubscribe_token(b"not-the-secret-key-000000000000", b.subscriber_id, b.list_id)
    with pytest.raises(InvalidToken):
        S.unsubscribe_by_token(engine, SECRET, forged)
    assert S.get_subscriber(engine, "b@example.com").lists == {"weekly": "active"}


def test_token_for_an_erased_subscriber(engine, weekly):
    a = S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    token = tokens.unsubscribe_token(SECRET, a.subscriber_id, a.list_id)
    S.erase_subscriber(engine, "a@example.com")
    c = S.add_subscriber(engine, "c@example.com", list_slug="weekly")
    assert c.subscriber_id != a.subscriber_id  # ids are never reused, so old links cannot hit someone new
    with pytest.raises(NotFound):
        S.unsubscribe_by_token(engine, SECRET, token)


# ---------------------------------------------------------------- suppression


def test_suppressed_address_and_domain_cannot_be_added(engine, weekly):
    S.suppress(engine, "Spam@Example.net", reason="complaint")
    S.suppress(engine, "example.org", reason="spam trap domain")
    with pytest.raises(StateError, match="suppressed"):
        S.add_subscriber(engine, "spam@example.net", list_slug="weekly")
    with pytest.raises(StateError, match="domain example.org"):
        S.add_subscriber(engine, "anyone@EXAMPLE.org", list_slug="weekly")
    assert count(engine, Subscriber) == 0
    assert {s.value for s in S.list_suppressions(engine)} == {"spam@example.net", "example.org"}
    assert S.unsuppress(engine, "example.org") and not S.unsuppress(engine, "example.org")
    S.add_subscriber(engine, "anyone@example.org", list_slug="weekly")


def test_suppressed_condition_for_sending_queries(engine, weekly):
    for a in ("a@example.com", "b@example.net", "c@example.org"):
        S.add_subscriber(engine, a, list_slug="weekly")
    S.suppress(engine, "example.net")
    S.suppress(engine, "c@example.org")
    with engine.connect() as conn:
        rows = conn.execute(select(Subscriber.email).where(~S.suppressed_condition(Subscriber.email_key))).scalars().all()
    assert rows == ["a@example.com"]


# ---------------------------------------------------------------- listing, export, erasure


def test_list_filters_search_and_pages(engine, weekly, double):
    for i in range(12):
        S.add_subscriber(engine, f"reader{i:02d}@example.com", list_slug="weekly", name=f"Reader {i}")
    S.add_subscriber(engine, "other@example.org", list_slug="news", name="Olga")
    S.unsubscribe(engine, "reader03@example.com", "weekly")
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
    assert S.export_csv(engine, out, list_slug="weekly") == 2
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
    row = S.erase_subscriber(engine, "A@example.com", suppress_address=True)
    assert row.lists == {"news": "unconfirmed", "weekly": "active"}
    assert count(engine, Subscriber) == 0 and count(engine, Subscription) == 0
    with pytest.raises(NotFound):
        S.get_subscriber(engine, "a@example.com")
    assert S.find_suppression(engine, "a@example.com").reason == "erased on request"
    with pytest.raises(NotFound):
        S.erase_subscriber(engine, "a@example.com")


def test_unsubscribe_one_list_or_all(engine, weekly, double):
    S.add_subscriber(engine, "a@example.com", list_slug="weekly")
    S.add_subscriber(engine, "a@example.com", list_slug="news")
    assert S.unsubscribe(engine, "a@example.com", "news") == ["news"]
    assert S.unsubscribe(engine, "a@example.com") == ["weekly"]
    assert S.unsubscribe(engine, "a@example.com") == []
    with pytest.raises(NotFound):
        S.unsubscribe(engine, "nobody@example.com")
