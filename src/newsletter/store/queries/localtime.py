"""Local-time delivery: the bucket plan on the ledger (due times by zone, skipped zones, bucket counts)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import sqlalchemy as sa
from sqlalchemy import func, literal, select
from sqlalchemy.engine import Connection

from ..models import utcnow
from .common import D, campaign_lists, deliveries, subscribers, subscriptions, lists, _moving


# --- local-time delivery: the bucket plan on the ledger ---------------------------------------------
PAST_REPLY = "not sent: the local time had passed when sending started (--past skip)"


@dataclass(frozen=True)
class DueTimes:
    """A local-time ledger's due times by zone (schedule/localtime.py works them out): the
    reader's own zone when it is in ``by_reader_zone`` (only zones zoneinfo knows are), else
    their list's default zone when in ``by_list_zone``, else ``default``. None: no due time
    (``--past skip``: the row is then skipped by :func:`skip_unplanned`)."""

    by_reader_zone: dict[str, datetime | None]
    by_list_zone: dict[str, datetime | None]
    default: datetime | None

    def select_from(self, src: sa.Select) -> sa.Select:
        """``src`` (the ledger's grouped SELECT) with one more column, ``due_at``: ``CASE
        reader_zone WHEN 'Asia/Tokyo' THEN :t ... ELSE CASE list_zone WHEN ... ELSE :default END
        END`` — worked out in the same INSERT, so a row is written once."""
        t = deliveries.c.due_at.type

        def lit(v: datetime | None):
            return sa.null() if v is None else literal(v, t)

        g = src.add_columns(subscribers.c.timezone.label("reader_tz")).group_by(subscribers.c.timezone).subquery("g")
        when = lit(self.default)
        if self.by_list_zone:
            list_tz = select(lists.c.timezone).where(lists.c.id == g.c.list_id).scalar_subquery()
            when = sa.case({k: lit(v) for k, v in self.by_list_zone.items()}, value=list_tz, else_=when)
        if self.by_reader_zone:
            when = sa.case({k: lit(v) for k, v in self.by_reader_zone.items()}, value=g.c.reader_tz, else_=when)
        keep = [c for c in g.c if c.name != "reader_tz"]
        # WHERE true: SQLite would read INSERT ... SELECT ... ON CONFLICT's ON as a join's otherwise
        return select(*keep, when.label("due_at")).where(sa.true())


def audience_zones(conn: Connection, campaign_id: int) -> tuple[set[str], set[str]]:
    """The time zones a campaign's readers gave, and its target lists' default zones (before its
    ledger exists: the planner works out a due time for each).

    Shape: ``SELECT DISTINCT s.timezone FROM campaign_lists JOIN subscriptions (active) JOIN
    subscribers s WHERE s.timezone IS NOT NULL``, and the lists' ``timezone``."""
    readers = {r[0] for r in conn.execute(
        select(subscribers.c.timezone).distinct()
        .select_from(campaign_lists.join(subscriptions, subscriptions.c.list_id == campaign_lists.c.list_id)
                     .join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id))
        .where(campaign_lists.c.campaign_id == campaign_id, subscriptions.c.status == "active",
               subscribers.c.timezone.is_not(None)))}
    defaults = {r[0] for r in conn.execute(
        select(lists.c.timezone).select_from(campaign_lists.join(lists, lists.c.id == campaign_lists.c.list_id))
        .where(campaign_lists.c.campaign_id == campaign_id, lists.c.timezone.is_not(None)))}
    return readers, defaults


def ledger_zones(conn: Connection, campaign_id: int) -> list[sa.Row]:
    """(due_at, reader's zone, their list's default zone, copies) of a local-time ledger, grouped:
    what each bucket holds, for its label (the zones are resolved again in Python).

    Shape: ``SELECT d.due_at, s.timezone, l.timezone, count(*) FROM deliveries d JOIN subscribers s
    JOIN lists l WHERE d.campaign_id=:c GROUP BY 1, 2, 3``."""
    q = (select(deliveries.c.due_at, subscribers.c.timezone, lists.c.timezone, func.count())
         .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                      .join(lists, lists.c.id == deliveries.c.list_id))
         .where(deliveries.c.campaign_id == campaign_id)
         .group_by(deliveries.c.due_at, subscribers.c.timezone, lists.c.timezone))
    return list(conn.execute(q))


def skip_unplanned(conn: Connection, campaign_id: int, now: datetime | None = None) -> int:
    """Skip the rows of a new local-time ledger that got no due time (their zone's time had passed,
    ``--past skip``). Shape: ``UPDATE deliveries SET state='skipped' WHERE campaign_id=:c AND
    state='pending' AND due_at IS NULL``. Returns how many."""
    now = now or utcnow()
    stmt = (deliveries.update()
            .where(deliveries.c.campaign_id == campaign_id, _moving([D.PENDING], D.SKIPPED), deliveries.c.due_at.is_(None))
            .values(state=D.SKIPPED, last_reply=PAST_REPLY, updated_at=now))
    return conn.execute(stmt).rowcount or 0


def bucket_counts(conn: Connection, campaign_id: int) -> list[sa.Row]:
    """(due_at, state, n) of a local-time campaign's ledger, oldest bucket first (its progress).

    Shape: ``SELECT due_at, state, count(*) FROM deliveries WHERE campaign_id=:c GROUP BY 1, 2``."""
    q = (select(deliveries.c.due_at, deliveries.c.state, func.count())
         .where(deliveries.c.campaign_id == campaign_id)
         .group_by(deliveries.c.due_at, deliveries.c.state).order_by(deliveries.c.due_at))
    return list(conn.execute(q))


def next_due_at(conn: Connection, campaign_id: int, now: datetime) -> datetime | None:
    """When the next bucket of a local-time campaign comes due (its earliest pending row due after
    ``now``), or None when no pending row waits for a later bucket."""
    v = conn.execute(select(func.min(deliveries.c.due_at)).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.state == D.PENDING, deliveries.c.due_at > now)).scalar()
    if v is not None and v.tzinfo is None:
        v = v.replace(tzinfo=timezone.utc)
    return v


def pending_due_count(conn: Connection, campaign_id: int, now: datetime) -> int:
    """Pending rows of a local-time campaign whose bucket is due by ``now`` (claimable now)."""
    return int(conn.execute(select(func.count()).where(
        deliveries.c.campaign_id == campaign_id, deliveries.c.state == D.PENDING,
        deliveries.c.due_at <= now)).scalar_one())
