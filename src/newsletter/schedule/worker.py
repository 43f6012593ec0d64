"""``newsletter worker``: run what is due — digest occurrences and scheduled campaigns — and send
running campaigns through the dispatcher, pass after pass.

Every guarantee comes from the database, not from the worker: a digest occurrence exists once
(unique key), a campaign goes scheduled → running by compare-and-set, and copies are claimed
from the ledger (``FOR UPDATE SKIP LOCKED`` on PostgreSQL). So any number of workers can run
against PostgreSQL, and a worker killed at any moment is simply restarted. On SQLite one worker
runs at a time (an OS lock beside the database file, see ``schedule.lock``).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Callable, Sequence

from sqlalchemy.engine import Engine

if TYPE_CHECKING:
    from ..dispatch.sender import SendOptions, SendSummary

from ..config import Config
from ..errors import InvalidInput, NewsletterError, StateError
from . import occurrences
from .lock import WorkerLock

UTC = timezone.utc
HEARTBEAT_MAX_S = 5.0  # a worker beats at least this often (more often with a shorter --poll)
log = logging.getLogger("newsletter.worker")


@dataclass
class WorkerReport:
    """What a worker did before it stopped (``--once``: in its single pass)."""

    passes: int = 0
    digest_runs: list = field(default_factory=list)  # digests.RunResult
    sends: list[SendSummary] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    stopped_by: str = ""


def _log_line(line: str) -> None:
    """The default event sink: warnings (a dropped occurrence...) at warning level."""
    if line.startswith("warning: "):
        log.warning("%s", line[len("warning: "):])
    else:
        log.info("%s", line)


def make_clock(now: datetime | None) -> Callable[[], datetime]:
    """The worker's clock: real UTC time, or — with ``--now`` — that instant, moving on from it."""
    if now is None:
        return lambda: datetime.now(UTC)
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    base, t0 = now.astimezone(UTC), time.monotonic()
    return lambda: base + timedelta(seconds=time.monotonic() - t0)


def start_due_campaigns(engine: Engine, now: datetime, on_event: Callable[[str], None],
                        config: Config | None = None) -> list[int]:
    """Move scheduled campaigns whose time has come to ``running`` (compare-and-set: when two workers
    race, one moves it and both then share the sending); the ids of every running campaign. A
    local-time campaign's ledger and buckets are planned at ``now`` in the same transaction
    (schedule/localtime.py; needs ``config``)."""
    from ..dispatch.campaigns import due_campaigns, transition
    from ..store import queries as q
    from ..store.db import transaction
    from ..store.lifecycle import CampaignStatus

    ids = due_campaigns(engine, now)
    running: list[int] = []
    for cid in ids:
        with transaction(engine) as conn:
            status = q.campaign_status(conn, cid)
            if status == CampaignStatus.SCHEDULED:
                try:
                    transition(conn, cid, CampaignStatus.RUNNING, allow_from=(CampaignStatus.SCHEDULED,), now=now)
                    plan = _plan_local_time(conn, cid, config, now)
                    on_event(f"campaign {cid}: scheduled time reached, sending{plan}")
                except StateError:
                    status = q.campaign_status(conn, cid)  # another worker started it: share it
                else:
                    status = CampaignStatus.RUNNING
        if status == CampaignStatus.RUNNING:
            running.append(cid)
    return running


def _plan_local_time(conn, cid: int, config: Config | None, now: datetime) -> str:
    """Plan a local-time campaign's buckets as it starts (nothing for any other); words for the log."""
    from sqlalchemy import select

    from ..store import queries as q
    from .localtime import local_time_of, plan_ledger

    meta = conn.execute(select(q.campaigns.c.meta).where(q.campaigns.c.id == cid)).scalar()
    if local_time_of(meta) is None or config is None:
        return ""
    plan = plan_ledger(conn, cid, config, now, meta)
    buckets = plan["buckets"]
    first = f", first at {buckets[0]['at']}" if buckets else ""
    skipped = f", {plan['skipped']} skipped (local time passed)" if plan["skipped"] else ""
    return f" at {plan['time']} local time: {len(buckets)} bucket(s){first}{skipped}"


