"""TEMPORARY home of the scheduler's claim queries until store/queries.py (engineer D) exists;
they move there verbatim."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlmodel import Session, select

from ..store.digest_models import Digest


def claim_due_digest(session: Session, now: datetime, *, exclude_ids: Iterable[int] = ()) -> Digest | None:
    """The most overdue active digest whose next run is at or before ``now``, row-locked for this
    transaction. ``FOR UPDATE SKIP LOCKED`` makes concurrent workers on PostgreSQL take different
    digests instead of queueing behind each other; the lock is held while the occurrence is composed
    and its campaign created, so no other worker can run it (SQLite ignores the clause: one worker)."""
    q = (
        select(Digest)
        .where(Digest.paused == sa.false(), Digest.next_run_at.is_not(None), Digest.next_run_at <= now)
        .order_by(Digest.next_run_at, Digest.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    ids = list(exclude_ids)
    if ids:
        q = q.where(Digest.id.not_in(ids))
    return session.exec(q).first()
