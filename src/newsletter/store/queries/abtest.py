"""A/B tests on the ledger: held rows, releasing them as a variant, counts per variant."""

from __future__ import annotations

from datetime import datetime
from typing import Sequence

from sqlalchemy import func, select
from sqlalchemy.engine import Connection

from ..models import utcnow
from .common import D, deliveries, _moving


# --- the ledger: A/B tests (held rows and their variants) ---------------------------------------
def held_rows(conn: Connection, campaign_id: int, after_id: int, limit: int) -> list[tuple[int, int]]:
    """[(id, subscriber_id)] of a campaign's ``held`` rows after ``after_id``, in id order (a chunk)."""
    d = deliveries.c
    return [(i, s) for i, s in conn.execute(select(d.id, d.subscriber_id).where(
        d.campaign_id == campaign_id, d.state == D.HELD, d.id > after_id).order_by(d.id).limit(limit))]


def release_held_as(conn: Connection, variant: int, ids: Sequence[int], now: datetime | None = None) -> int:
    """``held`` → ``pending`` with ``variant``, for rows of the test share.

    Shape: ``UPDATE deliveries SET state='pending', variant=:v, in_test=true WHERE id IN (:ids)
    AND state='held'`` (one statement per variant and chunk). Run in the transaction that made
    the ledger, so a crash leaves either every row held or the test share released."""
    if not ids:
        return 0
    stmt = (deliveries.update().where(deliveries.c.id.in_(list(ids)), _moving([D.HELD], D.PENDING))
            .values(state=D.PENDING, variant=variant, in_test=True, updated_at=now or utcnow()))
    return conn.execute(stmt).rowcount or 0


def release_held(conn: Connection, campaign_id: int, variant: int, now: datetime | None = None) -> int:
    """Every ``held`` row of the campaign → ``pending`` with the winning ``variant``.

    Shape: ``UPDATE deliveries SET state='pending', variant=:w WHERE campaign_id=:c AND
    state='held'``. Run in the transaction that records the decision (``store.abtests.decide``),
    which only one worker can make: the rest of the audience is released once."""
    stmt = (deliveries.update().where(deliveries.c.campaign_id == campaign_id, _moving([D.HELD], D.PENDING))
            .values(state=D.PENDING, variant=variant, in_test=False, updated_at=now or utcnow()))
    return conn.execute(stmt).rowcount or 0


def counts_by_variant(conn: Connection, campaign_id: int) -> list[tuple[int | None, bool | None, str, int]]:
    """``[(variant, in_test, state, n)]`` of the campaign's ledger (variant None: held, waiting)."""
    d = deliveries.c
    return [(v, None if t is None else bool(t), st, int(n)) for v, t, st, n in conn.execute(
        select(d.variant, d.in_test, d.state, func.count()).where(d.campaign_id == campaign_id)
        .group_by(d.variant, d.in_test, d.state))]
