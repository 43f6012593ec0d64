"""Where a campaign stands and what will move it: whether a worker is running, why a worker could
not send it (a recorded stall), what ``resume`` would do next, and — while it sends — its rate and
time to go. The admin page, ``campaigns show`` and the API say these sentences; none makes its own.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy.engine import Engine

from ..store import queries as q
from ..store import workers as w
from ..store.db import transaction
from ..store.lifecycle import CampaignStatus, PauseKind, copies_left
from ..store.models import utcnow
from .progress import eta_seconds, send_rate

RATE_WINDOW_S = 60.0  # the live rate is over the copies sent in the last minute
START_WORKER = "start one with `newsletter worker`"


@dataclass
class Standing:
    """What the admin, ``campaigns show`` and the API say about a campaign beyond its status."""

    workers_running: int
    needs_worker: bool  # it can only move with a worker, and none is running
    note: str  # one sentence about what happens next ("" for a draft or a finished campaign)
    stall: str | None  # why workers could not send it (from the database), else None
    stall_since: datetime | None
    resume: str | None  # what "Resume" would do, when it can be resumed
    sending: int  # copies handed to a server by a live sender right now
    ambiguous: int  # copies whose sender died while handing them over
    rate: float | None  # messages per second over the last minute, while running
    eta_seconds: float | None
    duration_seconds: float | None  # first copy queued → finished, for a finished campaign
    sent_from: datetime | None = None  # when its sender queued the first copy (the ledger was made)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["stall_since"] = self.stall_since.isoformat() if self.stall_since else None
        d["sent_from"] = self.sent_from.isoformat() if self.sent_from else None
        return d


def local_time(when: datetime, zone_name: str) -> str:
    """``when`` as the publisher reads it: ``2026-12-03 20:29 Europe/Paris``."""
    from ..schedule.cron import get_zone

    return f"{when.astimezone(get_zone(zone_name)):%Y-%m-%d %H:%M} {zone_name}"


def duration_text(seconds: float) -> str:
    """``2 h 05 min``, ``3 min 12 s`` or ``8 s``."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def campaign_standing(engine: Engine, info, zone_name: str, now: datetime | None = None) -> Standing:
    """The standing of ``info`` (a ``campaigns.CampaignInfo``) at ``now``."""
    from .liveness import in_flight

    now = now or utcnow()
    status = CampaignStatus(info.status)
    live = len(w.live_workers(engine, now))
    stall = w.campaign_stall(engine, info.id) if status in (CampaignStatus.RUNNING, CampaignStatus.SCHEDULED, CampaignStatus.PAUSED) else None
    sending, ambiguous = in_flight(engine, info.id)
    with transaction(engine) as conn:
        row = q.campaign_state(conn, info.id)
        kind = row.pause_kind if row is not None else None
        ledger_at = row.ledger_created_at if row is not None else None
        recent = q.campaign_sent_since(conn, info.id, now - timedelta(seconds=RATE_WINDOW_S)) if status is CampaignStatus.RUNNING else 0
    left = copies_left(info.counts) if info.counts else (info.audience or 0)  # no ledger yet: everyone is left
    rate = eta = duration = None
    if status is CampaignStatus.RUNNING and info.started_at is not None:
        window = min(RATE_WINDOW_S, max((now - info.started_at).total_seconds(), 1.0))
        rate = send_rate(recent, window)
        eta = eta_seconds(left, 0, rate)
    if status is CampaignStatus.FINISHED and info.finished_at:
        # From the sender's own timestamps: a worker run with --now starts campaigns on its clock.
        begun = ledger_at or info.started_at
        if begun is not None and info.finished_at >= begun:
            duration = (info.finished_at - begun).total_seconds()
    moving = bool(sending or (rate or 0) > 0)
    no_worker = f"no worker is running, {START_WORKER}"
    needs_worker = False
    note, resume = "", None
    if status is CampaignStatus.SCHEDULED and info.scheduled_at is not None:
        due = info.scheduled_at <= now
        when = local_time(info.scheduled_at, zone_name)
        needs_worker = not live
        if live:
            note = f"Scheduled for {when}: " + ("a worker is starting it." if due else "the running worker starts it then.")
        else:
            note = (f"Was due at {when} — " if due else f"Scheduled for {when} — ") + no_worker + "."
    elif status is CampaignStatus.RUNNING:
        needs_worker = not live and not moving and left > 0
        if stall:
            note = f"Not sending: {stall.reason}"
        elif needs_worker:
            note = f"Sending — but {no_worker} (or run `newsletter send {info.id}`): {left} copies wait."
        elif left or sending:
            note = f"Sending: {left} copies wait" + (f", {sending} being handed to the mail server." if sending else ".")
        else:
            note = "Sending its last copies."
    elif status is CampaignStatus.PAUSED:
        pk = PauseKind(kind) if kind else PauseKind.USER
        carry = ("a running worker picks it up within seconds" if live else f"nothing goes out until a worker runs: {START_WORKER}")
        if info.started_at is None and info.scheduled_at is not None:
            resume = f"Resume schedules it again for {local_time(info.scheduled_at, zone_name)}" + (
                "." if live else f"; {no_worker}.")
        elif pk is PauseKind.BOUNCE_GUARD:
            resume = (f"Resume sends the {left} copies left and turns the bounce guard off for this campaign; {carry}.")
        else:
            resume = f"Resume sends the {left} copies left; {carry}."
        if stall and resume:
            resume += f" The last attempt failed ({stall.reason}): resuming alone does not change that."
        if pk is PauseKind.WARMUP:
            note = "Paused: today's warm-up allowance is used up; a worker resumes it on the next UTC day" + (
                "." if live else f" — {no_worker}.")
            needs_worker = not live
        elif pk is PauseKind.BOUNCE_GUARD:
            note = f"Paused by the bounce guard ({info.status_reason}): look at the bounces before resuming."
        elif pk is PauseKind.CONNECTIONS:
            note = f"Paused by the sender ({info.status_reason}): check the mail server, then resume."
        else:
            note = "Paused" + (f" ({info.status_reason})." if info.status_reason else ".")
    elif status is CampaignStatus.FINISHED and info.finished_at is not None:
        note = f"Sent {local_time(info.finished_at, zone_name)}" + (f" in {duration_text(duration)}." if duration is not None else ".")
    elif status is CampaignStatus.CANCELLED:
        note = "Cancelled" + (f" ({info.status_reason})." if info.status_reason else ".")
    return Standing(workers_running=live, needs_worker=needs_worker, note=note, stall=stall.reason if stall else None,
                    stall_since=stall.since if stall else None, resume=resume, sending=sending, ambiguous=ambiguous,
                    rate=round(rate, 2) if rate is not None else None, eta_seconds=round(eta) if eta is not None else None,
                    duration_seconds=duration, sent_from=ledger_at)
