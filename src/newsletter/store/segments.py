"""Segments: create, list, show, count and delete named filters that narrow one list.

A segment never changes what its list means for a reader: unsubscribe links, confirmation and
suppression stay those of the list, so the live count of "who would get a campaign" is
subscriptions on the list that are active, not suppressed, and match the filter. The filter
language itself lives in ``segment_filter``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import and_, func, not_, select
from sqlalchemy.engine import Connection, Engine

from ..errors import InvalidInput, NotFound, StateError
from . import segment_filter as sf
from .db import require_current_schema, table_of, transaction
from .models import MailingList, Subscriber, Subscription, utcnow
from .segment_models import Segment
from .suppressions import suppressed_condition

segments_t = table_of(Segment)
lists_t = table_of(MailingList)
subscribers = table_of(Subscriber)
subscriptions = table_of(Subscription)

NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,63}")


@dataclass
class SegmentInfo:
    """A segment as shown by ``segments list/show``; counts are live (None when not asked for)."""

    name: str
    list: str
    filter: str
    match_all: bool
    created_at: datetime
    matching: int | None = None  # subscriptions on the list matching the filter, any status
    mailable: int | None = None  # of those: active and not suppressed (a campaign's audience)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["created_at"] = self.created_at.isoformat()
        return d


def check_name(name: str) -> str:
    """The segment name if it is 1-64 lowercase letters, digits, '-' or '_', else InvalidInput."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise InvalidInput(f"segment name {name!r} is invalid: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit")
    return name


def condition(conn: Connection, filter_text: str, match_all: bool, now: datetime | None = None):
    """The SQL condition (over ``subscribers`` and ``subscriptions``) for a stored filter, compiled
    for this connection's database; None when it matches the whole list."""
    tree = sf.parse(filter_text, match_all=match_all)
    return sf.to_sql(tree, conn.dialect.name, now or utcnow())


def _list_id(conn: Connection, slug: str) -> int:
    lid = conn.execute(select(lists_t.c.id).where(lists_t.c.slug == slug)).scalar()
    if lid is None:
        raise NotFound(f"list {slug!r} does not exist")
    return lid


def create_segment(engine: Engine, name: str, list_slug: str, where: str, *, match_all: bool = False) -> SegmentInfo:
    """Store a segment of ``list_slug``; the filter is checked (and compiled once) before anything
    is written. ``match_all`` with an empty filter means the whole list, on purpose."""
    require_current_schema(engine)
    check_name(name)
    text = sf.canonical(where, match_all=match_all)
    now = utcnow()
    with transaction(engine) as conn:
        lid = _list_id(conn, list_slug)
        condition(conn, text, match_all)
        if conn.execute(select(segments_t.c.id).where(segments_t.c.name == name)).scalar() is not None:
            raise StateError(f"segment {name!r} already exists (delete it first, or pick another name)")
        conn.execute(segments_t.insert().values(name=name, list_id=lid, filter=text, match_all=match_all,
                                                created_at=now, updated_at=now))
    return get_segment(engine, name, counts=False)


def _row(conn: Connection, name: str):
    r = conn.execute(
        select(segments_t, lists_t.c.slug).select_from(segments_t.join(lists_t, lists_t.c.id == segments_t.c.list_id))
        .where(segments_t.c.name == name)).mappings().first()
    if r is None:
        known = [x[0] for x in conn.execute(select(segments_t.c.name).order_by(segments_t.c.name).limit(20))]
        hint = f" (known segments: {', '.join(known)})" if known else " (no segments yet: `newsletter segments create`)"
        raise NotFound(f"segment {name!r} does not exist{hint}")
    return r


def _members_query(conn: Connection, r, now: datetime | None, cols):
    cond = condition(conn, r["filter"], r["match_all"], now)
    q = (select(*cols).select_from(subscriptions.join(subscribers, subscribers.c.id == subscriptions.c.subscriber_id))
         .where(subscriptions.c.list_id == r["list_id"]))
    return q if cond is None else q.where(cond)


def _counts(conn: Connection, r, now: datetime | None) -> tuple[int, int]:
    q = _members_query(conn, r, now, [
        func.count(),
        func.coalesce(func.sum(sa.case((and_(subscriptions.c.status == "active",
                                             not_(suppressed_condition(subscribers.c.email_key))), 1), else_=0)), 0),
    ])
    matching, mailable = conn.execute(q).one()
    return int(matching), int(mailable)


