"""Where a local-time campaign stands, bucket by bucket (``campaigns show``, the API).

The plan — each bucket's instant, UTC offsets and zones — was recorded in the campaign's meta
when sending started (schedule/localtime.py); the counts come from the ledger, grouped by each
row's ``due_at``, so they are true whoever sends and however often the campaign was paused.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy.engine import Connection

from ..store import queries as q
from ..store.lifecycle import DONE_STATES, LEFT_STATES, DeliveryState
from ..store.models import utcnow


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)


def bucket_progress(conn: Connection, campaign_id: int, meta: dict, now: datetime | None = None) -> dict:
    """``{"time", "date", "window_minutes", "past", "planned": bool, "done": n, "to_come": n,
    "skipped_past": n, "buckets": [{"at", "offsets", "zones", "kind", "copies", "sent", "failed",
    "skipped", "left", "state"}]}``; a bucket's state is ``done`` (no copy left), ``due`` (its time
    came: sending, or waiting for a worker) or ``to come``. Before sending starts there is no plan
    yet: ``planned`` is False and the list is empty."""
    now = now or utcnow()
    lt = dict(meta.get("local_time") or {})
    out: dict[str, Any] = {k: lt.get(k) for k in ("time", "date", "window_minutes", "past")}
    labels = {datetime.fromisoformat(b["at"]): b for b in lt.get("buckets", [])}
    out.update(planned="planned_at" in lt, planned_at=lt.get("planned_at"), done=0, to_come=0,
               skipped_past=int(lt.get("skipped", 0)), skipped_zones=lt.get("skipped_zones", []), buckets=[])
    if "planned_at" not in lt:
        return out
    rows: dict[datetime, dict[str, int]] = {}
    buckets: list[dict] = out["buckets"]
    tally = {"done": 0, "to_come": 0}
    for due_at, state, n in q.bucket_counts(conn, campaign_id):
        if due_at is None:  # skipped under --past skip: counted above
            continue
        rows.setdefault(_aware(due_at), {})[state] = int(n)
    for at in sorted(set(rows) | set(labels)):
        counts = rows.get(at, {})
        label = labels.get(at, {})
        left = sum(counts.get(s, 0) for s in LEFT_STATES) + counts.get(DeliveryState.SENDING, 0)
        state = "done" if not left else "due" if at <= now else "to come"
        tally["done" if state == "done" else "to_come"] += 1
        buckets.append({
            "at": at.isoformat(), "offsets": label.get("offsets", []), "zones": label.get("zones", []),
            "kind": label.get("kind", ""), "copies": sum(counts.values()), "sent": counts.get(DeliveryState.SENT, 0),
            "failed": counts.get(DeliveryState.FAILED, 0), "skipped": counts.get(DeliveryState.SKIPPED, 0),
            "left": left, "finished": sum(counts.get(s, 0) for s in DONE_STATES), "state": state})
    out.update(tally)
    return out
