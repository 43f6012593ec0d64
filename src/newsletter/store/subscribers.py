"""Subscriber operations: add, look up, list and search, export, erase, unsubscribe,
confirm, and the global suppression list.

Functions take an Engine and return plain dataclasses; they raise ``newsletter.errors``
and never print. Nobody who unsubscribed, bounced, complained or is suppressed is put
back on a list unless the caller says they gave fresh consent (``resubscribe=True``),
and suppression is never overridden.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, Callable, Iterator

from sqlalchemy import and_, exists, func, literal, or_, select
from sqlalchemy.engine import Connection, Engine

from ..config import Config
from ..errors import InvalidInput, NotFound, StateError
from . import tokens
from .addresses import AddressError, _domain, domain_of, normalize_email
from .db import transaction
from .textrules import check_attributes, check_text
from .models import (
    OPTED_OUT_STATUSES,
    SUBSCRIPTION_STATUSES,
    MailingList,
    Subscriber,
    Subscription,
    Suppression,
    utcnow,
)

subscribers_t = Subscriber.__table__
lists_t = MailingList.__table__
subs_t = Subscription.__table__
supp_t = Suppression.__table__

__all__ = [
    "AddResult", "SubscriberRow", "Page", "TokenResult", "normalize_email", "add_subscriber",
    "get_subscriber", "get_subscriber_by_id", "peek_token", "list_subscribers", "iter_subscribers", "export_csv", "safe_cell",
    "erase_subscriber", "unsubscribe", "unsubscribe_by_token", "confirm_by_token", "unsubscribe_url",
    "confirm_url", "confirmation_message", "ConfirmationMessage", "send_confirmations", "ConfirmationRun",
    "record_confirmation_sent", "parse_age", "DEFAULT_REMIND_AFTER", "suppress", "suppress_in", "leave_all_lists", "unsuppress", "list_suppressions", "find_suppression", "suppressed_condition",
]


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


# ---------------------------------------------------------------- lookups


def _list_row(conn: Connection, slug: str):
    row = conn.execute(select(lists_t).where(lists_t.c.slug == slug)).mappings().first()
    if row is None:
        known = [r[0] for r in conn.execute(select(lists_t.c.slug).order_by(lists_t.c.slug).limit(20))]
        hint = f" (known lists: {', '.join(known)})" if known else " (no lists yet: create one with `newsletter lists create`)"
        raise NotFound(f"list {slug!r} does not exist{hint}")
    return row


def _subscriber_by_key(conn: Connection, key: str):
    return conn.execute(select(subscribers_t).where(subscribers_t.c.email_key == key)).mappings().first()


def _key_of(email: str) -> str:
    """The lookup key for an address given on the command line (valid or not: erasure must find odd ones too)."""
    try:
        return normalize_email(email)[1]
    except AddressError:
        return email.strip().lower()


def _row(r, lists: dict[str, str] | None = None, status: str | None = None) -> SubscriberRow:
    return SubscriberRow(
        id=r["id"], email=r["email"], name=r["name"], attributes=dict(r["attributes"] or {}),
        consent_source=r["consent_source"], created_at=r["created_at"], updated_at=r["updated_at"],
        lists=lists or {}, status=status,
    )


def _lists_of(conn: Connection, ids: list[int]) -> dict[int, dict[str, str]]:
    out: dict[int, dict[str, str]] = {i: {} for i in ids}
    if ids:
        q = (
            select(subs_t.c.subscriber_id, lists_t.c.slug, subs_t.c.status)
            .join(lists_t, lists_t.c.id == subs_t.c.list_id)
            .where(subs_t.c.subscriber_id.in_(ids))
            .order_by(lists_t.c.slug)
        )
        for sid, slug, status in conn.execute(q):
            out[sid][slug] = status
    return out


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


# ---------------------------------------------------------------- suppression


def _suppression_value(value: str) -> tuple[str, str]:
    """(kind, stored value) for an address or a domain given by a person."""
    text = (value or "").strip()
    if not text:
        raise InvalidInput("suppression needs an address or a domain")
    if "@" in text:
        return "address", _key_of(text)
    domain = text.lstrip("@").lower()
    checked = _domain(domain)
    if isinstance(checked, Exception):
        raise InvalidInput(f"{text!r} is not a valid domain: {checked}")
    return "domain", checked.lower()


def _find_suppression(conn: Connection, key: str):
    q = select(supp_t).where(
        or_(
            and_(supp_t.c.kind == "address", supp_t.c.value == key),
            and_(supp_t.c.kind == "domain", supp_t.c.value == domain_of(key)),
        )
    )
    return conn.execute(q).mappings().first()


def find_suppression(engine: Engine, email: str) -> Suppression | None:
    """The suppression entry (address or its domain) that blocks this address, if any."""
    with transaction(engine) as conn:
        r = _find_suppression(conn, _key_of(email))
    return Suppression(**r) if r else None


def suppressed_condition(email_key_column) -> Any:
    """SQL condition true when the address in ``email_key_column`` is suppressed (address or domain).

    Sending queries use ``~suppressed_condition(Subscriber.email_key)`` so a suppression added
    after a campaign was created still stops the mail."""
    return exists(
        select(literal(1)).select_from(supp_t).where(
            or_(
                and_(supp_t.c.kind == "address", supp_t.c.value == email_key_column),
                and_(supp_t.c.kind == "domain", email_key_column.like(literal("%@") + supp_t.c.value)),
            )
        )
    )


def suppress(engine: Engine, value: str, *, reason: str = "") -> tuple[Suppression, bool]:
    """Suppress an address (``ana@example.com``) or a whole domain (``example.net``) on every list.

    Returns (entry, created); suppressing twice keeps the first entry. Subscriptions are
    left as they are, but nothing is ever sent to a suppressed address and no import or add
    can subscribe it."""
    check_text("the suppression reason", reason or "", multiline=True)
    with transaction(engine) as conn:
        return suppress_in(conn, value, reason=reason)


def suppress_in(conn: Connection, value: str, *, reason: str = "") -> tuple[Suppression, bool]:
    """:func:`suppress` inside the caller's transaction (the bounce rules suppress and change
    subscriptions together)."""
    kind, stored = _suppression_value(value)
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    # ON CONFLICT DO NOTHING: two processes suppressing the same address at once both succeed.
    added = conn.execute(insert(supp_t).values(kind=kind, value=stored, reason=reason or "", created_at=utcnow())
                         .on_conflict_do_nothing(index_elements=["kind", "value"])).rowcount
    r = conn.execute(select(supp_t).where(supp_t.c.kind == kind, supp_t.c.value == stored)).mappings().first()
    return Suppression(**r), bool(added)


def unsuppress(engine: Engine, value: str) -> bool:
    """Remove a suppression entry; False when there was none."""
    kind, stored = _suppression_value(value)
    with transaction(engine) as conn:
        return conn.execute(supp_t.delete().where(supp_t.c.kind == kind, supp_t.c.value == stored)).rowcount > 0


def list_suppressions(engine: Engine) -> list[Suppression]:
    """Every suppression entry, newest first."""
    with transaction(engine) as conn:
        rows = conn.execute(select(supp_t).order_by(supp_t.c.created_at.desc(), supp_t.c.id.desc())).mappings().all()
    return [Suppression(**r) for r in rows]


# ---------------------------------------------------------------- add


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
        fresh = "unconfirmed" if lst["opt_in"] == "double" else "active"
        sub = conn.execute(
            select(subs_t).where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lst["id"])
        ).mappings().first()
        if sub is None:
            conn.execute(
                subs_t.insert().values(
                    subscriber_id=sid, list_id=lst["id"], status=fresh, source=source, created_at=now,
                    updated_at=now, confirmed_at=now if fresh == "active" else None,
                )
            )
            return AddResult(sid, address, "added", lst["id"], lst["slug"], fresh)
        status = sub["status"]
        if status in OPTED_OUT_STATUSES:
            if not resubscribe:
                when = sub["unsubscribed_at"] or sub["updated_at"]
                raise StateError(
                    f"{address} is {status} on list {lst['slug']!r} (since {when:%Y-%m-%d}): not re-added; "
                    "pass --resubscribe only if they gave fresh consent"
                )
            conn.execute(
                subs_t.update().where(subs_t.c.id == sub["id"]).values(
                    status=fresh, source=source, updated_at=now, unsubscribed_at=None,
                    confirmed_at=now if fresh == "active" else None, confirmation_sent_at=None,
                )
            )
            conn.execute(subscribers_t.update().where(subscribers_t.c.id == sid).values(consent_source=source, consent_at=now))
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
    engine: Engine, *, list_slug: str | None = None, status: str | None = None, chunk: int = 1000
) -> Iterator[SubscriberRow]:
    """Every matching subscriber, oldest first, read in chunks (constant memory, for exports)."""
    _check_status(status)
    with transaction(engine) as conn:
        list_id = _list_row(conn, list_slug)["id"] if list_slug else None
    last = 0
    while True:
        with transaction(engine) as conn:
            q = _filtered(list_id, status, None).where(subscribers_t.c.id > last).order_by(subscribers_t.c.id).limit(chunk)
            rows = conn.execute(q).mappings().all()
            lists = _lists_of(conn, [r["id"] for r in rows])
        if not rows:
            return
        for r in rows:
            yield _row(r, lists[r["id"]], r.get("list_status"))
        last = rows[-1]["id"]


_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_GUARDED = (*_FORMULA_START, "'")  # a cell that starts with ' is guarded too, so the guard can be undone exactly
EXPORT_MARKER = "newsletter_export_v1"  # last header cell of export_csv: the import then undoes the guard


def safe_cell(value: Any) -> str:
    """A CSV cell that a spreadsheet will not run as a formula (CSV injection): a cell starting with
    = + - @ TAB or CR — or with ' itself — gets a leading ' (``unguard_cell`` takes it off again)."""
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        text = json.dumps(value, ensure_ascii=False)
    elif isinstance(value, datetime):
        text = value.isoformat(timespec="seconds")
    else:
        text = str(value)
    return "'" + text if text.startswith(_GUARDED) else text


def unguard_cell(text: str) -> str:
    """The value ``safe_cell`` guarded (a cell of our own export, see EXPORT_MARKER)."""
    return text[1:] if text.startswith("'") else text


def export_csv(engine: Engine, out: IO[str], *, list_slug: str | None = None, status: str | None = None) -> int:
    """Write matching subscribers as CSV (header: email, name, status or lists, consent_source,
    created_at, one column per attribute, then EXPORT_MARKER) that re-imports exactly: every cell
    is guarded against CSV injection (``safe_cell``), and the import takes the guard off again in
    a file whose header ends with the marker. Returns the row count."""
    attr_keys: set[str] = set()
    for row in iter_subscribers(engine, list_slug=list_slug, status=status):
        attr_keys.update(row.attributes)
    reserved = {"email", "name", "status", "lists", "consent_source", "created_at", EXPORT_MARKER}
    keys = sorted(k for k in attr_keys if k not in reserved)
    writer = csv.writer(out, lineterminator="\r\n")
    head = ["email", "name", "status" if list_slug else "lists", "consent_source", "created_at", *keys]
    writer.writerow([safe_cell(h) for h in head] + [EXPORT_MARKER])
    n = 0
    for row in iter_subscribers(engine, list_slug=list_slug, status=status):
        where = row.status if list_slug else " ".join(f"{slug}:{st}" for slug, st in row.lists.items())
        cells = [row.email, row.name, where, row.consent_source, row.created_at, *(row.attributes.get(k) for k in keys)]
        writer.writerow([safe_cell(c) for c in cells] + [""])
        n += 1
    return n


# ---------------------------------------------------------------- leaving


def erase_subscriber(engine: Engine, email: str, *, suppress_address: bool = False, reason: str = "erased on request") -> SubscriberRow:
    """Delete a person's data: their subscriber row and every subscription (right to erasure).

    With ``suppress_address`` the address stays on the suppression list so no later import re-adds it."""
    key = _key_of(email)
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, key)
        if r is None:
            raise NotFound(f"subscriber {email.strip()!r} does not exist")
        row = _row(r, _lists_of(conn, [r["id"]])[r["id"]])
        conn.execute(subs_t.delete().where(subs_t.c.subscriber_id == r["id"]))
        from .bounce_models import BounceEvent  # their bounce history goes too, address included

        bounces_t = BounceEvent.__table__
        conn.execute(bounces_t.delete().where(or_(bounces_t.c.subscriber_id == r["id"], bounces_t.c.recipient == key)))
        from .mailbox_models import MailboxMessage  # their emails' traces go; the keys stay so nothing is read again

        mail_t = MailboxMessage.__table__
        conn.execute(mail_t.update().where(or_(mail_t.c.subscriber_id == r["id"], mail_t.c.from_address == key))
                     .values(from_address=None, subject="", message_id=None, sent_at=None, subscriber_id=None,
                             list_id=None, detail="erased on request"))
        conn.execute(subscribers_t.delete().where(subscribers_t.c.id == r["id"]))
        if suppress_address and not conn.execute(
            select(supp_t.c.id).where(supp_t.c.kind == "address", supp_t.c.value == key)
        ).first():
            conn.execute(supp_t.insert().values(kind="address", value=key, reason=reason, created_at=utcnow()))
    return row


def _set_unsubscribed(conn: Connection, where, now: datetime, status: str = "unsubscribed") -> int:
    """Take subscriptions matching ``where`` that are active or unconfirmed out: to ``unsubscribed``,
    or ``bounced``/``complained`` (the bounce rules). Someone already out keeps their status."""
    if status not in OPTED_OUT_STATUSES:
        raise InvalidInput(f"status {status!r} is not a way of leaving a list")
    return conn.execute(
        subs_t.update()
        .where(where, subs_t.c.status.in_(("active", "unconfirmed")))
        .values(status=status, unsubscribed_at=now, updated_at=now)
    ).rowcount


def leave_all_lists(conn: Connection, subscriber_id: int, status: str, now: datetime) -> int:
    """Take a subscriber off every list they are on (``bounced``, ``complained`` or
    ``unsubscribed``) in the caller's transaction; returns how many subscriptions changed."""
    return _set_unsubscribed(conn, subs_t.c.subscriber_id == subscriber_id, now, status)