def _info(conn: Connection, r, counts: bool, now: datetime | None) -> SegmentInfo:
    info = SegmentInfo(name=r["name"], list=r["slug"], filter=r["filter"], match_all=bool(r["match_all"]),
                       created_at=r["created_at"])
    if counts:
        info.matching, info.mailable = _counts(conn, r, now)
    return info


def get_segment(engine: Engine, name: str, *, counts: bool = True, now: datetime | None = None) -> SegmentInfo:
    """One segment, with its live counts unless ``counts=False``; NotFound names the known ones."""
    require_current_schema(engine)
    with transaction(engine) as conn:
        return _info(conn, _row(conn, name), counts, now)


def list_segments(engine: Engine, *, counts: bool = True, now: datetime | None = None) -> list[SegmentInfo]:
    """Every segment by name, with live counts unless ``counts=False``."""
    require_current_schema(engine)
    with transaction(engine) as conn:
        names = [x[0] for x in conn.execute(select(segments_t.c.name).order_by(segments_t.c.name))]
        return [_info(conn, _row(conn, n), counts, now) for n in names]


def segment_members(engine: Engine, name: str, limit: int = 20, now: datetime | None = None, offset: int = 0) -> list[dict]:
    """``limit`` matching subscriptions (email, name, status) from ``offset``, in subscriber-id order."""
    require_current_schema(engine)
    with transaction(engine) as conn:
        r = _row(conn, name)
        q = _members_query(conn, r, now, [subscribers.c.email, subscribers.c.name, subscriptions.c.status])
        return [dict(x) for x in conn.execute(q.order_by(subscribers.c.id).offset(max(0, offset)).limit(limit)).mappings()]


def count_filter(engine: Engine, list_slug: str, where: str, *, match_all: bool = False,
                 now: datetime | None = None) -> tuple[int, int]:
    """(matching, mailable) for a filter not stored yet: the builder's live count. The filter is
    checked as ``create_segment`` checks it (InvalidInput), nothing is written."""
    require_current_schema(engine)
    text = sf.canonical(where, match_all=match_all)
    with transaction(engine) as conn:
        lid = _list_id(conn, list_slug)
        return _counts(conn, {"filter": text, "match_all": match_all, "list_id": lid}, now)


def update_segment(engine: Engine, name: str, list_slug: str, where: str, *, match_all: bool = False) -> SegmentInfo:
    """Change a segment's list and filter (checked first, as on create). Campaigns made with it
    keep the filter they recorded."""
    require_current_schema(engine)
    text = sf.canonical(where, match_all=match_all)
    with transaction(engine) as conn:
        r = _row(conn, name)
        lid = _list_id(conn, list_slug)
        condition(conn, text, match_all)
        conn.execute(segments_t.update().where(segments_t.c.id == r["id"]).values(
            list_id=lid, filter=text, match_all=match_all, updated_at=utcnow()))
    return get_segment(engine, name, counts=False)


def delete_segment(engine: Engine, name: str) -> None:
    """Delete a segment; campaigns made with it keep the filter text they recorded."""
    require_current_schema(engine)
    with transaction(engine) as conn:
        r = _row(conn, name)
        conn.execute(segments_t.delete().where(segments_t.c.id == r["id"]))


def segment_for_campaign(conn: Connection, name: str, list_ids: list[int]) -> dict:
    """What a campaign records about the segment it narrows its list with (``meta["segment"]``):
    name, list and the filter text, frozen so that deleting or re-creating the segment later does
    not change what the campaign sends. The campaign must target exactly the segment's list."""
    r = _row(conn, name)
    if list_ids != [r["list_id"]]:
        raise InvalidInput(f"segment {name!r} narrows list {r['slug']!r}: the campaign must target that list alone (--list {r['slug']})")
    return {"name": r["name"], "list": r["slug"], "list_id": r["list_id"], "filter": r["filter"],
            "match_all": bool(r["match_all"])}


def campaign_condition(conn: Connection, meta: dict | None, now: datetime | None = None):
    """The extra ledger condition for a campaign whose meta records a segment, else None."""
    seg = (meta or {}).get("segment")
    if not seg:
        return None
    # A campaign with a segment targets the segment's list alone (segment_for_campaign checks),
    # so the condition applies to every row; a plain AND lets the database filter early.
    return condition(conn, seg["filter"], bool(seg.get("match_all")), now)
