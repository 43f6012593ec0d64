"""Campaign reads, campaign moves (each through the campaign lifecycle) and the SQLite campaign lock (one sender per campaign)."""

from __future__ import annotations

from datetime import datetime
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy import or_, select
from sqlalchemy.engine import Connection

from ..lifecycle import CampaignStatus, PauseKind, campaign_transition
from ..models import utcnow
from .common import campaigns


# --- campaign reads -----------------------------------------------------------------------------
def campaign_status(conn: Connection, campaign_id: int) -> str | None:
    """The campaign's status now (another process may have paused or cancelled it)."""
    return conn.execute(select(campaigns.c.status).where(campaigns.c.id == campaign_id)).scalar()


def campaign_state(conn: Connection, campaign_id: int, *, lock: bool = False) -> sa.Row:
    """The campaign's status, status reason, pause kind and ledger creation time, read together.

    ``lock``: ``SELECT … FOR UPDATE`` (PostgreSQL), held to the end of the caller's transaction,
    so of two workers starting on a campaign one creates its ledger and the other waits and then
    sees it made (instead of running the same ``INSERT … SELECT`` over the whole list again)."""
    stmt = select(campaigns.c.status, campaigns.c.status_reason, campaigns.c.pause_kind,
                  campaigns.c.ledger_created_at).where(campaigns.c.id == campaign_id)
    return conn.execute(stmt.with_for_update() if lock else stmt).one()


def campaign_started_at(conn: Connection, campaign_id: int) -> datetime | None:
    """When the campaign first went ``running`` (None: never)."""
    return conn.execute(select(campaigns.c.started_at).where(campaigns.c.id == campaign_id)).scalar()


def due_campaign_ids(conn: Connection, now: datetime) -> list[int]:
    """Ids of scheduled campaigns whose time has come and of running ones, in id order (for workers)."""
    return [r[0] for r in conn.execute(select(campaigns.c.id).where(
        ((campaigns.c.status == CampaignStatus.SCHEDULED) & (campaigns.c.scheduled_at <= now))
        | (campaigns.c.status == CampaignStatus.RUNNING)).order_by(campaigns.c.id))]


def running_campaign_ids(conn: Connection, *, besides: int | None = None) -> list[int]:
    """Ids of running campaigns (other than ``besides``), in id order."""
    stmt = select(campaigns.c.id).where(campaigns.c.status == CampaignStatus.RUNNING)
    if besides is not None:
        stmt = stmt.where(campaigns.c.id != besides)
    return list(conn.execute(stmt.order_by(campaigns.c.id)).scalars())


def first_scheduled_between(conn: Connection, since: datetime, now: datetime) -> int | None:
    """The id of the scheduled campaign whose time came first in (``since``, ``now``], or None."""
    return conn.execute(select(campaigns.c.id).where(
        campaigns.c.status == CampaignStatus.SCHEDULED, campaigns.c.scheduled_at > since,
        campaigns.c.scheduled_at <= now).order_by(campaigns.c.scheduled_at).limit(1)).scalar()


def campaigns_paused_by(conn: Connection, kind: PauseKind) -> list[int]:
    """Ids of campaigns paused by ``kind`` (e.g. the warm-up quota), in id order."""
    return [r[0] for r in conn.execute(select(campaigns.c.id).where(
        campaigns.c.status == CampaignStatus.PAUSED, campaigns.c.pause_kind == kind).order_by(campaigns.c.id))]


# --- campaign moves -----------------------------------------------------------------------------
def set_campaign_status(conn: Connection, campaign_id: int, allowed_from: Iterable[str], to: str,
                        now: datetime | None = None, reason: str | None = None,
                        pause_kind: PauseKind | None = None, **times) -> bool:
    """Compare-and-set the campaign status (checked by the lifecycle by the caller, ``transition``).

    Shape: ``UPDATE campaigns SET status=:to, pause_kind=:kind WHERE id=:c AND status IN
    (:allowed_from)``. ``pause_kind`` is kept only while paused (a pause without one is a
    user's). False when another process changed the status first."""
    now = now or utcnow()
    kind = (pause_kind or PauseKind.USER) if to == CampaignStatus.PAUSED else None
    values = {"status": to, "updated_at": now, "pause_kind": kind, **times}
    if reason is not None:
        values["status_reason"] = reason
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.status.in_(list(allowed_from))).values(**values)
    return (conn.execute(stmt).rowcount or 0) == 1