def waiting_on_retries_only(engine: Engine, clock: Callable[[], datetime] | None = None) -> Callable[[int], bool]:
    """A check: True when a running campaign's only unfinished copies wait for a later time —
    deferred ones whose next attempt is still to come, copies an A/B test holds for its winner,
    or, in a local-time campaign, pending ones whose bucket is not due by ``clock()`` — then a
    pass has nothing to send and need not connect to SMTP."""
    from ..store import queries as q
    from ..store.db import transaction
    from ..store.lifecycle import DeliveryState, copies_left
    from ..store.models import utcnow

    clock = clock or utcnow

    def check(cid: int) -> bool:
        with transaction(engine) as conn:
            counts = q.counts_by_state(conn, cid)
            deferred, held = counts.get(DeliveryState.DEFERRED, 0), counts.get(DeliveryState.HELD, 0)
            left = copies_left(counts)
            if not left or counts.get(DeliveryState.SENDING):
                return False
            later = 0
            if counts.get(DeliveryState.PENDING):
                now = clock()
                if q.next_due_at(conn, cid, now) is not None:
                    later = counts[DeliveryState.PENDING] - q.pending_due_count(conn, cid, now)
            if left != deferred + held + later:
                return False
            retry_at = q.next_retry_at(conn, cid) if deferred else None
        return not deferred or (retry_at is not None and retry_at > utcnow())

    return check


def came_due(engine: Engine, since: datetime, now: datetime) -> str | None:
    """What became due in (``since``, ``now``]: a digest occurrence or a scheduled campaign (the
    ones due at ``since`` were handled by the pass that started then); None if nothing did."""
    from sqlalchemy import false, select

    from ..store import queries as q
    from ..store.db import transaction
    from ..store.digest_models import RecurringDigest

    digests = q.table_of(RecurringDigest)
    with transaction(engine) as conn:
        name = conn.execute(select(digests.c.name).where(
            digests.c.paused == false(), digests.c.next_run_at.is_not(None),
            digests.c.next_run_at > since, digests.c.next_run_at <= now).order_by(digests.c.next_run_at).limit(1)).scalar()
        if name is not None:
            return f"digest {name!r} came due"
        cid = q.first_scheduled_between(conn, since, now)
    if cid is not None:
        return f"campaign {cid} came due"
    from ..dispatch.abtest import decision_came_due

    return decision_came_due(engine, since, now)


def others_waiting(engine: Engine, cid: int, idle: Callable[[int], bool]) -> int | None:
    """Another running campaign with copies to send now (not only deferred ones), or None."""
    from ..store import queries as q
    from ..store.db import transaction

    with transaction(engine) as conn:
        ids = q.running_campaign_ids(conn, besides=cid)
    return next((other for other in ids if not idle(other)), None)


