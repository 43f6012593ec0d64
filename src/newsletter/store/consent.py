"""The consent rule: who may be put (back) on a list, and the evidence kept when they are.

Suppression always refuses, fresh consent or not. Someone not on the list may join. Someone
active or unconfirmed is already there. Someone who left (unsubscribed, bounced, complained)
comes back only with fresh consent — ``--resubscribe`` from an operator who has it, or the
person using a rejoin link we mailed them — and then their consent record (source and time)
is replaced. ``subscribers add``, the import, confirmation links and the signup form all ask
``may_join``; ``subscribers add`` and the signup's links put people on the list through
``rejoin_in``. An import's ``--resubscribe`` brings its subscriptions back in bulk SQL
(import_sql.py, the same columns) and leaves the person's earlier consent record as it was.
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from sqlalchemy.engine import Connection

from .lookups import subs_t, subscribers_t
from .models import OPTED_OUT_STATUSES


class Join(str, Enum):
    """What the consent rule allows for one person and one list."""

    NEW = "new"  # not on the list: they may join
    PRESENT = "present"  # active or unconfirmed: already there
    REJOIN = "rejoin"  # left, and gave fresh consent: they may come back
    LEFT = "left"  # left, without fresh consent: not put back
    SUPPRESSED = "suppressed"  # suppressed: never, whatever the consent


def joining_status(opt_in: str) -> str:
    """The status someone joining a list gets: unconfirmed on a double-opt-in list (until they use
    the confirmation link), active on a single-opt-in one."""
    return "unconfirmed" if opt_in == "double" else "active"


def may_join(status: str | None, *, fresh_consent: bool, suppressed: bool = False) -> Join:
    """The rule for someone whose subscription to a list has ``status`` (None: not on it)."""
    if suppressed:
        return Join.SUPPRESSED
    if status is None:
        return Join.NEW
    if status in OPTED_OUT_STATUSES:
        return Join.REJOIN if fresh_consent else Join.LEFT
    return Join.PRESENT


def rejoin_in(conn: Connection, *, subscriber_id: int, list_id: int, subscription_id: int | None, status: str,
              source: str, now: datetime, ip_class: str | None = None) -> None:
    """Put a person on a list with fresh consent, in the caller's transaction: create their
    subscription (``subscription_id`` None) or bring it back with ``status`` (active or
    unconfirmed), and record the consent on the person (source, time, and the class of network
    ``ip_class`` when it was given on a web page). A subscription that
    goes back to unconfirmed forgets its last confirmation email, so a fresh one is due."""
    confirmed = now if status == "active" else None
    if subscription_id is None:
        conn.execute(subs_t.insert().values(
            subscriber_id=subscriber_id, list_id=list_id, status=status, source=source, created_at=now, updated_at=now,
            confirmed_at=confirmed))
    else:
        values = dict(status=status, source=source, updated_at=now, unsubscribed_at=None, confirmed_at=confirmed)
        if status == "unconfirmed":
            values["confirmation_sent_at"] = None
        conn.execute(subs_t.update().where(subs_t.c.id == subscription_id).values(**values))
    conn.execute(subscribers_t.update().where(subscribers_t.c.id == subscriber_id).values(
        consent_source=source, consent_at=now, consent_ip_class=ip_class or None))
