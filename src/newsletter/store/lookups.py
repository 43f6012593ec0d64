"""The subscriber tables and the small lookups every subscriber module shares.

A list by slug (NotFound naming the known lists), a person by address key, the key of an
address as typed (valid or not: erasure must find odd ones too), and a person's lists with
their status on each. Functions here run in the caller's transaction.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.engine import Connection, RowMapping

from ..errors import NotFound
from .addresses import AddressError, normalize_email
from .db import table_of
from .models import MailingList, Subscriber, Subscription, Suppression


subscribers_t = table_of(Subscriber)
lists_t = table_of(MailingList)
subs_t = table_of(Subscription)
supp_t = table_of(Suppression)


def _list_row(conn: Connection, slug: str) -> RowMapping:
    """The list named ``slug``; NotFound naming the known lists otherwise."""
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