class ScheduleWatch:
    """While a campaign sends, look at the schedule every ``poll`` seconds (a thread of its own);
    when something comes due — or, after ``campaign_slice`` seconds, another running campaign is
    waiting for its turn — set ``turn``, the send's stop event: in-flight messages finish, claimed
    ones go back to pending (nothing lost or doubled), and the worker runs a new pass at once, in
    which this campaign carries on. A real stop request (``stop_event``) sets ``turn`` too.
    ``on_turn(cid, reason)``, if given, is called (in the watch's thread) right after the watch
    sets ``turn`` for the schedule: a hook for tests to wait on instead of timing the send."""

    def __init__(self, engine: Engine, cid: int, *, since: datetime, clock: Callable[[], datetime], poll: float,
                 campaign_slice: float, stop_event: threading.Event, idle: Callable[[int], bool],
                 on_turn: Callable[[int, str], None] | None = None):
        self.engine, self.cid, self.since, self.clock = engine, cid, since, clock
        self.poll, self.campaign_slice, self.stop_event, self.idle = poll, campaign_slice, stop_event, idle
        self.on_turn = on_turn
        self.turn = threading.Event()
        self.reason: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"schedule-watch-{cid}", daemon=True)

    def __enter__(self) -> "ScheduleWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join(5)

    @property
    def yielded(self) -> bool:
        return self.reason is not None

    def _run(self) -> None:
        started = last = time.monotonic()
        step = min(self.poll, 0.1)
        while not self._done.is_set():
            if self.stop_event.wait(step):
                self.turn.set()
                return
            if self._done.is_set() or time.monotonic() - last < self.poll:
                continue
            last = time.monotonic()
            try:
                reason = came_due(self.engine, self.since, self.clock())
                if reason is None and time.monotonic() - started >= self.campaign_slice:
                    other = others_waiting(self.engine, self.cid, self.idle)
                    reason = f"campaign {other}'s turn" if other is not None else None
            except Exception:  # e.g. the database is busy: the send goes on, next look in `poll` s
                log.debug("campaign %s: schedule check failed", self.cid, exc_info=True)
                continue
            if reason is not None:
                self.reason = reason
                self.turn.set()
                if self.on_turn is not None:
                    self.on_turn(self.cid, reason)
                return


def run_pass(engine: Engine, config: Config, now: datetime, *, catch_up: str | None, send_options: SendOptions,
             stop_event: threading.Event, on_event: Callable[[str], None], report: WorkerReport,
             retry_delays: Sequence[float], seen_errors: dict, clock: Callable[[], datetime] | None = None,
             poll: float = 5.0, campaign_slice: float = 60.0, served: dict | None = None,
             on_turn: Callable[[int, str], None] | None = None) -> bool:
    """One pass: due digest occurrences, then due and running campaigns — the one this worker served
    longest ago first. A send is interrupted (cleanly) when the schedule needs the worker: then the
    pass ends early and returns True, and the caller starts the next pass at once."""
    from dataclasses import replace

    from ..dispatch.sender import send_campaign
    from ..store.lifecycle import CampaignStatus

    clock = clock or (lambda: datetime.now(UTC))
    served = {} if served is None else served
    try:
        report.digest_runs.extend(occurrences.run_due_digests(engine, config, now=now, catch_up=catch_up,
                                                     retry_delays=retry_delays, on_event=on_event,
                                                     stop_event=stop_event))
    except NewsletterError as e:
        report.errors.append(str(e))
        on_event(f"digests: {e}")
    if stop_event.is_set():
        return False
    send_welcomes(engine, config, now, send_options, report, on_event)
    idle = waiting_on_retries_only(engine, clock)
    from ..dispatch.warmup import resume_warmed_up  # a new UTC day: warm-up-paused campaigns carry on
    try:
        resume_warmed_up(engine, config, now, on_event)
    except NewsletterError as e:  # e.g. the database is busy: the next pass tries again
        report.errors.append(str(e))
        on_event(f"warm-up: {e}")
    running = start_due_campaigns(engine, now, on_event, config)
    from ..dispatch.abtest import decide_due  # A/B tests whose wait is over: the winner goes to the rest
    try:
        decide_due(engine, now, on_event)
    except NewsletterError as e:  # e.g. the database is busy: the next pass decides
        report.errors.append(str(e))
        on_event(f"A/B test: {e}")
    running.sort(key=lambda c: served.get(c, float("-inf")))  # round robin between running campaigns
    for cid in running:
        if stop_event.is_set():
            return False
        if idle(cid):
            continue
        watch = ScheduleWatch(engine, cid, since=now, clock=clock, poll=poll, campaign_slice=campaign_slice,
                              stop_event=stop_event, idle=idle, on_turn=on_turn)
        try:
            with watch:
                options = replace(send_options, stop_event=watch.turn, wait_deferred=False,
                                  clock=clock if config.warmup else None, schedule_clock=clock)
                summary = send_campaign(engine, cid, config, options)
        except Exception as e:  # a long-running worker reports and carries on with the next campaign
            text = str(e) if isinstance(e, NewsletterError) else f"unexpected {type(e).__name__}: {e}"
            if not isinstance(e, NewsletterError):
                log.debug("campaign %s: send failed", cid, exc_info=True)
            # Said once per campaign and problem, not at every poll (e.g. `newsletter send` holds it on SQLite).
            if seen_errors.get(cid) != text:
                seen_errors[cid] = text
                report.errors.append(text)
                on_event(f"campaign {cid}: {text}")
            _note_stall(engine, cid, text, send_options.worker_id or "")
            continue
        finally:
            served[cid] = time.monotonic()
        seen_errors.pop(cid, None)
        _note_stall(engine, cid, None, send_options.worker_id or "")  # it sent (or had nothing to send): not stalled
        report.sends.append(summary)
        yielded = watch.yielded and not stop_event.is_set()
        stopped = f"interrupted: {watch.reason}; it continues next pass" if yielded else summary.stopped
        if summary.sent_now or summary.failed_now or summary.deferred_now or summary.status != CampaignStatus.RUNNING or yielded:
            c = summary.counts
            on_event(
                f"campaign {cid}: {summary.status}{' (' + stopped + ')' if stopped else ''}; "
                f"this pass sent {summary.sent_now}, failed {summary.failed_now}, deferred {summary.deferred_now}; "
                f"ledger sent {c.get('sent', 0)} of {summary.total}"
                + (f"; {len(summary.ambiguous)} ambiguous (not resent): {', '.join(summary.ambiguous[:5])}"
                   if summary.ambiguous else "")
            )
        if yielded:
            return True
    return False


