"""Worker heartbeats and campaign stalls: the statements behind "is a worker running?" and
"why is this campaign not moving?" (tables in ``store.worker_models``).

A worker is alive while its row was refreshed within ``STALE_BEATS`` of its promised interval
and it has not said it stopped; nothing here needs the worker's process to be on this machine.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine

from .db import table_of, transaction
from .models import utcnow
from .worker_models import CampaignStall, WorkerHeartbeat

heartbeats = table_of(WorkerHeartbeat)
stalls = table_of(CampaignStall)

STALE_BEATS = 3  # a worker that missed this many beats is taken for dead
MIN_STALE_S = 15.0  # ... and never sooner than this (a busy database may delay one beat)
FORGET_AFTER = timedelta(days=7)  # stopped or dead workers' rows are dropped after this


@dataclass(frozen=True)
class WorkerSeen:
    """A worker as the admin shows it."""

    worker_id: str
    host: str
    pid: int
    started_at: datetime
    beat_at: datetime
    alive: bool


def beat(engine: Engine, worker_id: str, interval: float, now: datetime | None = None) -> None:
    """Write this worker's heartbeat (insert on the first beat)."""
    now = now or utcnow()
    with transaction(engine) as conn:
        done = conn.execute(update(heartbeats).where(heartbeats.c.worker_id == worker_id)
                            .values(beat_at=now, interval=interval, stopped_at=None)).rowcount
        if not done:
            conn.execute(delete(heartbeats).where(heartbeats.c.beat_at < now - FORGET_AFTER))
            conn.execute(heartbeats.insert().values(worker_id=worker_id, host=socket.gethostname()[:255], pid=os.getpid(),
                                                    interval=interval, started_at=now, beat_at=now))


def stopped(engine: Engine, worker_id: str, now: datetime | None = None) -> None:
    """The worker stopped cleanly: it no longer counts as running."""
    with transaction(engine) as conn:
        conn.execute(update(heartbeats).where(heartbeats.c.worker_id == worker_id).values(stopped_at=now or utcnow()))


def _alive(row, now: datetime) -> bool:
    if row.stopped_at is not None:
        return False
    stale = max(STALE_BEATS * float(row.interval), MIN_STALE_S)
    return now - row.beat_at <= timedelta(seconds=stale)


def workers(engine: Engine, now: datetime | None = None) -> list[WorkerSeen]:
    """Workers seen lately (alive ones first, newest beat first)."""
    now = now or utcnow()
    with transaction(engine) as conn:
        rows = conn.execute(select(heartbeats).where(heartbeats.c.beat_at >= now - FORGET_AFTER)
                            .order_by(heartbeats.c.beat_at.desc())).all()
    seen = [WorkerSeen(r.worker_id, r.host, r.pid, r.started_at, r.beat_at, _alive(r, now)) for r in rows]
    return sorted(seen, key=lambda w: not w.alive)


def live_workers(engine: Engine, now: datetime | None = None) -> list[WorkerSeen]:
    """Workers alive now."""
    return [w for w in workers(engine, now) if w.alive]


# --- stalls -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stall:
    """Why workers could not send a campaign, since when, and when they last tried."""

    reason: str
    worker_id: str
    since: datetime
    seen_at: datetime


def record_stall(engine: Engine, campaign_id: int, reason: str, worker_id: str, now: datetime | None = None) -> None:
    """A worker could not send ``campaign_id``: keep its one-line reason (first time and latest)."""
    now = now or utcnow()
    reason = reason[:2000]
    with transaction(engine) as conn:
        row = conn.execute(select(stalls.c.reason).where(stalls.c.campaign_id == campaign_id)).first()
        if row is None:
            conn.execute(stalls.insert().values(campaign_id=campaign_id, reason=reason, worker_id=worker_id, since=now, seen_at=now))
        elif row.reason == reason:
            conn.execute(update(stalls).where(stalls.c.campaign_id == campaign_id).values(seen_at=now, worker_id=worker_id))
        else:
            conn.execute(update(stalls).where(stalls.c.campaign_id == campaign_id)
                         .values(reason=reason, worker_id=worker_id, since=now, seen_at=now))


def clear_stall(engine: Engine, campaign_id: int) -> None:
    """A worker sent the campaign again: its stall is over."""
    with transaction(engine) as conn:
        conn.execute(delete(stalls).where(stalls.c.campaign_id == campaign_id))


def campaign_stall(engine: Engine, campaign_id: int) -> Stall | None:
    """The campaign's stall, if a worker recorded one."""
    with transaction(engine) as conn:
        row = conn.execute(select(stalls).where(stalls.c.campaign_id == campaign_id)).first()
    return Stall(row.reason, row.worker_id, row.since, row.seen_at) if row else None