def unsubscribe(engine: Engine, email: str, list_slug: str | None = None, *, now: datetime | None = None) -> list[str]:
    """Unsubscribe from one list or (without ``list_slug``) all lists. Returns the slugs that changed."""
    key = _key_of(email)
    now = now or utcnow()
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, key)
        if r is None:
            raise NotFound(f"subscriber {email.strip()!r} does not exist")
        before = _lists_of(conn, [r["id"]])[r["id"]]
        cond = subs_t.c.subscriber_id == r["id"]
        if list_slug:
            lst = _list_row(conn, list_slug)
            if list_slug not in before:
                raise NotFound(f"{r['email']} is not on list {list_slug!r}")
            cond = and_(cond, subs_t.c.list_id == lst["id"])
        _set_unsubscribed(conn, cond, now)
        after = _lists_of(conn, [r["id"]])[r["id"]]
    return [slug for slug in after if after[slug] != before.get(slug)]


def _token_subscription(conn: Connection, sid: int, lid: int):
    q = (
        select(subs_t, subscribers_t.c.email, subscribers_t.c.email_key, lists_t.c.slug, lists_t.c.name.label("list_name"))
        .join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id)
        .join(lists_t, lists_t.c.id == subs_t.c.list_id)
        .where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lid)
    )
    r = conn.execute(q).mappings().first()
    if r is None:
        raise NotFound("the subscription this link was made for no longer exists")
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


