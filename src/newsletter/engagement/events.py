"""The SQL of engagement: tracked links, appending classified events, the report's aggregates
and retention. Every statement on ``tracked_links`` and ``engagement_events`` is here."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import and_, delete, func, insert, select, tuple_, update
from sqlalchemy.engine import Connection

from ..errors import StateError
from ..store.bounce_models import BounceEvent
from ..store.db import table_of
from ..store.campaign_models import Delivery
from ..store.engagement_models import EngagementEvent, TrackedLink
from ..store.models import Subscriber, Subscription

links_t = table_of(TrackedLink)
events_t = table_of(EngagementEvent)
deliveries_t = table_of(Delivery)
subscribers_t = table_of(Subscriber)
subscriptions_t = table_of(Subscription)
bounces_t = table_of(BounceEvent)


def store_links(conn: Connection, campaign_id: int, links: list[str]) -> None:
    """Record the campaign's link table; links already stored must be the same (a resumed send
    numbers its links as the first part did, or tokens in copies already sent would move)."""
    have = dict(conn.execute(select(links_t.c.idx, links_t.c.url).where(links_t.c.campaign_id == campaign_id)).all())
    for idx, url in enumerate(links):
        if idx in have:
            if have[idx] != url and idx != 0:
                raise StateError(f"campaign {campaign_id}: tracked link {idx} was {have[idx]!r}, now {url!r}; "
                                 "the campaign's links changed after copies went out")
            continue
        conn.execute(insert(links_t).values(campaign_id=campaign_id, idx=idx, url=url))


def link_url(conn: Connection, campaign_id: int, idx: int) -> str | None:
    """The original URL of link ``idx`` of a campaign, or None."""
    return conn.execute(select(links_t.c.url).where(
        links_t.c.campaign_id == campaign_id, links_t.c.idx == idx)).scalar()


def links_of(conn: Connection, campaign_id: int) -> dict[int, str]:
    """{idx: url} of a tracked campaign."""
    return dict(conn.execute(select(links_t.c.idx, links_t.c.url).where(links_t.c.campaign_id == campaign_id)).all())


def sent_times(conn: Connection, copies: set[tuple[int, int]]) -> dict[tuple[int, int], datetime]:
    """{(campaign, subscriber): when a server accepted it} for the copies that were sent."""
    if not copies:
        return {}
    d = deliveries_t.c
    rows = conn.execute(select(d.campaign_id, d.subscriber_id, d.sent_at).where(
        tuple_(d.campaign_id, d.subscriber_id).in_(sorted(copies)), d.sent_at.is_not(None))).all()
    return {(c, s): t for c, s, t in rows}


def existing_subscribers(conn: Connection, ids: set[int]) -> set[int]:
    """Which of ``ids`` are still stored (an erased reader's hits are not recorded)."""
    if not ids:
        return set()
    return set(conn.execute(select(subscribers_t.c.id).where(subscribers_t.c.id.in_(sorted(ids)))).scalars())


def recent_hits(conn: Connection, copies: set[tuple[int, int]], since: datetime) -> dict[tuple[int, int], list]:
    """{copy: [(id, time, kind, link, agent)]} of events since ``since`` for those copies."""
    if not copies:
        return {}
    e = events_t.c
    rows = conn.execute(select(e.id, e.campaign_id, e.subscriber_id, e.occurred_at, e.kind, e.link_idx, e.agent).where(
        tuple_(e.campaign_id, e.subscriber_id).in_(sorted(copies)), e.occurred_at >= since).order_by(e.id)).all()
    out: dict[tuple[int, int], list] = {}
    for i, c, s, t, k, link, agent in rows:
        out.setdefault((c, s), []).append((i, t, k, link, agent))
    return out


def append_events(conn: Connection, rows: list[dict]) -> None:
    """Insert classified events (one executemany per batch)."""
    if rows:
        conn.execute(insert(events_t), rows)


def mark_scanner(conn: Connection, ids: list[int], why: str) -> None:
    """Reclassify earlier events as a scanner's (a burst or a canary seen later)."""
    if ids:
        conn.execute(update(events_t).where(events_t.c.id.in_(ids)).values(agent="scanner", why=why))


def purge_events(conn: Connection, before: datetime) -> int:
    """Delete events older than ``before`` (retention); returns how many."""
    return conn.execute(delete(events_t).where(events_t.c.occurred_at < before)).rowcount or 0


def event_totals(conn: Connection, campaign_id: int) -> list[tuple[str, str, int, int]]:
    """[(kind, agent, events, distinct readers)] of one campaign: the report in one aggregate."""
    e = events_t.c
    return [tuple(r) for r in conn.execute(select(
        e.kind, e.agent, func.count(), func.count(func.distinct(e.subscriber_id))).where(
        e.campaign_id == campaign_id).group_by(e.kind, e.agent)).all()]


def link_totals(conn: Connection, campaign_id: int) -> list[tuple[int, str, str, int, int]]:
    """[(idx, url, agent, clicks, distinct readers)] per link of one campaign."""
    e, lk = events_t.c, links_t.c
    return [tuple(r) for r in conn.execute(select(
        lk.idx, lk.url, e.agent, func.count(), func.count(func.distinct(e.subscriber_id))).select_from(
        events_t.join(links_t, and_(lk.campaign_id == e.campaign_id, lk.idx == e.link_idx))).where(
        e.campaign_id == campaign_id, e.kind == "click", e.link_idx > 0).group_by(lk.idx, lk.url, e.agent)).all()]


def event_times(conn: Connection, campaign_id: int, kind: str) -> list[tuple[datetime, str]]:
    """[(time, agent)] of a campaign's events of one kind, oldest first (for the timeline)."""
    e = events_t.c
    return [tuple(r) for r in conn.execute(select(e.occurred_at, e.agent).where(
        e.campaign_id == campaign_id, e.kind == kind).order_by(e.occurred_at)).all()]


def delivery_totals(conn: Connection, campaign_id: int) -> dict[str, int]:
    """{state: copies} of one campaign."""
    d = deliveries_t.c
    return dict(conn.execute(select(d.state, func.count()).where(d.campaign_id == campaign_id).group_by(d.state)).all())


def unsubscribes_after(conn: Connection, campaign_id: int, since: datetime, until: datetime | None) -> int:
    """Readers of the campaign who left one of its lists between ``since`` and ``until``."""
    d, s = deliveries_t.c, subscriptions_t.c
    cond = [d.campaign_id == campaign_id, d.state == "sent", s.unsubscribed_at >= since]
    if until is not None:
        cond.append(s.unsubscribed_at < until)
    return conn.execute(select(func.count(func.distinct(d.subscriber_id))).select_from(
        deliveries_t.join(subscriptions_t, and_(s.subscriber_id == d.subscriber_id, s.list_id == d.list_id))).where(
        *cond)).scalar() or 0


def bounce_totals(conn: Connection, campaign_id: int) -> dict[str, int]:
    """{bounce kind: distinct recipients} of one campaign."""
    b = bounces_t.c
    return dict(conn.execute(select(b.kind, func.count(func.distinct(b.recipient))).where(
        b.campaign_id == campaign_id).group_by(b.kind)).all())


def times_since(conn: Connection, what: str, since: datetime) -> list[datetime]:
    """When subscriptions were made (``subscribed``), ended (``unsubscribed``) or people bounced
    (``bounced``: a hard bounce that took them off their lists) since ``since``."""
    s, b = subscriptions_t.c, bounces_t.c
    if what == "subscribed":
        q = select(s.created_at).where(s.created_at >= since)
    elif what == "unsubscribed":
        q = select(s.unsubscribed_at).where(s.unsubscribed_at >= since, s.status == "unsubscribed")
    else:
        q = select(b.occurred_at).where(b.occurred_at >= since, b.outcome == "bounced")
    return list(conn.execute(q).scalars())


def recent_sent_campaigns(conn: Connection, limit: int) -> list[int]:
    """Ids of the last ``limit`` campaigns that started sending, newest first."""
    from ..store.campaign_models import Campaign

    c = table_of(Campaign).c
    return list(conn.execute(select(c.id).where(c.started_at.is_not(None)).order_by(c.started_at.desc()).limit(limit)).scalars())



def variant_readers(conn: Connection, campaign_id: int, kind: str,
                    agents: tuple[str, ...]) -> dict[tuple[int | None, bool | None], int]:
    """{(variant, in_test): distinct readers with an event of ``kind`` by one of ``agents``} of an
    A/B campaign: each reader counted under the variant of the copy they got (``deliveries.variant``)."""
    e, d = events_t.c, deliveries_t.c
    rows = conn.execute(select(d.variant, d.in_test, func.count(func.distinct(e.subscriber_id)))
                        .select_from(events_t.join(deliveries_t, and_(d.campaign_id == e.campaign_id,
                                                                      d.subscriber_id == e.subscriber_id)))
                        .where(e.campaign_id == campaign_id, e.kind == kind, e.agent.in_(list(agents)))
                        .group_by(d.variant, d.in_test)).all()
    return {(v, None if t is None else bool(t)): int(n) for v, t, n in rows}
