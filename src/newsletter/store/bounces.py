"""The SQL of the bounce events table: insert once, find who an address is, count, list.

Every function takes an open ``Connection`` (the caller owns the transaction: the rules in
``feedback/record.py`` insert an event and act on it in one). The rules themselves live there.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy import exists, func, literal, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, RowMapping
from sqlalchemy.sql.dml import Insert

from .bounce_models import BounceEvent
from .campaign_models import Campaign, Delivery
from .db import table_of
from .models import Subscriber, Subscription

events = table_of(BounceEvent)
deliveries = table_of(Delivery)
campaigns = table_of(Campaign)
subscribers = table_of(Subscriber)
subscriptions = table_of(Subscription)

# Ledger states of a copy that was handed to a server (or was about to be).
MAILED_STATES = ("sending", "sent", "failed", "deferred")


def insert_event(conn: Connection, values: dict) -> int | None:
    """Insert one event unless ``(report_id, recipient)`` is already there; the new id or None.

    Shape: ``INSERT ... ON CONFLICT (report_id, recipient) DO NOTHING RETURNING id`` — the same
    report read twice (a mailbox re-read after a crash, a webhook retried) is stored once, even
    when two processes record it at the same moment."""
    key = ["report_id", "recipient"]
    stmt: Insert
    if conn.dialect.name == "postgresql":
        stmt = postgresql.insert(events).values(**values).on_conflict_do_nothing(index_elements=key)
    else:
        stmt = sqlite.insert(events).values(**values).on_conflict_do_nothing(index_elements=key)
    return conn.execute(stmt.returning(events.c.id)).scalar()


def set_outcome(conn: Connection, event_id: int, outcome: str) -> None:
    """Record what the rules did with an event."""
    conn.execute(events.update().where(events.c.id == event_id).values(outcome=outcome))


def subscriber_key(conn: Connection, subscriber_id: int) -> str | None:
    """The subscriber's lowercased address, or None when they do not exist (erased)."""
    return conn.execute(select(subscribers.c.email_key).where(subscribers.c.id == subscriber_id)).scalar()


def lock_subscriber(conn: Connection, subscriber_id: int) -> None:
    """Hold the subscriber's row until the transaction ends (``SELECT … FOR UPDATE`` on
    PostgreSQL; SQLite has one writer at a time anyway), so concurrent recorders of the same
    reader's soft bounces count one after the other and the limit is never missed."""
    conn.execute(select(subscribers.c.id).where(subscribers.c.id == subscriber_id).with_for_update())


def mailed_subscriber(conn: Connection, address_key: str) -> int | None:
    """The id of the subscriber with this address if we ever mailed them, else None.

    "Mailed" means a campaign copy was handed to a server (a ledger row in a mailed state) or a
    confirmation email went out: a report about an address we never wrote to is never acted on."""
    sid = conn.execute(select(subscribers.c.id).where(subscribers.c.email_key == address_key)).scalar()
    if sid is None:
        return None
    copy = exists(select(literal(1)).where(deliveries.c.subscriber_id == sid, deliveries.c.state.in_(MAILED_STATES)))
    confirm = exists(select(literal(1)).where(subscriptions.c.subscriber_id == sid,
                                              subscriptions.c.confirmation_sent_at.is_not(None)))
    return sid if conn.execute(select(or_(copy, confirm))).scalar() else None


def copy_exists(conn: Connection, campaign_id: int, subscriber_id: int) -> bool:
    """True when the campaign's ledger has a row for this subscriber."""
    return conn.execute(select(literal(1)).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.subscriber_id == subscriber_id)).first() is not None


def campaign_exists(conn: Connection, campaign_id: int) -> bool:
    return conn.execute(select(literal(1)).where(campaigns.c.id == campaign_id)).first() is not None


def is_policy_status(status: str | None) -> bool:
    """True for an RFC 3463 security/policy status (``4.7.1``, ``5.7.606``): the receiver
    refused *our* mail (reputation, greylisting, content), which says nothing about the reader."""
    parts = (status or "").split(".")
    return len(parts) == 3 and parts[1] == "7"


def _not_policy(col):
    return or_(col.is_(None), ~col.like("%.7.%"))


def _copy_time(e):
    """When the copy an event is about was accepted by our server (falls back to the event time)."""
    sent = (select(deliveries.c.sent_at)
            .where(deliveries.c.campaign_id == e.c.campaign_id, deliveries.c.subscriber_id == e.c.subscriber_id)
            .correlate(e).scalar_subquery())
    return sent


def soft_bounce_count(conn: Connection, subscriber_id: int, *, since: datetime, quiet_before: datetime) -> int:
    """Soft-bounced copies of a subscriber that still count: reported after ``since`` (the
    window) and about a copy sent after the last proof that mail reaches them. Several reports
    about one copy (a delay notice, then the failure) count once.

    Proof (the reset point) is the latest of: a positive DSN (``delivered`` event) — its copy's
    time; a copy our server accepted before ``quiet_before`` (so long ago that its bounce would
    have come) for which no hard or soft bounce was ever reported. A copy is always accepted
    before its own asynchronous bounce, so an accepted copy alone proves nothing; comparing copy
    times (not report times) keeps a late report about an old copy from counting after a newer
    copy got through. Shape: two small aggregates over the subscriber's events and copies (both
    indexed by subscriber), then the soft events in the window."""
    e = events.alias("e")
    delivered_at = conn.execute(
        select(func.max(func.coalesce(_copy_time(e), e.c.occurred_at)))
        .where(e.c.subscriber_id == subscriber_id, e.c.kind == "delivered")).scalar()
    e2 = events.alias("e2")
    bounced_copy = exists(select(literal(1)).where(
        e2.c.subscriber_id == subscriber_id, e2.c.campaign_id == deliveries.c.campaign_id,
        e2.c.kind.in_(("hard", "soft"))))
    quiet_at = conn.execute(
        select(func.max(deliveries.c.sent_at))
        .where(deliveries.c.subscriber_id == subscriber_id, deliveries.c.state == "sent",
               deliveries.c.sent_at <= quiet_before, ~bounced_copy)).scalar()
    stamps: list[datetime] = [_aware(t) for t in (delivered_at, quiet_at) if t is not None]
    reset = max(stamps) if stamps else None
    rows = conn.execute(
        select(e.c.id, e.c.campaign_id, e.c.occurred_at, _copy_time(e).label("copy_at"))
        .where(e.c.subscriber_id == subscriber_id, e.c.kind == "soft", e.c.occurred_at > since,
               _not_policy(e.c.status))).all()
    copies = set()  # one copy counts once: a delay notice and the final failure are one soft bounce
    for eid, campaign_id, occurred, copy_at in rows:
        at = _aware(copy_at) or _aware(occurred)
        if reset is None or at > reset:
            copies.add(campaign_id if campaign_id is not None else ("event", eid))
    return len(copies)