def unsubscribe_by_token(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None) -> TokenResult:
    """Verify an unsubscribe token and unsubscribe that subscriber from that list (idempotent)."""
    sid, lid = tokens.verify_unsubscribe_token(secret, token)
    now = now or utcnow()
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        changed = _set_unsubscribed(conn, subs_t.c.id == r["id"], now) > 0
        status = "unsubscribed" if changed else r["status"]
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], status, changed, lists)


def confirm_by_token(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None) -> TokenResult:
    """Verify a confirm token and make that unconfirmed subscription active (idempotent).

    Someone who has since unsubscribed or is suppressed is not re-activated (StateError)."""
    when = now or utcnow()
    sid, lid = tokens.verify_confirm_token(secret, token, now=now)
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        if r["status"] in OPTED_OUT_STATUSES:
            raise StateError(f"{r['email']} is {r['status']} on list {r['slug']!r}: this confirmation link no longer applies")
        if _find_suppression(conn, r["email_key"]) is not None:
            raise StateError(f"{r['email']} is suppressed: not confirmed")
        changed = r["status"] == "unconfirmed"
        if changed:
            conn.execute(
                subs_t.update().where(subs_t.c.id == r["id"]).values(status="active", confirmed_at=when, updated_at=when)
            )
            conn.execute(subscribers_t.update().where(subscribers_t.c.id == sid).values(consent_at=when))
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], "active", changed, lists)