def resume_paused_by(conn: Connection, campaign_id: int, kind: PauseKind, now: datetime | None = None) -> bool:
    """``paused`` → ``running``, only while the campaign is still paused by ``kind``.

    Shape: ``UPDATE campaigns SET status='running', status_reason='', pause_kind=NULL WHERE id=:c
    AND status='paused' AND pause_kind=:kind`` (a user who paused it meanwhile changed the kind)."""
    campaign_transition(CampaignStatus.PAUSED, CampaignStatus.RUNNING, campaign_id)
    now = now or utcnow()
    stmt = campaigns.update().where(
        campaigns.c.id == campaign_id, campaigns.c.status == CampaignStatus.PAUSED,
        campaigns.c.pause_kind == kind).values(
        status=CampaignStatus.RUNNING, status_reason="", pause_kind=None, updated_at=now, finished_at=None)
    return (conn.execute(stmt).rowcount or 0) == 1


def set_scheduled_at(conn: Connection, campaign_id: int, when: datetime, now: datetime | None = None) -> None:
    """Record when a scheduled campaign is to start: ``UPDATE campaigns SET scheduled_at=:when``."""
    conn.execute(campaigns.update().where(campaigns.c.id == campaign_id)
                 .values(scheduled_at=when, updated_at=now or utcnow()))


def set_campaign_meta(conn: Connection, campaign_id: int, meta: dict) -> None:
    """Replace the campaign's meta JSON (e.g. the mark that a person overrode the bounce guard)."""
    conn.execute(campaigns.update().where(campaigns.c.id == campaign_id).values(meta=meta))


def mark_ledger_created(conn: Connection, campaign_id: int, now: datetime | None = None) -> None:
    """Record that the ledger exists (later subscribers are not added): set ``ledger_created_at`` once."""
    conn.execute(campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.ledger_created_at.is_(None))
                 .values(ledger_created_at=now or utcnow()))


# --- the SQLite campaign lock (one sender per campaign) ----------------------------------------
def acquire_campaign_lock(conn: Connection, campaign_id: int, owner: str, stale_before: datetime,
                          now: datetime | None = None, *, take_from: str | None = None) -> bool:
    """Make ``owner`` the campaign's single sender (SQLite) unless a live sender holds it.

    Shape: ``UPDATE campaigns SET lock_owner=:o, lock_heartbeat_at=:now WHERE id=:c AND
    (lock_owner IS NULL OR lock_owner=:o OR lock_heartbeat_at < :stale OR lock_owner=:dead)``;
    one row updated means the lock is ours. ``take_from`` names an owner known to be dead."""
    now = now or utcnow()
    cond = [campaigns.c.lock_owner.is_(None), campaigns.c.lock_owner == owner, campaigns.c.lock_heartbeat_at < stale_before]
    if take_from:
        cond.append(campaigns.c.lock_owner == take_from)
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, or_(*cond)).values(lock_owner=owner, lock_heartbeat_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def campaign_lock_holder(conn: Connection, campaign_id: int) -> tuple[str | None, datetime | None]:
    """Who holds the campaign lock and when they last said they were alive."""
    owner, beat = conn.execute(select(campaigns.c.lock_owner, campaigns.c.lock_heartbeat_at)
                               .where(campaigns.c.id == campaign_id)).one()
    return owner, beat


def heartbeat_campaign_lock(conn: Connection, campaign_id: int, owner: str, now: datetime | None = None) -> bool:
    """Refresh the lock's heartbeat; False when someone else took it (we must stop)."""
    now = now or utcnow()
    stmt = campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.lock_owner == owner).values(lock_heartbeat_at=now)
    return (conn.execute(stmt).rowcount or 0) == 1


def release_campaign_lock(conn: Connection, campaign_id: int, owner: str) -> None:
    """Drop the lock if we hold it."""
    conn.execute(
        campaigns.update().where(campaigns.c.id == campaign_id, campaigns.c.lock_owner == owner)
        .values(lock_owner=None, lock_heartbeat_at=None)
    )
