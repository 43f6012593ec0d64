"""Sending a campaign: claim a batch → build → send → record, resumable after ``kill -9``.

:func:`send_campaign` reads as its steps: check the campaign and the options, connect (and log
in) before touching the ledger, lock (sender liveness), prepare the ledger (create it, recover a
dead sender's rows), feed the lanes until nothing is left or something stops the run, finish
(release claimed rows; pause or finish the campaign) and summarise. The parts live beside it:
``liveness`` (who is alive), ``group_commit`` (ledger writes), ``lanes`` (the sending threads),
``retry`` (deferred copies), ``preflight`` (refusals before anything starts), ``factory`` (the
message skeleton) and ``oneoff`` (test sends and confirmations).

Several processes share a campaign on PostgreSQL (``FOR UPDATE SKIP LOCKED`` claims; a worker's
liveness is a session advisory lock that dies with its connection). On SQLite one process holds
the campaign (``campaigns.lock_owner`` with a heartbeat); a second one is told who has it.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Callable

from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import DispatchError, NewsletterError, StateError
from ..store import queries as q
from ..store.db import require_current_schema, transaction
from ..store.lifecycle import (CampaignStatus, DeliveryState, PauseKind, SendOutcome, StopReason, copies_done,
                               copies_left)
from ..store.models import utcnow
from .campaigns import campaign_lists, get_campaign, transition
from .factory import message_factory
from .lanes import Item, Lane, SendRun, lane_plan
from .liveness import Liveness, new_worker_id
from .personalize import Recipient
from .preflight import check_concurrency, check_public_links, check_sendable, make_transports, refuse_user_pause
from .progress import Paced, eta_seconds, send_rate
from .ratelimit import RateLimiter
from .transports import ConnectFailed

log = logging.getLogger(__name__)

# How often a running send re-checks its campaign's bounce and complaint rates (the rate guard)
# and tells its progress_callback where it stands; both count the ledger, so on a large campaign
# they run less often (progress.Paced: at most 5 % of the time).
RATES_CHECK_S = 2.0
PROGRESS_EVERY_S = 0.5


@dataclass
class Progress:
    """Where a send stands (passed to ``progress_callback`` a few times a second)."""

    campaign_id: int
    total: int
    done: int  # sent + failed + skipped in the ledger
    sent: int
    failed: int
    deferred: int
    skipped: int
    sent_now: int  # by this process in this run
    elapsed: float
    rate: float  # messages/s of this run
    eta: float | None
    note: str = ""


@dataclass
class SendOptions:
    """How to send: transports, pace, what to do about ambiguous and deferred copies, and hooks.

    ``transport`` may be one transport or a list; by default the transports come from
    ``smtp``/``tls``/``outbox``/config (see ``preflight.make_transports``). ``allow_local_links``
    defaults to ``config.allow_local_links``. ``clock`` (aware UTC datetimes; the worker's, in
    tests injected) says which UTC day the warm-up quota is for and stamps the ledger's sent_at.
    ``limiter_factory`` builds the send's rate limiters from their specs — the send's own (``rate``,
    ``rate_window``, ``rate_per_domain``) and each SMTP server's — as ``RateLimiter.from_specs``
    (the default) does; e.g. one passing ``on_grant`` to watch the pacing."""

    transport: Any = None
    smtp: str | None = None
    tls: str | None = None
    outbox: str | None = None
    concurrency: int | None = None
    rate: str | None = None
    resend_ambiguous: bool = False
    progress_callback: Callable[[Progress], None] | None = None
    stop_event: threading.Event | None = None
    worker_id: str | None = None
    batch_size: int | None = None
    wait_deferred: bool = True
    allow_local_links: bool | None = None
    clock: Callable[[], datetime] | None = None
    limiter_factory: Callable[..., RateLimiter] | None = None
    # The clock a local-time campaign's buckets come due by (the worker's, injected in tests;
    # default: real UTC time). Only rows whose bucket is due are claimed.
    schedule_clock: Callable[[], datetime] | None = None


@dataclass
class SendSummary:
    """The outcome of one ``send_campaign`` run (the ledger holds the full story)."""

    campaign_id: int
    status: str
    status_reason: str
    counts: dict[str, int]
    transport: str
    worker_id: str
    sent_now: int = 0
    failed_now: int = 0
    deferred_now: int = 0
    skipped_now: int = 0
    suppressed: list[str] = field(default_factory=list)  # addresses the bounce rules suppressed during this run
    ambiguous: list[str] = field(default_factory=list)  # every address a crash left ambiguous
    resent_ambiguous: int = 0
    ambiguous_resent: list[str] = field(default_factory=list)  # those of them sent again in this run
    elapsed: float = 0.0
    stopped: str | None = None  # why the run ended early, in words (None: it ran to the end)
    resumed_from: str | None = None  # the auto-pause reason when this run resumed an auto-paused campaign
    stop: StopReason | None = None  # why the run ended early, as a value
    pause_kind: str | None = None  # the campaign's PauseKind at the end, when paused

    @property
    def outcome(self) -> SendOutcome:
        """What the run achieved: finished (or left to other live workers), auto-paused, or not finished."""
        if self.status == CampaignStatus.PAUSED and self.pause_kind and PauseKind(self.pause_kind).automatic:
            return SendOutcome.AUTO_PAUSED
        if self.status == CampaignStatus.FINISHED or self.stop is StopReason.OTHERS_FINISHING:
            return SendOutcome.FINISHED
        return SendOutcome.UNFINISHED

    @property
    def total(self) -> int:
        """Ledger rows of the campaign."""
        return sum(self.counts.values())

    @property
    def left(self) -> int:
        """Copies still to be handed to a server (``lifecycle.copies_left``)."""
        return copies_left(self.counts)

    @property
    def rate(self) -> float:
        """Messages per second this run sent."""
        return send_rate(self.sent_now, self.elapsed)

    def as_dict(self) -> dict:
        """The summary as plain data (JSON output of ``send``)."""
        d = dict(self.__dict__)
        d["total"] = self.total
        d["rate"] = round(self.rate, 1)
        d["outcome"] = self.outcome
        return d


def send_campaign(engine: Engine, campaign_id: int | str, config: Config, options: SendOptions | None = None,
                  **fields: Any) -> SendSummary:
    """Send (or continue sending) a campaign through the ledger and return a summary.

    ``options`` (a :class:`SendOptions`) say how; keyword ``fields`` override single options.
    Creates the ledger from the subscribers active right now on first call, then loops claim →
    build → send → record until nothing is left, the campaign is paused/cancelled (by anyone),
    ``stop_event`` is set (claimed rows go back to pending), or the servers keep failing (the
    campaign auto-pauses). Deferred copies are waited for and retried unless ``wait_deferred``
    is False. Rows left ``sending`` by a dead worker are reported as ambiguous and not resent
    unless ``resend_ambiguous``. A campaign paused by a user is refused (StateError: resume it
    first); an auto-paused one is continued and ``SendSummary.resumed_from`` names the old
    reason. An SMTP send refuses a ``base_url`` readers cannot reach (``preflight``) unless
    ``allow_local_links``. ``SendSummary.outcome`` says how it ended."""
    opts = replace(options or SendOptions(), **fields)
    send = _Send(engine, config, opts)
    send.check(campaign_id)
    send.connect()
    send.lock()
    try:
        send.prepare_ledger()
        send.feed()
    except BaseException:  # e.g. KeyboardInterrupt in this thread: the lanes stop at once too
        send.stop = send.stop or StopReason.INTERRUPTED
        send.stopped = send.stopped or send.stop.value
        raise
    finally:
        send.finish()
    return send.summary()


class _Send:
    """One ``send_campaign`` call, step by step (the feeding thread's state)."""

    def __init__(self, engine: Engine, config: Config, opts: SendOptions):
        self.engine, self.config, self.opts = engine, config, opts
        self.t0 = time.monotonic()
        self.claimed_up_to = 0  # highest ledger id this send claimed: where the next claim starts looking
        self.ambiguous: list[str] = []
        self.ambiguous_resent: list[str] = []
        self.seen_ambiguous: set[int] = set()
        self.resent = 0
        self.skipped_now = 0
        self.lanes: list[Lane] = []
        self.sessions: list = []
        self.stopped: str | None = None
        self.stop: StopReason | None = None
        self.resumed_from: str | None = None

    # --- check ----------------------------------------------------------------------------------
    def check(self, campaign_id: int | str) -> None:
        """Everything that can refuse the send before a connection is made or a row written."""
        engine, config, opts = self.engine, self.config, self.opts
        require_current_schema(engine)
        self.campaign = get_campaign(engine, campaign_id)
        assert self.campaign.id is not None
        self.cid: int = self.campaign.id
        check_sendable(self.campaign, resend_ambiguous=opts.resend_ambiguous)
        self.concurrency = check_concurrency(opts.concurrency, config)
        from ..feedback.record import Rules

        self.rules = Rules.from_config(config)  # bad bounce settings stop the send before anything goes out
        limiter_factory = opts.limiter_factory or RateLimiter.from_specs
        self.limiter = limiter_factory(opts.rate if opts.rate is not None else config.rate, config.rate_window,
                                       per_domain=config.rate_per_domain)
        from .warmup import gate_for  # the warm-up quota: claims stop at today's allowance

        self.warmup = gate_for(config, opts.clock)
        if config.rate_window:  # provider quotas remember what was sent before this process started
            from .ratelimit import parse_rates

            longest = max(r.period for r in parse_rates(config.rate_window))
            now = utcnow()
            with transaction(engine) as conn:
                self.limiter.seed((now - t).total_seconds() for t in q.sent_since(conn, now - timedelta(seconds=longest)))
        if opts.transport is None:
            self.transports = make_transports(config, smtp=opts.smtp, tls=opts.tls, outbox=opts.outbox,
                                              limiter_factory=opts.limiter_factory)
        else:
            t = opts.transport
            self.transports = list(t) if isinstance(t, (list, tuple)) else [t]
        check_public_links(config, self.transports, opts.allow_local_links)
        from .domain import auth_preflight  # DKIM d= vs From: warn once per campaign, refuse with strict_auth
        from .smtp import SMTPTransport

        auth_preflight(config, self.cid, self.campaign.from_address,
                       smtp=any(isinstance(t, SMTPTransport) for t in self.transports))
        self.factory = message_factory(engine, self.campaign, config)
        self.worker = opts.worker_id or new_worker_id()
        # A local-time campaign (schedule/localtime.py): rows wait in their buckets (deliveries.due_at).
        self.local_time = bool((self.campaign.meta or {}).get("local_time"))
        self.due_clock: Callable[[], datetime] = opts.schedule_clock or utcnow

    # --- connect --------------------------------------------------------------------------------
    def connect(self) -> None:
        """Open one session per lane and log in to each server before touching the ledger: a
        refused login changes nothing (a server that fails among several is only warned about)."""
        plan = lane_plan(self.transports, self.concurrency)
        if len(plan) < self.concurrency:
            log.warning("concurrency %d: the server(s) allow %d connection(s) together (max_connections); "
                        "sending with %d", self.concurrency, len(plan), len(plan))
        try:
            for t in plan:
                s = t.session()
                if not any(t is tt for tt, _ in self.sessions):
                    try:
                        s.connect()
                    except ConnectFailed as e:
                        if len(self.transports) == 1:
                            raise DispatchError(str(e)) from None
                        log.warning("%s", e)
                self.sessions.append((t, s))
        except BaseException:
            self._close_sessions()
            raise

    def _close_sessions(self) -> None:
        for _, s in self.sessions:
            s.close()

    # --- lock -----------------------------------------------------------------------------------
    def lock(self) -> None:
        """Announce this sender (liveness) and set up the run the lanes share."""
        self.live = Liveness(self.engine, self.cid, self.worker)
        try:
            self.live.start()
        except BaseException:
            self._close_sessions()
            raise
        self.run = SendRun(self.engine, self.config, self.cid, self.worker, self.factory, self.transports,
                           self.limiter, self.opts.stop_event, lanes=len(self.sessions))
        self.run.commit.clock = self.opts.clock

    # --- prepare the ledger -----------------------------------------------------------------------
    def recover(self, conn) -> int:
        """Rows of workers that are gone: claimed → pending; sending → ambiguous (reported; requeued
        when resend_ambiguous). Returns how many ambiguous rows were requeued."""
        cid, live = self.cid, self.live
        holders = q.workers_holding_rows(conn, cid)
        dead = [w for w in holders if not live.alive(w)]
        for w in dead:
            q.release_claimed(conn, cid, w)
        live_workers = [w for w in holders if w not in dead]
        amb = [a for a in q.ambiguous_rows(conn, cid, live_workers + [self.worker]) if a.id not in self.seen_ambiguous]
        for a in amb:
            self.seen_ambiguous.add(a.id)
            self.ambiguous.append(a.email)
        if self.opts.resend_ambiguous and amb:
            n = q.requeue_ambiguous(conn, [a.id for a in amb])
            self.ambiguous_resent.extend(a.email for a in amb)
            return n
        return 0

    def prepare_ledger(self) -> None:
        """Re-check the status, create the ledger on the first run, recover a dead sender's rows,
        make the campaign running, and start the lanes."""
        cid = self.cid
        with transaction(self.engine) as conn:
            status, status_reason, pause_kind, ledger_created_at = q.campaign_state(conn, cid, lock=True)
            if status == CampaignStatus.CANCELLED:
                raise StateError(f"campaign {cid} was cancelled; nothing more is sent")
            refuse_user_pause(cid, status, status_reason, pause_kind)
            if status == CampaignStatus.PAUSED:
                self.resumed_from = status_reason
            if ledger_created_at is None and self.local_time:
                raise StateError(f"campaign {cid} is a local-time campaign whose buckets are not planned yet: a "
                                 f"`newsletter worker` plans them at its time (`newsletter send {cid} --now`: now)")
            if ledger_created_at is None:
                from .abtest import create_ledger_for  # an A/B test holds the rest for its winner

                create_ledger_for(conn, cid)
                if not q.counts_by_state(conn, cid):
                    slugs = ", ".join(sorted(campaign_lists(self.engine, cid).values())) or "none"
                    raise DispatchError(f"campaign {cid}: no active subscribers on its list(s) {slugs}; nothing to send")
                q.mark_ledger_created(conn, cid)
            self.resent += self.recover(conn)
            if status == CampaignStatus.FINISHED and not self.resent:
                raise StateError(f"campaign {cid} is already finished and has no ambiguous copies to resend")
            if status != CampaignStatus.RUNNING:
                transition(conn, cid, CampaignStatus.RUNNING, reason="")
        self.lanes = [Lane(self.run, t, s, n) for n, (t, s) in enumerate(self.sessions)]
        for lane in self.lanes:
            lane.start()

    # --- feed -----------------------------------------------------------------------------------
    def _stop_with(self, reason: StopReason, words: str | None = None) -> None:
        """Record why the run ends early (``words`` when the reason has its own sentence)."""
        self.stop, self.stopped = reason, words or reason.value

    def feed(self) -> None:
        """Claim rows and queue them for the lanes until nothing is left or something stops the run:
        the caller's stop event, an auto-pause, a pause or cancel from elsewhere, the warm-up
        quota, deferred copies not to be waited for, or other live workers finishing."""
        engine, run, cid, live, opts = self.engine, self.run, self.cid, self.live, self.opts
        batch = int(opts.batch_size or max(50, self.concurrency * 25))
        low_water = max(self.concurrency * 4, batch // 2)
        last_status_check = 0.0
        # the two chores that count the whole ledger: each paced by its own cost (Paced)
        rates, shown = Paced(RATES_CHECK_S), Paced(PROGRESS_EVERY_S)
        from ..feedback.record import check_campaign_rates

        while True:
            if run.fatal is not None:
                return
            if run.external_stop.is_set():
                self._stop_with(StopReason.STOP_REQUESTED)
                return
            if run.stop_all.is_set():
                self._stop_with(StopReason.AUTO_PAUSED, run.pause_reason or "stopped")
                return
            now_m = time.monotonic()
            if now_m - last_status_check > 0.25:
                last_status_check = now_m
                live.beat()
                with transaction(engine) as conn:
                    if rates.due():  # bounces recorded elsewhere count too
                        with rates.timed():
                            check_campaign_rates(conn, cid, self.rules)
                    st = q.campaign_status(conn, cid)
                if st in (CampaignStatus.PAUSED, CampaignStatus.CANCELLED):
                    self._stop_with(StopReason(st))
                    return
            if opts.progress_callback and shown.due():
                with shown.timed():
                    self.progress()
            if run.queue.qsize() >= low_water:
                run.external_stop.wait(0.01)
                continue
            if self._claim(batch):
                continue
            # Nothing claimable now: wait for lanes to drain, then for deferred rows or the end.
            if not run.queue.empty() or run.in_flight or run.uncommitted:
                run.external_stop.wait(0.01)
                continue
            if self._idle_step():
                continue
            return

    def _claim(self, batch: int) -> bool:
        """Claim a batch (within today's warm-up room) and queue it; False when nothing was claimable."""
        run, cid = self.run, self.cid
        with transaction(self.engine) as conn:
            room = batch if self.warmup is None else min(batch, self.warmup.room(conn))
            due_by = self.due_clock() if self.local_time else None
            ids = q.claim_batch(conn, cid, self.worker, room, due_by=due_by, after=self.claimed_up_to) if room > 0 else []
            self.claimed_up_to = max(ids, default=self.claimed_up_to)
            if ids:
                self.skipped_now += q.skip_unwanted(conn, cid, ids)
                rows = q.claimed_recipients(conn, ids)
            else:
                rows = []
        for r in rows:
            run.queue.put(Item(r.id, Recipient(r.subscriber_id, r.list_id, r.email, r.name or "", r.attributes or {},
                                               r.variant),
                               r.attempts, r.first_deferred_at, time.monotonic()))
        return bool(rows or ids)

    def _idle_step(self) -> bool:
        """Nothing queued or in flight: recover dead workers' rows, pause at the warm-up quota, wait
        for deferred copies or other workers. True to go on feeding, False when the run ends."""
        engine, run, cid = self.engine, self.run, self.cid
        with transaction(engine) as conn:
            counts = q.counts_by_state(conn, cid)
            retry_at = q.next_retry_at(conn, cid)
            others = [w for w in q.workers_holding_rows(conn, cid) if w != self.worker and self.live.alive(w)]
            next_bucket = q.next_due_at(conn, cid, self.due_clock()) if self.local_time else None
            if next_bucket is not None:  # rows waiting for a later bucket are not "pending now"
                counts["pending"] = q.pending_due_count(conn, cid, self.due_clock())
        with transaction(engine) as conn:  # a worker that died meanwhile: its rows come back
            again = self.recover(conn)
            self.resent += again
        if self.warmup is not None and (counts.get("pending") or (retry_at is not None and retry_at <= utcnow())):
            with transaction(engine) as conn:
                if self.warmup.room(conn) == 0:  # today's quota is used up: pause until the next UTC day
                    run.pause_reason = self.warmup.pause_reason(conn)
                    run.pause_kind = PauseKind.WARMUP
            if run.pause_reason:
                self._stop_with(StopReason.AUTO_PAUSED, run.pause_reason)
                return False
        if again or counts.get("pending") or (counts.get("claimed", 0) and not others):
            run.external_stop.wait(0.01)
            return True
        if counts.get(DeliveryState.HELD) and not copies_left(counts) - counts[DeliveryState.HELD]:
            self._stop_with(StopReason.AB_WAITING)  # the worker sends the winner to the rest after the wait
            return False
        if counts.get("deferred") and retry_at is not None:
            if not self.opts.wait_deferred:
                self._stop_with(StopReason.DEFERRED_WAIT)
                return False
            wait = max(0.0, (retry_at - utcnow()).total_seconds())
            if self.opts.progress_callback:
                self.progress(note=f"waiting {wait:.0f} s to retry {counts['deferred']} deferred")
            run.external_stop.wait(min(max(wait, 0.01), 1.0))
            return True
        if next_bucket is not None:
            self._stop_with(StopReason.NEXT_BUCKET, f"{StopReason.NEXT_BUCKET.value}: it is due at "
                            f"{next_bucket.isoformat(timespec='minutes')}, when a `newsletter worker` sends it")
            return False
        if others:
            self._stop_with(StopReason.OTHERS_FINISHING)
        return False

    # --- finish ---------------------------------------------------------------------------------
    def finish(self) -> None:
        """Stop the lanes, give claimed rows back, pause (auto-pause) or finish the campaign, and
        release the lock and connections, whatever happened before."""
        engine, run, cid = self.engine, self.run, self.cid
        run.feeder_done.set()
        if self.stopped or run.fatal is not None:
            run.stop_all.set()
        for lane in self.lanes:
            lane.join()
        if not self.lanes:
            self._close_sessions()
        try:
            with transaction(engine) as conn:
                q.release_claimed(conn, cid, self.worker,
                                  cancelled=q.campaign_status(conn, cid) == CampaignStatus.CANCELLED)
                if run.pause_reason:
                    try:
                        transition(conn, cid, CampaignStatus.PAUSED, reason=run.pause_reason,
                                   allow_from=(CampaignStatus.RUNNING,), pause_kind=run.pause_kind)
                    except StateError:
                        pass
                elif run.fatal is None and self.stopped is None:
                    counts = q.counts_by_state(conn, cid)
                    others = [w for w in q.workers_holding_rows(conn, cid) if w != self.worker and self.live.alive(w)]
                    if not copies_left(counts) and not others:
                        try:
                            transition(conn, cid, CampaignStatus.FINISHED, allow_from=(CampaignStatus.RUNNING,))
                        except StateError:
                            pass
        finally:
            run.commit.close()
            self.live.stop(quiet=run.fatal is not None or self.stop is StopReason.INTERRUPTED)

    def summary(self) -> SendSummary:
        """The run's summary (raises what stopped a lane, if anything did)."""
        run, cid = self.run, self.cid
        if run.fatal is not None:
            if isinstance(run.fatal, NewsletterError):
                raise run.fatal
            raise DispatchError(f"campaign {cid}: sending stopped: {type(run.fatal).__name__}: {run.fatal}") from run.fatal
        with transaction(self.engine) as conn:
            counts = q.counts_by_state(conn, cid)
            state = q.campaign_state(conn, cid)
        if self.opts.progress_callback:
            self.progress()
        return SendSummary(
            campaign_id=cid, status=state.status, status_reason=state.status_reason, counts=counts,
            transport=", ".join(t.describe() for t in self.transports), worker_id=self.worker,
            sent_now=run.sent, failed_now=run.failed, deferred_now=run.deferred,
            skipped_now=self.skipped_now + run.skipped_now, suppressed=run.suppressed, ambiguous=self.ambiguous,
            resent_ambiguous=self.resent, ambiguous_resent=self.ambiguous_resent,
            elapsed=time.monotonic() - self.t0, stopped=self.stopped, resumed_from=self.resumed_from,
            stop=self.stop, pause_kind=state.pause_kind,
        )

    def progress(self, note: str = "") -> None:
        """Tell ``progress_callback`` where the send stands (a display problem never stops a send)."""
        cb = self.opts.progress_callback
        if cb is None:
            return
        with transaction(self.engine) as conn:
            counts = q.counts_by_state(conn, self.cid)
        total, done = sum(counts.values()), copies_done(counts)
        elapsed = time.monotonic() - self.t0
        rate = send_rate(self.run.sent, elapsed)
        try:
            cb(Progress(self.cid, total, done, counts.get("sent", 0), counts.get("failed", 0), counts.get("deferred", 0),
                        counts.get("skipped", 0), self.run.sent, elapsed, rate, eta_seconds(total, done, rate), note))
        except Exception:  # a display problem must never stop a send
            log.debug("progress callback failed", exc_info=True)