def unsubscribe_url(config: Config, subscriber_id: int, list_id: int, *, secret: bytes | None = None) -> str:
    """The public one-click unsubscribe link ``{base_url}/unsubscribe/{token}``."""
    from .secret import secret_key

    key = secret if secret is not None else secret_key(config)
    return f"{config.base_url.rstrip('/')}/unsubscribe/{tokens.unsubscribe_token(key, subscriber_id, list_id)}"


@dataclass
class ConfirmationMessage:
    """The double-opt-in email: what dispatch's ``send_one`` needs."""

    subject: str
    text: str
    html: str


def confirmation_message(config: Config, *, email: str, list_name: str, confirm_url: str, name: str = "") -> ConfirmationMessage:
    """Subject and bodies (plain text and HTML) asking someone to confirm their subscription."""
    from html import escape

    hello = f"Hello {name}," if name else "Hello,"
    subject = f"Please confirm your subscription to {list_name}"
    text = (
        f"{hello}\n\nSomeone (hopefully you) asked to subscribe {email} to {list_name} from "
        f"{config.newsletter_name}.\n\nConfirm by opening this link within 7 days:\n{confirm_url}\n\n"
        "If you did not ask for this, ignore this email: you will not be subscribed.\n"
    )
    html = (
        f"<p>{escape(hello)}</p><p>Someone (hopefully you) asked to subscribe <b>{escape(email)}</b> to "
        f"<b>{escape(list_name)}</b> from {escape(config.newsletter_name)}.</p>"
        f'<p><a href="{escape(confirm_url, quote=True)}">Confirm my subscription</a> (the link works for 7 days)</p>'
        "<p>If you did not ask for this, ignore this email: you will not be subscribed.</p>"
    )
    return ConfirmationMessage(subject, text, html)


