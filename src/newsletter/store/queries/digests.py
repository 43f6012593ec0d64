"""The scheduler's claim of a due recurring digest."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..db import table_of



# --- schedule: recurring digests ------------------------------------------------------------------
def claim_due_digest(conn: Connection, now: datetime, exclude_ids: Iterable[int] = ()) -> int | None:
    """The id of the most overdue active digest whose next run is at or before ``now``, row-locked
    until the caller's transaction ends. ``FOR UPDATE SKIP LOCKED`` makes concurrent workers on
    PostgreSQL take different digests instead of queueing behind one another; the lock is held
    while the occurrence is composed and its campaign recorded, so no other worker runs the same
    digest meanwhile (SQLite ignores the clause: there, one worker runs at a time).
    ``exclude_ids`` are digests this pass already handled."""
    from ..digest_models import RecurringDigest

    digests = table_of(RecurringDigest)
    stmt = (
        select(digests.c.id)
        .where(digests.c.paused == sa.false(), digests.c.next_run_at.is_not(None), digests.c.next_run_at <= now)
        .order_by(digests.c.next_run_at, digests.c.id)
        .limit(1)
        .with_for_update(skip_locked=True)
    )
    ids = list(exclude_ids)
    if ids:
        stmt = stmt.where(digests.c.id.not_in(ids))
    return conn.execute(stmt).scalar()
