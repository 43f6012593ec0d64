"""Subscribers: add (and subscribe), look up, list and search, and the subscription a link is for.

Functions take an Engine and return plain dataclasses; they raise ``newsletter.errors`` and never
print. Nobody who unsubscribed, bounced, complained or is suppressed is put back on a list unless
the caller says they gave fresh consent (``resubscribe=True``), and suppression is never
overridden (the rule is consent.py's). The rest of the subscriber side lives beside this module:
suppressions.py, export.py, optin.py (confirmation), leaving.py (unsubscribe, erasure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Iterator

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.engine import Connection, Engine

from ..errors import InvalidInput, NotFound, StateError
from ..i18n import N_
from . import tokens
from .addresses import normalize_email
from .consent import Join, joining_status, may_join, rejoin_in
from .db import transaction
from .lookups import _key_of, _list_row, _lists_of, _subscriber_by_key, lists_t, subs_t, subscribers_t
from .models import SUBSCRIPTION_STATUSES, utcnow
from .suppressions import _find_suppression
from .textrules import check_attributes, check_text


@dataclass
class SubscriberRow:
    """A subscriber as shown to people: their data and their status on each list (slug → status)."""

    id: int
    email: str
    name: str
    attributes: dict[str, Any]
    consent_source: str | None
    created_at: datetime
    updated_at: datetime
    lists: dict[str, str] = field(default_factory=dict)
    status: str | None = None  # status on the list being looked at, when there is one


@dataclass
class Page:
    """One page of a subscriber listing, and how many match in total."""

    items: list[SubscriberRow]
    total: int
    offset: int
    limit: int


@dataclass
class AddResult:
    """What ``add_subscriber`` did: outcome is added | updated | already | resubscribed | (no list) created."""

    subscriber_id: int
    email: str
    outcome: str
    list_id: int | None = None
    list_slug: str | None = None
    status: str | None = None

    @property
    def needs_confirmation(self) -> bool:
        return self.status == "unconfirmed"


@dataclass
class TokenResult:
    """The subscription a token acted on; ``changed`` is False when it was already in that state."""

    subscriber_id: int
    email: str
    list_id: int
    list_slug: str
    list_name: str
    status: str
    changed: bool
    lists: dict[str, str] = field(default_factory=dict)  # all the subscriber's lists: slug -> status


def _row(r, lists: dict[str, str] | None = None, status: str | None = None) -> SubscriberRow:
    return SubscriberRow(
        id=r["id"], email=r["email"], name=r["name"], attributes=dict(r["attributes"] or {}),
        consent_source=r["consent_source"], created_at=r["created_at"], updated_at=r["updated_at"],
        lists=lists or {}, status=status,
    )


def get_subscriber_by_id(engine: Engine, subscriber_id: int) -> SubscriberRow:
    """The subscriber with this id, with their lists; NotFound otherwise."""
    with transaction(engine) as conn:
        r = conn.execute(select(subscribers_t).where(subscribers_t.c.id == subscriber_id)).mappings().first()
        if r is None:
            raise NotFound(f"subscriber #{subscriber_id} does not exist")
        return _row(r, _lists_of(conn, [r["id"]])[r["id"]])


def get_subscriber(engine: Engine, email: str) -> SubscriberRow:
    """The subscriber with this address (any case), with their lists; NotFound otherwise."""
    key = _key_of(email)
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, key)
        if r is None:
            raise NotFound(f"subscriber {email.strip()!r} does not exist")
        return _row(r, _lists_of(conn, [r["id"]])[r["id"]])


def _clean_attributes(attributes: dict[str, Any] | None) -> dict[str, Any]:
    out = {}
    for k, v in (attributes or {}).items():
        k = str(k).strip()
        if not k:
            raise InvalidInput("attribute names cannot be empty")
        out[k] = v
    return check_attributes(out)


def add_subscriber(
    engine: Engine,
    email: str,
    *,
    list_slug: str | None = None,
    name: str | None = None,
    attributes: dict[str, Any] | None = None,
    source: str = "cli",
    resubscribe: bool = False,
    now: datetime | None = None,
) -> AddResult:
    """Add or update a subscriber and (with ``list_slug``) subscribe them.

    On a double-opt-in list the subscription starts ``unconfirmed`` (send them ``confirm_url``);
    on a single-opt-in list it is ``active``. A suppressed address is refused (StateError); so is
    someone who left the list, unless ``resubscribe`` says they gave fresh consent."""
    address, key = normalize_email(email)
    attrs = _clean_attributes(attributes)
    check_text("the name", (name or "").strip())
    check_text("the consent source", source)
    now = now or utcnow()
    with transaction(engine) as conn:
        lst = _list_row(conn, list_slug) if list_slug else None
        supp = _find_suppression(conn, key)
        if supp is not None:
            raise StateError(
                f"{address} is suppressed ({supp['kind']} {supp['value']}"
                + (f": {supp['reason']}" if supp["reason"] else "") + "): not added"
            )
        r = _subscriber_by_key(conn, key)
        outcome = "created"
        if r is None:
            conn.execute(
                subscribers_t.insert().values(
                    email=address, email_key=key, name=(name or "").strip(), attributes=attrs,
                    consent_source=source, consent_at=now, created_at=now, updated_at=now,
                )
            )
            r = _subscriber_by_key(conn, key)
            changed = True
        else:
            new_name = (name or "").strip() or r["name"]
            new_attrs = check_attributes({**(r["attributes"] or {}), **attrs})
            changed = new_name != r["name"] or new_attrs != (r["attributes"] or {})
            if changed:
                conn.execute(
                    subscribers_t.update().where(subscribers_t.c.id == r["id"]).values(
                        name=new_name, attributes=new_attrs, updated_at=now
                    )
                )
            outcome = "updated" if changed else "already"
        sid = r["id"]
        if lst is None:
            return AddResult(sid, address, outcome)
        fresh = joining_status(lst["opt_in"])
        sub = conn.execute(
            select(subs_t).where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lst["id"])
        ).mappings().first()
        status = sub["status"] if sub is not None else None
        decision = may_join(status, fresh_consent=resubscribe)
        if decision is Join.NEW:
            conn.execute(
                subs_t.insert().values(
                    subscriber_id=sid, list_id=lst["id"], status=fresh, source=source, created_at=now,
                    updated_at=now, confirmed_at=now if fresh == "active" else None,
                )
            )
            return AddResult(sid, address, "added", lst["id"], lst["slug"], fresh)
        assert sub is not None
        if decision is Join.LEFT:
            when = sub["unsubscribed_at"] or sub["updated_at"]
            raise StateError(
                f"{address} is {status} on list {lst['slug']!r} (since {when:%Y-%m-%d}): not re-added; "
                "pass --resubscribe only if they gave fresh consent"
            )
        if decision is Join.REJOIN:
            rejoin_in(conn, subscriber_id=sid, list_id=lst["id"], subscription_id=sub["id"], status=fresh, source=source, now=now)
            return AddResult(sid, address, "resubscribed", lst["id"], lst["slug"], fresh)
        return AddResult(sid, address, outcome if outcome != "created" else "already", lst["id"], lst["slug"], status)


# ---------------------------------------------------------------- listing and export


def _filtered(list_id: int | None, status: str | None, search: str | None):
    q = select(subscribers_t)
    if list_id is not None:
        q = q.join(subs_t, and_(subs_t.c.subscriber_id == subscribers_t.c.id, subs_t.c.list_id == list_id))
        if status:
            q = q.where(subs_t.c.status == status)
        q = q.add_columns(subs_t.c.status.label("list_status"))
    elif status:
        q = q.where(exists(select(literal(1)).where(subs_t.c.subscriber_id == subscribers_t.c.id, subs_t.c.status == status)))
    if search:
        needle = "%" + search.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        q = q.where(or_(subscribers_t.c.email_key.like(needle, escape="\\"), func.lower(subscribers_t.c.name).like(needle, escape="\\")))
    return q


def _check_status(status: str | None) -> None:
    if status is not None and status not in SUBSCRIPTION_STATUSES:
        raise InvalidInput(f"status {status!r} is invalid: use one of {', '.join(SUBSCRIPTION_STATUSES)}")


def list_subscribers(
    engine: Engine,
    *,
    list_slug: str | None = None,
    status: str | None = None,
    search: str | None = None,
    offset: int = 0,
    limit: int = 50,
) -> Page:
    """One page of subscribers (oldest first), filtered by list, status and a search in address or name."""
    _check_status(status)
    if offset < 0 or limit < 1:
        raise InvalidInput("offset must be >= 0 and limit >= 1")
    with transaction(engine) as conn:
        list_id = _list_row(conn, list_slug)["id"] if list_slug else None
        q = _filtered(list_id, status, search)
        total = conn.execute(select(func.count()).select_from(q.subquery())).scalar_one()
        rows = conn.execute(q.order_by(subscribers_t.c.id).offset(offset).limit(limit)).mappings().all()
        lists = _lists_of(conn, [r["id"] for r in rows])
    items = [_row(r, lists[r["id"]], r.get("list_status")) for r in rows]
    return Page(items=items, total=total, offset=offset, limit=limit)


def iter_subscribers(
    engine: Engine, *, list_slug: str | None = None, status: str | None = None, chunk: int = 1000,
    search: str | None = None,
) -> Iterator[SubscriberRow]:
    """Every matching subscriber (filtered as ``list_subscribers``), oldest first, read in chunks
    (constant memory, for exports)."""
    _check_status(status)
    with transaction(engine) as conn:
        list_id = _list_row(conn, list_slug)["id"] if list_slug else None
    last = 0
    while True:
        with transaction(engine) as conn:
            q = _filtered(list_id, status, search).where(subscribers_t.c.id > last).order_by(subscribers_t.c.id).limit(chunk)
            rows = conn.execute(q).mappings().all()
            lists = _lists_of(conn, [r["id"] for r in rows])
        if not rows:
            return
        for r in rows:
            yield _row(r, lists[r["id"]], r.get("list_status"))
        last = rows[-1]["id"]


def _token_subscription(conn: Connection, sid: int, lid: int):
    q = (
        select(subs_t, subscribers_t.c.email, subscribers_t.c.email_key, lists_t.c.slug, lists_t.c.name.label("list_name"))
        .join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id)
        .join(lists_t, lists_t.c.id == subs_t.c.list_id)
        .where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lid)
    )
    r = conn.execute(q).mappings().first()
    if r is None:
        raise NotFound(N_("the subscription this link was made for no longer exists"))
    return r


def peek_token(engine: Engine, secret: bytes, token: str, kind: str, *, now: datetime | None = None) -> TokenResult:
    """Verify a token (kind ``unsubscribe`` or ``confirm``) and describe its subscription WITHOUT changing
    anything (for GET pages that ask before acting). ``changed`` is False; ``status`` is the current one."""
    if kind == "unsubscribe":
        sid, lid = tokens.verify_unsubscribe_token(secret, token)
    elif kind == "confirm":
        sid, lid = tokens.verify_confirm_token(secret, token, now=now)
    else:
        raise ValueError(f"token kind must be 'unsubscribe' or 'confirm', not {kind!r}")
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], r["status"], False, lists)