DEFAULT_REMIND_AFTER = timedelta(days=1)
_AGE_RE = re.compile(r"\s*(\d{1,9})\s*([mhdw])\s*", re.IGNORECASE)
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_AGE = timedelta(days=36500)


def parse_age(value: str) -> timedelta:
    """An age such as ``30m``, ``12h``, ``3d`` or ``2w`` (minutes, hours, days, weeks); InvalidInput otherwise."""
    m = _AGE_RE.fullmatch(value or "")
    if m is None:
        raise InvalidInput(f"{value!r} is not an age: use a whole number and a unit, like 30m, 12h, 3d or 2w")
    try:
        age = timedelta(**{_AGE_UNITS[m.group(2).lower()]: int(m.group(1))})
    except OverflowError:
        age = None
    if age is None or age > _MAX_AGE:
        raise InvalidInput(f"{value!r} is too long an age: at most 100 years")
    return age


@dataclass
class ConfirmationRun:
    """What ``send_confirmations`` did; ``failures`` keeps (address, one-line reason), at most 100.

    ``skipped_mailed``: unconfirmed but already mailed (default run) or mailed too recently
    (reminders); ``stopped_at_limit``: ``limit`` was reached with more left to mail."""

    sent: int = 0
    failed: int = 0
    skipped_mailed: int = 0
    skipped_suppressed: int = 0
    stopped_at_limit: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)


def record_confirmation_sent(engine: Engine, subscriber_id: int, list_id: int, *, when: datetime | None = None) -> bool:
    """Remember that the confirmation email for this subscription went out (at ``when``, default now).

    Called right after each successful send, in a transaction of its own, by everything that
    mails a confirmation (``send_confirmations``, ``subscribers add``, the web signup), so a
    later ``send-confirmations`` does not mail that person again. False if there is no such
    subscription."""
    with transaction(engine) as conn:
        return conn.execute(
            subs_t.update()
            .where(subs_t.c.subscriber_id == subscriber_id, subs_t.c.list_id == list_id)
            .values(confirmation_sent_at=when or utcnow())
        ).rowcount > 0


def _confirmation_due(cutoff: datetime | None):
    """Never mailed, or (reminders, with ``cutoff``) last mailed at or before ``cutoff``."""
    never = subs_t.c.confirmation_sent_at.is_(None)
    return never if cutoff is None else or_(never, subs_t.c.confirmation_sent_at <= cutoff)


def _unconfirmed_on(list_id: int):
    """Unconfirmed subscriptions of a list joined to their subscriber (uses ix_subscriptions_list_status)."""
    return (
        subs_t.join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id),
        and_(subs_t.c.list_id == list_id, subs_t.c.status == "unconfirmed"),
    )


