"""Bulk actions on many subscribers at once — a ticked selection or everyone matching a filter:
add to a list, remove from a list, unsubscribe, send the confirmation email.

Each action applies the same rules as its one-person form: adding asks the consent rule
(consent.py: nobody who left is put back, suppression always refuses); unsubscribing is
leaving.py's statement (``_set_unsubscribed``, behind ``leave_lists``), once per chunk; confirmations go through optin.py's ``mail_confirmation``.
"Remove" takes people off a list as if they had never been added (a mistake undone): only
active or unconfirmed subscriptions go; someone who left stays recorded as having left, so a
later import cannot put them back. People are handled in chunks, one transaction per chunk.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterator

from sqlalchemy import ColumnElement, and_, select
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import InvalidInput, NewsletterError, StateError
from .consent import Join, joining_status, may_join
from .db import transaction
from .leaving import _set_unsubscribed as set_unsubscribed
from .lookups import _list_row, lists_t, subs_t, subscribers_t
from .models import SUBSCRIPTION_STATUSES, utcnow
from .suppressions import suppressed_condition

ACTIONS = ("add", "remove", "unsubscribe", "confirm")
CHUNK = 500
MAX_IDS = 10_000  # ticked boxes in one request


@dataclass
class Selection:
    """Who a bulk action is for: these subscriber ids, or (``ids`` None) everyone matching the filter."""

    ids: list[int] | None = None
    list_slug: str | None = None
    status: str | None = None
    search: str | None = None


@dataclass
class BulkResult:
    """What a bulk action did, in counts; ``failures`` keeps (address, reason), at most 20."""

    action: str
    selected: int = 0
    changed: int = 0
    unchanged: int = 0  # already in that state (already on the list, not on it, already out)
    skipped_left: int = 0  # add: they left that list, and a bulk add is no fresh consent
    skipped_suppressed: int = 0
    failed: int = 0
    failures: list[tuple[str, str]] = field(default_factory=list)


def _chunks(engine: Engine, sel: Selection) -> Iterator[list[int]]:
    """The selected subscriber ids, in id order, CHUNK at a time (a filter is read as it goes)."""
    from .subscribers import _check_status, _filtered

    if sel.ids is not None:
        if len(sel.ids) > MAX_IDS:
            raise InvalidInput(f"{len(sel.ids)} people ticked: at most {MAX_IDS}; use 'everyone matching the filter' instead")
        ids = sorted(set(sel.ids))
        for i in range(0, len(ids), CHUNK):
            yield ids[i:i + CHUNK]
        return
    _check_status(sel.status)
    with transaction(engine) as conn:
        list_id = _list_row(conn, sel.list_slug)["id"] if sel.list_slug else None
    last = 0
    while True:
        q = _filtered(list_id, sel.status, sel.search).with_only_columns(subscribers_t.c.id).where(subscribers_t.c.id > last)
        with transaction(engine) as conn:
            ids = list(conn.execute(q.order_by(subscribers_t.c.id).limit(CHUNK)).scalars())
        if not ids:
            return
        yield ids
        last = ids[-1]


def _target(engine: Engine, slug: str | None, action: str):
    if not slug:
        raise InvalidInput(f"choose the list to {'add them to' if action == 'add' else 'remove them from'}")
    with transaction(engine) as conn:
        return _list_row(conn, slug)


def run_bulk(engine: Engine, action: str, sel: Selection, *, list_slug: str | None = None,
             source: str = "admin", now: datetime | None = None) -> BulkResult:
    """Apply ``action`` (add, remove, unsubscribe) to the selection. ``list_slug`` is the list to
    add to or remove from; for unsubscribe it is optional (None: every list). Confirmations
    need a mail sender: ``send_confirmations_to``."""
    if action not in ("add", "remove", "unsubscribe"):
        raise InvalidInput(f"unknown bulk action {action!r} (add, remove, unsubscribe or confirm)")
    lst = _target(engine, list_slug, action) if action in ("add", "remove") or list_slug else None
    now = now or utcnow()
    result = BulkResult(action)
    for ids in _chunks(engine, sel):
        with transaction(engine) as conn:
            present = dict(conn.execute(select(subscribers_t.c.id, subscribers_t.c.email_key)
                                        .where(subscribers_t.c.id.in_(ids))).all())
            result.selected += len(present)
            if not present:
                continue
            if action == "unsubscribe":
                # leaving.py's one statement for the whole chunk; people counted by who had a subscription to leave
                where: ColumnElement[bool] = subs_t.c.subscriber_id.in_(list(present))
                if lst is not None:
                    where = and_(where, subs_t.c.list_id == lst["id"])
                leaving = set(conn.execute(select(subs_t.c.subscriber_id).where(
                    where, subs_t.c.status.in_(("active", "unconfirmed")))).scalars())
                set_unsubscribed(conn, where, now)
                result.changed += len(leaving)
                result.unchanged += len(present) - len(leaving)
                continue
            assert lst is not None
            status = dict(conn.execute(select(subs_t.c.subscriber_id, subs_t.c.status)
                                       .where(subs_t.c.list_id == lst["id"], subs_t.c.subscriber_id.in_(list(present)))).all())
            if action == "remove":
                gone = conn.execute(subs_t.delete().where(
                    subs_t.c.list_id == lst["id"], subs_t.c.subscriber_id.in_(list(present)),
                    subs_t.c.status.in_(("active", "unconfirmed")))).rowcount
                result.changed += gone
                result.unchanged += len(present) - gone
                continue
            suppressed = {r[0] for r in conn.execute(select(subscribers_t.c.id).where(
                subscribers_t.c.id.in_(list(present)), suppressed_condition(subscribers_t.c.email_key)))}
            fresh = joining_status(lst["opt_in"])
            rows = []
            for sid in present:
                decision = may_join(status.get(sid), fresh_consent=False, suppressed=sid in suppressed)
                if decision is Join.NEW:
                    rows.append(dict(subscriber_id=sid, list_id=lst["id"], status=fresh, source=source, created_at=now,
                                     updated_at=now, confirmed_at=now if fresh == "active" else None))
                elif decision is Join.SUPPRESSED:
                    result.skipped_suppressed += 1
                elif decision is Join.LEFT:
                    result.skipped_left += 1
                else:
                    result.unchanged += 1
            if rows:
                conn.execute(subs_t.insert(), rows)
                result.changed += len(rows)
    return result


def send_confirmations_to(engine: Engine, config: Config, sel: Selection, send, *, list_slug: str | None = None,
                          secret: bytes | None = None) -> BulkResult:
    """Mail the confirmation link for each unconfirmed subscription of the selected people on a
    double-opt-in list (``list_slug``, or every such list), skipping suppressed addresses and
    subscriptions already mailed (``send-confirmations --remind`` is for reminders). ``send`` as
    for optin.mail_confirmation; a failure for one address is counted and the run goes on."""
    from .optin import Invitation, check_confirmation_template, mail_confirmation

    lst = _target(engine, list_slug, "confirm") if list_slug else None
    if lst is not None and lst["opt_in"] != "double":
        raise StateError(f"list {list_slug!r} is single opt-in: its subscribers need no confirmation")
    check_confirmation_template(config, lst["language"] if lst is not None else None)  # broken: nobody mailed
    result = BulkResult("confirm")
    q = (select(subs_t.c.subscriber_id, subs_t.c.list_id, subs_t.c.confirmation_sent_at, subscribers_t.c.email,
                subscribers_t.c.name, lists_t.c.name.label("list_name"),
                suppressed_condition(subscribers_t.c.email_key).label("suppressed"))
         .join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id)
         .join(lists_t, lists_t.c.id == subs_t.c.list_id)
         .where(subs_t.c.status == "unconfirmed", lists_t.c.opt_in == "double"))
    if lst is not None:
        q = q.where(subs_t.c.list_id == lst["id"])
    for ids in _chunks(engine, sel):
        with transaction(engine) as conn:
            rows = conn.execute(q.where(subs_t.c.subscriber_id.in_(ids)).order_by(subs_t.c.id)).mappings().all()
        result.selected += len(ids)
        for r in rows:
            if r["suppressed"]:
                result.skipped_suppressed += 1
                continue
            if r["confirmation_sent_at"] is not None:
                result.unchanged += 1
                continue
            try:
                mail_confirmation(engine, config, send, Invitation(r["subscriber_id"], r["list_id"], r["email"], r["name"],
                                                                   r["list_name"]), secret=secret)
            except NewsletterError as e:
                result.failed += 1
                if len(result.failures) < 20:
                    result.failures.append((r["email"], str(e)))
                continue
            result.changed += 1
    return result


__all__ = ["ACTIONS", "BulkResult", "Selection", "run_bulk", "send_confirmations_to", "SUBSCRIPTION_STATUSES"]