@overload
def _aware(v: datetime) -> datetime: ...
@overload
def _aware(v: None) -> None: ...
def _aware(v: datetime | None) -> datetime | None:
    """``v`` with UTC attached when the driver gave it back naive (SQLite keeps no zone)."""
    from datetime import timezone

    if v is None or v.tzinfo is not None:
        return v
    return v.replace(tzinfo=timezone.utc)


@dataclass
class EventRow:
    """A stored event, as ``bounces list`` and the web pages show it."""

    id: int
    recorded_at: datetime
    occurred_at: datetime
    kind: str
    recipient: str
    status: str | None
    reason: str
    source: str
    provider: str | None
    campaign_id: int | None
    subscriber_id: int | None
    outcome: str
    report_id: str

    def as_json(self) -> dict:
        d = dict(self.__dict__)
        d["recorded_at"] = self.recorded_at.isoformat()
        d["occurred_at"] = self.occurred_at.isoformat()
        return d


def list_events(conn: Connection, *, campaign_id: int | None = None, kind: str | None = None,
                subscriber_id: int | None = None, limit: int | None = None) -> list[EventRow]:
    """Events, newest first, filtered by campaign, kind and subscriber."""
    cols = [events.c[n] for n in EventRow.__dataclass_fields__]
    q = select(*cols)
    if campaign_id is not None:
        q = q.where(events.c.campaign_id == campaign_id)
    if kind:
        q = q.where(events.c.kind == kind)
    if subscriber_id is not None:
        q = q.where(events.c.subscriber_id == subscriber_id)
    q = q.order_by(events.c.occurred_at.desc(), events.c.id.desc())
    if limit:
        q = q.limit(limit)
    return [_event_row(r._mapping) for r in conn.execute(q)]


def _event_row(values: RowMapping) -> EventRow:
    fields: dict[str, Any] = {}
    for name in EventRow.__dataclass_fields__:
        v = values[name]
        fields[name] = _aware(v) if isinstance(v, datetime) else v
    return EventRow(**fields)


def campaign_event_counts(conn: Connection, campaign_id: int) -> dict[str, int]:
    """``{kind: distinct subscribers}`` for one campaign's events (one person bounced twice,
    say by SMTP and by DSN, counts once). Shape: ``SELECT kind, count(DISTINCT
    coalesce(subscriber_id, -id)) ... WHERE campaign_id = :c GROUP BY kind`` (index
    campaign_id, kind)."""
    who = func.coalesce(events.c.subscriber_id, -events.c.id)
    q = (select(events.c.kind, func.count(sa.distinct(who)))
         .where(events.c.campaign_id == campaign_id).group_by(events.c.kind))
    return {k: int(n) for k, n in conn.execute(q)}

@dataclass
class CampaignRates:
    """A campaign's feedback over the copies sent: what ``campaigns show``, the API and the
    auto-pause read. ``copies`` counts copies a server gave a final answer to (sent + failed)."""

    copies: int = 0
    hard: int = 0
    soft: int = 0
    complaints: int = 0

    def rate(self, n: int) -> float:
        return n / self.copies if self.copies else 0.0

    @property
    def hard_rate(self) -> float:
        return self.rate(self.hard)

    @property
    def soft_rate(self) -> float:
        return self.rate(self.soft)

    @property
    def complaint_rate(self) -> float:
        return self.rate(self.complaints)

    def as_dict(self) -> dict:
        return {"copies": self.copies, "hard": self.hard, "soft": self.soft, "complaints": self.complaints,
                "hard_rate": round(self.hard_rate, 6), "soft_rate": round(self.soft_rate, 6),
                "complaint_rate": round(self.complaint_rate, 6)}


def campaign_rates(conn: Connection, campaign_id: int, counts: dict[str, int] | None = None) -> CampaignRates:
    """Bounce and complaint counts and rates of one campaign (``counts``: its ledger counts by
    state, when the caller has them already)."""
    if counts is None:
        from .queries import counts_by_state

        counts = counts_by_state(conn, campaign_id)
    kinds = campaign_event_counts(conn, campaign_id)
    return CampaignRates(copies=counts.get("sent", 0) + counts.get("failed", 0), hard=kinds.get("hard", 0),
                         soft=kinds.get("soft", 0), complaints=kinds.get("complaint", 0))


__all__ = ["insert_event", "set_outcome", "subscriber_key", "lock_subscriber", "mailed_subscriber", "copy_exists", "campaign_exists",
           "soft_bounce_count", "is_policy_status", "EventRow", "list_events", "campaign_event_counts", "CampaignRates", "campaign_rates"]