def send_confirmations(
    engine: Engine,
    config: Config,
    list_slug: str,
    send: Callable[[str, str, str, str], Any],
    *,
    limit: int | None = None,
    remind_after: timedelta | None = None,
    secret: bytes | None = None,
    now: datetime | None = None,
) -> ConfirmationRun:
    """Mail the confirmation link to the ``unconfirmed`` subscribers of a double-opt-in list
    who were never mailed it; with ``remind_after``, also to those last mailed at least that
    long ago (a reminder; the age counts back from ``now``, default the current time).
    Suppressed addresses are skipped; oldest subscriptions first.

    ``send(to, subject, html, text)`` delivers one message (the CLI passes dispatch's send_one).
    Each successful send is recorded at once in its own transaction, so a run that stops half-way
    (crash, ``limit``) mails only the rest next time; a crash between a send and its record can
    repeat that one message. A failure for one address (any NewsletterError) is counted, left
    unrecorded (the next run tries again) and the run goes on; any other exception ends it.
    Each person is checked again just before their message, so someone who confirmed, left, was
    suppressed or was mailed by someone else meanwhile is not mailed."""
    from ..errors import NewsletterError
    from .secret import secret_key

    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    if remind_after is not None and remind_after < timedelta(0):
        raise InvalidInput("the reminder age cannot be negative")
    now = now or utcnow()
    cutoff = now - remind_after if remind_after is not None else None
    due = _confirmation_due(cutoff)
    with transaction(engine) as conn:
        lst = _list_row(conn, list_slug)
        if lst["opt_in"] != "double":
            raise StateError(f"list {list_slug!r} is single opt-in: its subscribers need no confirmation")
        joined, unconfirmed = _unconfirmed_on(lst["id"])
        suppressed = suppressed_condition(subscribers_t.c.email_key)
        counted = select(func.count()).select_from(joined).where(unconfirmed)
        run = ConfirmationRun(
            skipped_suppressed=conn.execute(counted.where(suppressed)).scalar_one(),
            skipped_mailed=conn.execute(counted.where(~suppressed, ~due)).scalar_one(),
        )
    key = secret if secret is not None else secret_key(config)
    candidates = (
        select(subs_t.c.id, subs_t.c.subscriber_id, subscribers_t.c.email, subscribers_t.c.name)
        .select_from(joined).where(unconfirmed, due, ~suppressed).order_by(subs_t.c.id).limit(500)
    )
    recheck = select(subs_t.c.status, due.label("due"), suppressed.label("suppressed")).select_from(joined)
    last = 0
    while True:
        with transaction(engine) as conn:
            rows = conn.execute(candidates.where(subs_t.c.id > last)).mappings().all()
        if not rows:
            return run
        for row in rows:
            last = row["id"]
            if limit is not None and run.sent + run.failed >= limit:
                run.stopped_at_limit = True
                return run
            with transaction(engine) as conn:
                fresh = conn.execute(recheck.where(subs_t.c.id == row["id"])).mappings().first()
            if fresh is None or fresh["status"] != "unconfirmed":
                continue  # confirmed, left or erased meanwhile
            if fresh["suppressed"]:
                run.skipped_suppressed += 1
                continue
            if not fresh["due"]:
                run.skipped_mailed += 1  # mailed meanwhile (web signup, `subscribers add`, another run)
                continue
            msg = confirmation_message(
                config, email=row["email"], name=row["name"], list_name=lst["name"],
                confirm_url=confirm_url(config, row["subscriber_id"], lst["id"], secret=key),
            )
            try:
                send(row["email"], msg.subject, msg.html, msg.text)
            except NewsletterError as e:
                run.failed += 1
                if len(run.failures) < 100:
                    run.failures.append((row["email"], str(e)))
                continue
            record_confirmation_sent(engine, row["subscriber_id"], lst["id"])
            run.sent += 1


def confirm_url(config: Config, subscriber_id: int, list_id: int, *, secret: bytes | None = None, now: datetime | None = None) -> str:
    """The public double-opt-in link ``{base_url}/confirm/{token}`` (expires after 7 days)."""
    from .secret import secret_key

    key = secret if secret is not None else secret_key(config)
    return f"{config.base_url.rstrip('/')}/confirm/{tokens.confirm_token(key, subscriber_id, list_id, now=now)}"