def _note_stall(engine: Engine, cid: int, reason: str | None, worker_id: str) -> None:
    """Record (``reason``) or clear (None) why this worker could not send ``cid``, for the admin
    page, ``campaigns show`` and the API; a database too busy for it only costs the note."""
    from ..store import workers

    try:
        if reason is None:
            workers.clear_stall(engine, cid)
        else:
            workers.record_stall(engine, cid, reason, worker_id)
    except NewsletterError as e:
        log.debug("campaign %s: stall note not written: %s", cid, e)


def send_welcomes(engine: Engine, config: Config, now: datetime, send_options: SendOptions, report: WorkerReport,
                  on_event: Callable[[str], None]) -> None:
    """The welcome emails due at ``now`` (dispatch/welcome.py), through the pass's transports; a
    problem is reported and the next pass tries again."""
    from ..dispatch.welcome import send_due_welcomes

    transport = send_options.transport
    if isinstance(transport, (list, tuple)):
        transport = transport[0] if transport else None
    try:
        send_due_welcomes(engine, config, now=now, transport=transport, smtp=send_options.smtp, tls=send_options.tls,
                          outbox=send_options.outbox, on_event=on_event)
    except NewsletterError as e:
        report.errors.append(str(e))
        on_event(f"welcome: {e}")


