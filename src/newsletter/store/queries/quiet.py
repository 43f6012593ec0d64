"""The statements of quiet hours (schedule/quiet.py): read the planned rows of a local-time ledger
whose list has quiet hours, and move a set of them to a later due time, in the planner's
transaction (before any is claimed)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy import select
from sqlalchemy.engine import Connection

from ..lifecycle import DeliveryState
from .common import deliveries, lists, subscribers

_CHUNK = 1000


def quiet_list_rows(conn: Connection, campaign_id: int) -> list[sa.Row]:
    """(row id, due_at, reader's zone, list's zone, list's quiet hours) of the campaign's pending,
    planned rows whose list has quiet hours.

    Shape: ``SELECT d.id, d.due_at, s.timezone, l.timezone, l.quiet_hours FROM deliveries d JOIN
    subscribers s JOIN lists l WHERE d.campaign_id=:c AND d.state='pending' AND d.due_at IS NOT NULL
    AND l.quiet_hours IS NOT NULL``."""
    q = (select(deliveries.c.id, deliveries.c.due_at, subscribers.c.timezone, lists.c.timezone, lists.c.quiet_hours)
         .select_from(deliveries.join(subscribers, subscribers.c.id == deliveries.c.subscriber_id)
                      .join(lists, lists.c.id == deliveries.c.list_id))
         .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state == DeliveryState.PENDING.value,
                deliveries.c.due_at.is_not(None), lists.c.quiet_hours.is_not(None)))
    return list(conn.execute(q))


def move_due(conn: Connection, campaign_id: int, ids: list[int], due: datetime) -> int:
    """Give the rows ``ids`` (still pending) the due time ``due``: the end of their quiet hours.

    Shape: ``UPDATE deliveries SET due_at=:due WHERE campaign_id=:c AND state='pending' AND id IN
    (:ids)``, a thousand ids at a time. Returns how many moved."""
    n = 0
    for i in range(0, len(ids), _CHUNK):
        stmt = (deliveries.update()
                .where(deliveries.c.campaign_id == campaign_id, deliveries.c.state == DeliveryState.PENDING.value,
                       deliveries.c.id.in_(ids[i:i + _CHUNK]))
                .values(due_at=due))
        n += conn.execute(stmt).rowcount or 0
    return n
