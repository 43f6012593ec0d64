"""Leaving: unsubscribing from one list, several or all, by address or by a link's token, and erasure.

Someone who leaves keeps a subscription row with their status (``unsubscribed``, or
``bounced``/``complained`` from the bounce rules), so no import or signup quietly puts them
back; erasure deletes the person and everything about them instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Sequence

from sqlalchemy import and_, or_, select
from sqlalchemy.engine import Connection, Engine

from ..config import Config
from ..errors import InvalidInput, NotFound
from ..i18n import N_
from . import tokens
from .db import transaction
from .db import table_of
from .lookups import _key_of, _list_row, _lists_of, _subscriber_by_key, lists_t, subs_t, subscribers_t, supp_t
from .models import OPTED_OUT_STATUSES, utcnow
from .subscribers import SubscriberRow, TokenResult, _row, _token_subscription


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

        bounces_t = table_of(BounceEvent)
        conn.execute(bounces_t.delete().where(or_(bounces_t.c.subscriber_id == r["id"], bounces_t.c.recipient == key)))
        from .mailbox_models import MailboxMessage  # their emails' traces go; the keys stay so nothing is read again

        mail_t = table_of(MailboxMessage)
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


def leave_lists(conn: Connection, subscriber_id: int, list_ids: Sequence[int] | None, now: datetime,
                status: str = "unsubscribed") -> int:
    """Take a subscriber off these lists (None: every list they are on), in the caller's
    transaction: the one statement behind every way of leaving (the CLI, the admin page and API,
    the links in each email, the bounce rules). Returns how many subscriptions changed."""
    cond = subs_t.c.subscriber_id == subscriber_id
    if list_ids is not None:
        cond = and_(cond, subs_t.c.list_id.in_(list_ids))
    return _set_unsubscribed(conn, cond, now, status)


def leave_all_lists(conn: Connection, subscriber_id: int, status: str, now: datetime) -> int:
    """Take a subscriber off every list they are on (``bounced``, ``complained`` or
    ``unsubscribed``) in the caller's transaction; returns how many subscriptions changed."""
    return leave_lists(conn, subscriber_id, None, now, status)


def unsubscribe(engine: Engine, email: str, list_slug: str | None = None, *, now: datetime | None = None) -> list[str]:
    """Unsubscribe from one list or (without ``list_slug``) all lists. Returns the slugs that changed."""
    key = _key_of(email)
    now = now or utcnow()
    with transaction(engine) as conn:
        r = _subscriber_by_key(conn, key)
        if r is None:
            raise NotFound(f"subscriber {email.strip()!r} does not exist")
        before = _lists_of(conn, [r["id"]])[r["id"]]
        list_ids = None
        if list_slug:
            lst = _list_row(conn, list_slug)
            if list_slug not in before:
                raise NotFound(f"{r['email']} is not on list {list_slug!r}")
            list_ids = [lst["id"]]
        leave_lists(conn, r["id"], list_ids, now)
        after = _lists_of(conn, [r["id"]])[r["id"]]
    return [slug for slug in after if after[slug] != before.get(slug)]


def unsubscribe_by_token(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None) -> TokenResult:
    """Verify an unsubscribe token and unsubscribe that subscriber from that list (idempotent)."""
    sid, lid = tokens.verify_unsubscribe_token(secret, token)
    now = now or utcnow()
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        changed = leave_lists(conn, sid, [lid], now) > 0
        status = "unsubscribed" if changed else r["status"]
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], status, changed, lists)


@dataclass
class ListChoice:
    """One of the person's other lists, offered on the unsubscribe page."""

    id: int
    slug: str
    name: str


def _other_lists(conn: Connection, subscriber_id: int, list_id: int) -> list[ListChoice]:
    """The lists besides ``list_id`` the subscriber could still leave (active or unconfirmed), by slug."""
    q = (
        select(lists_t.c.id, lists_t.c.slug, lists_t.c.name)
        .join(subs_t, subs_t.c.list_id == lists_t.c.id)
        .where(subs_t.c.subscriber_id == subscriber_id, subs_t.c.list_id != list_id,
               subs_t.c.status.in_(("active", "unconfirmed")))
        .order_by(lists_t.c.slug)
    )
    return [ListChoice(i, slug, name) for i, slug, name in conn.execute(q)]


def unsubscribe_choices(engine: Engine, secret: bytes, token: str) -> tuple[TokenResult, list[ListChoice]]:
    """What an unsubscribe link's page shows, changing nothing: the link's subscription, and
    the person's other lists they could leave at the same time."""
    sid, lid = tokens.verify_unsubscribe_token(secret, token)
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        lists = _lists_of(conn, [sid])[sid]
        others = _other_lists(conn, sid, lid)
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], r["status"], False, lists), others


def unsubscribe_chosen(engine: Engine, secret: bytes, token: str, chosen: Sequence[str], *,
                       now: datetime | None = None) -> tuple[TokenResult, list[str]]:
    """The unsubscribe page's form: leave the link's list and/or the other lists chosen on the
    page (list ids as posted; none chosen means the link's list). Returns the link's
    subscription as it was and the names of the lists left; InvalidInput, changing nothing,
    when a chosen list is not one the page offered."""
    sid, lid = tokens.verify_unsubscribe_token(secret, token)
    now = now or utcnow()
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        lists = _lists_of(conn, [sid])[sid]
        by_id = {str(o.id): o for o in _other_lists(conn, sid, lid)}
        chosen = list(chosen) or [str(lid)]
        if any(c != str(lid) and c not in by_id for c in chosen):
            raise InvalidInput(N_("that list is not one of this subscriber's lists"))
        leaving = ([(lid, r["list_name"])] if str(lid) in chosen else []) + [(by_id[c].id, by_id[c].name) for c in chosen if c in by_id]
        leave_lists(conn, sid, [i for i, _ in leaving], now)
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], r["status"], False, lists), [name for _, name in leaving]


def unsubscribe_url(config: Config, subscriber_id: int, list_id: int, *, secret: bytes | None = None) -> str:
    """The public one-click unsubscribe link ``{base_url}/unsubscribe/{token}``."""
    from .secret import secret_key

    key = secret if secret is not None else secret_key(config)
    return f"{config.base_url.rstrip('/')}/unsubscribe/{tokens.unsubscribe_token(key, subscriber_id, list_id)}"