def run_worker(
    engine: Engine,
    config: Config,
    *,
    once: bool = False,
    now: datetime | None = None,
    poll_interval: float | None = None,
    catch_up: str | None = None,
    stop_event: threading.Event | None = None,
    standby: bool = False,
    smtp: str | None = None,
    tls: str | None = None,
    outbox: str | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
    retry_delays: Sequence[float] = occurrences.SOURCE_RETRY_DELAYS,
    on_event: Callable[[str], None] | None = None,
    clock: Callable[[], datetime] | None = None,
    campaign_slice: float = 60.0,
    on_turn: Callable[[int, str], None] | None = None,
) -> WorkerReport:
    """Run passes every ``poll_interval`` seconds (config ``poll_interval``, 5 s) until ``stop_event``
    is set, or one pass with ``once``. ``now`` pins the clock (tests, catch-up by hand); ``clock``
    replaces it altogether (a callable returning aware datetimes). On SQLite a
    second worker raises DispatchError, or with ``standby`` waits until the first one stops.
    ``stop_event`` (set by SIGTERM/SIGINT in the CLI) lets the current send finish its in-flight
    messages and release the rest, so nothing is lost or sent twice.

    A long send does not hold up the schedule: every ``poll_interval`` seconds while it runs, the
    worker looks for a digest occurrence or a scheduled campaign that came due; if there is one the
    send is interrupted cleanly, a new pass runs what came due, and the send carries on. Two running
    campaigns take turns of ``campaign_slice`` seconds. ``once`` runs passes until one ends without
    such an interruption. ``on_turn(cid, reason)`` is told each time a send is asked to make way
    (see ``ScheduleWatch``): tests wait on it rather than on how fast the machine is.
    With a bounce or unsubscribe mailbox configured, a thread of its own reads it every
    ``bounce_poll_interval`` seconds (``once``: one read first); its failures are warnings."""
    from ..dispatch.liveness import new_worker_id
    from ..dispatch.sender import SendOptions
    from ..store.db import require_current_schema, sqlite_path

    require_current_schema(engine)
    if catch_up is not None:
        from .cron import check_catch_up

        check_catch_up(catch_up)
    poll = float(poll_interval if poll_interval is not None else config.poll_interval)
    if poll <= 0:
        raise InvalidInput(f"--poll {poll:g}: must be more than 0 seconds")
    stop_event = stop_event or threading.Event()
    emit = on_event or _log_line
    clock = clock or make_clock(now)
    report = WorkerReport()
    lock = WorkerLock(sqlite_path(engine.url))
    if not lock.acquire(standby=standby, stop_event=stop_event, poll_interval=min(poll, 1.0),
                        on_wait=lambda who: emit(f"standby: waiting for the worker holding this SQLite database ({who or 'unknown'})")):
        report.stopped_by = "stop requested while on standby"
        return report
    worker_id = new_worker_id()
    send_options = SendOptions(smtp=smtp, tls=tls, outbox=outbox, concurrency=concurrency, rate=rate, worker_id=worker_id)
    seen_errors: dict = {}
    from ..feedback.poll import MailboxPoller  # bounce/unsubscribe mailboxes: never stops the worker

    mailbox_poller = MailboxPoller.for_config(engine, config, emit)
    from ..engagement.outbound import OutboundPoller  # event webhooks: a thread of their own, never in a send's way

    outbound = OutboundPoller.for_config(engine, config, emit)
    from .heartbeat import Heartbeat  # the admin pages say whether a worker is running

    heartbeat = Heartbeat(engine, worker_id, min(max(poll, 1.0), HEARTBEAT_MAX_S))
    heartbeat.run_once()
    if not once:
        heartbeat.start()
    try:
        emit(f"worker {worker_id} started ({'one pass' if once else f'polling every {poll:g} s'}"
             f"{', clock ' + clock().isoformat(timespec='seconds') if now else ''})")
        if mailbox_poller is not None and once:
            mailbox_poller.poll_once()
        elif mailbox_poller is not None:
            mailbox_poller.start()
        if outbound is not None and once:
            outbound.run_once()
        elif outbound is not None:
            outbound.start()
        served: dict = {}
        while True:
            interrupted = run_pass(engine, config, clock(), catch_up=catch_up, send_options=send_options,
                                   stop_event=stop_event, on_event=emit, report=report, retry_delays=retry_delays,
                                   seen_errors=seen_errors, clock=clock, poll=poll, campaign_slice=campaign_slice,
                                   served=served, on_turn=on_turn)
            report.passes += 1
            if stop_event.is_set():
                report.stopped_by = "stop requested"
                break
            if interrupted:
                continue  # a send made way for what came due: run it now, then the send carries on
            if once:
                report.stopped_by = "one pass done"
                break
            if stop_event.wait(poll):
                report.stopped_by = "stop requested"
                break
        emit(f"worker {worker_id} stopped: {report.stopped_by}")
    finally:
        heartbeat.stop()
        if mailbox_poller is not None:
            mailbox_poller.stop()
        if outbound is not None:
            outbound.stop()
        lock.release()
    return report
