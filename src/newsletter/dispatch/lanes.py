"""Lanes: the threads of one send, each owning one server connection, fed from one queue.

The feeder (``sender.send_campaign``) claims ledger rows and queues them as :class:`Item`; each
:class:`Lane` takes one, waits for the rate limiters, checks the reader still wants it, marks it
``sending`` (group commit with its previous result), sends it and records the outcome.
:class:`SendRun` is what they share: counters, the stop events, the connection-failure rotation
and the decision to auto-pause when every server keeps failing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import DispatchError, InvalidInput, NewsletterError
from ..store import queries as q
from ..store.db import transaction
from ..store.lifecycle import DeliveryState, PauseKind
from ..store.models import utcnow
from .group_commit import LEDGER_CONNECTIONS, GroupCommit
from .personalize import MessageFactory, Recipient
from .ratelimit import RateLimiter
from .retry import retry_decision
from .transports import ConnectFailed, Outcome

log = logging.getLogger("newsletter.dispatch.sender")

# Claims run ahead of the lanes; a claimed row older than this is re-checked (with the next rows
# in the queue, one query per group) just before its message goes out.
RECHECK_AFTER_S = 0.5
RECHECK_GROUP = 50


@dataclass
class Item:
    """One claimed ledger row waiting in the queue for a lane."""

    id: int
    recipient: Recipient
    attempts: int
    first_deferred_at: datetime | None  # its first "try later", if any
    checked_at: float = 0.0  # time.monotonic() when the subscriber was last seen still wanting it


class SendRun:
    """State shared by the feeder and the lanes of one send_campaign call."""

    def __init__(self, engine: Engine, config: Config, cid: int, worker: str, factory: MessageFactory,
                 transports: list, limiter: RateLimiter, stop_event: threading.Event | None, lanes: int = 1):
        self.engine, self.config, self.cid, self.worker = engine, config, cid, worker
        self.factory, self.transports, self.limiter = factory, transports, limiter
        self.external_stop = stop_event or threading.Event()
        self.stop_all = threading.Event()
        self.queue: "queue.Queue[Item]" = queue.Queue()
        self.feeder_done = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.failed = self.deferred = 0
        self.suppressed: list[str] = []
        self.conn_failures = {id(t): 0 for t in transports}
        self.out_of_rotation: set[int] = set()
        self.last_trouble = ""
        self.fatal: BaseException | None = None
        self.pause_reason: str | None = None
        self.pause_kind: PauseKind | None = None  # set with pause_reason: why this run pauses the campaign
        self.in_flight = 0
        self.uncommitted = 0  # results computed but not yet in the database
        self.commit = GroupCommit(engine, worker, self._suppress, self._committed, slots=min(lanes, LEDGER_CONNECTIONS),
                                  sync=config.ledger_sync)
        self.recheck_lock = threading.Lock()
        self.unwanted: set[int] = set()  # claimed rows found skipped just before sending
        self.skipped_now = 0

    def still_wanted(self, item: Item) -> bool:
        """False when the item's reader left since the claim (its row is then ``skipped``).

        Rows checked less than RECHECK_AFTER_S ago pass; otherwise this item and the next rows
        waiting in the queue are checked in one statement, so the cost is one query per group."""
        with self.recheck_lock:
            if item.id in self.unwanted:
                return False
            if time.monotonic() - item.checked_at <= RECHECK_AFTER_S:
                return True
            with self.queue.mutex:
                group = [item] + [i for i in list(self.queue.queue)[:RECHECK_GROUP - 1] if i.id != item.id]
            with transaction(self.engine) as conn:
                gone = q.skip_unwanted_claimed(conn, self.cid, [i.id for i in group], self.worker)
            now = time.monotonic()
            for i in group:
                i.checked_at = now
            self.unwanted.update(gone)
            self.skipped_now += len(gone)
            return item.id not in self.unwanted

    def _committed(self, n: int) -> None:
        """Results now in the database are no longer uncommitted."""
        with self.lock:
            self.uncommitted -= n

    def _suppress(self, failed: list[dict]) -> None:
        """Record the 5xx replies of failed copies as ``smtp`` bounce events; the rules decide
        (hard: bounced and suppressed; soft: counted; and the campaign's rate guard)."""
        from ..feedback.record import record_bounces, smtp_bounce

        bounces = [b for r in failed if (b := smtp_bounce(r.get("reply") or "", recipient=r["email"],
                                                          campaign_id=self.cid,
                                                          subscriber_id=r.get("subscriber_id"))) is not None]
        if not bounces:
            return
        try:  # the send loop checks the campaign's rates every RATES_CHECK_S, not once per failure
            res = record_bounces(self.engine, bounces, config=self.config, check_rates=False)
        except NewsletterError as err:
            log.warning("campaign %s: could not record %d SMTP bounce(s): %s", self.cid, len(bounces), err)
            return
        with self.lock:
            self.suppressed.extend(res.suppressed)

    def stopping(self) -> bool:
        """Whether the lanes must stop (the caller asked, or the run stops itself)."""
        return self.stop_all.is_set() or self.external_stop.is_set()

    def result_for(self, item: Item, built_msgid: str | None, outcome: Outcome, server: str) -> dict:
        """The ledger result of a message's outcome (a deferral goes through the retry decision), counted."""
        attempts = item.attempts + 1
        state, reply = outcome.state, outcome.reply
        nxt = None
        if state == DeliveryState.DEFERRED:
            state, reply, nxt = retry_decision(self.config, attempts, item.first_deferred_at or utcnow(), reply)
        with self.lock:
            self.uncommitted += 1
            if state == DeliveryState.SENT:
                self.sent += 1
            elif state == DeliveryState.FAILED:
                self.failed += 1
            else:
                self.deferred += 1
        return {"id": item.id, "state": state, "reply": reply, "message_id": built_msgid, "server": server,
                "next_attempt_at": nxt, "email": item.recipient.email, "subscriber_id": item.recipient.subscriber_id}

    def connection_result(self, transport, ok: bool, problem: str = "") -> None:
        """Count a transport's consecutive connection failures: past ``max_connection_failures`` it
        leaves the rotation, and when every transport has left, the run auto-pauses the campaign."""
        with self.lock:
            key = id(transport)
            if ok:
                self.conn_failures[key] = 0
                return
            self.conn_failures[key] += 1
            self.last_trouble = problem
            if self.conn_failures[key] >= max(1, self.config.max_connection_failures) and key not in self.out_of_rotation:
                self.out_of_rotation.add(key)
                log.warning("%s taken out of rotation after %d consecutive failures: %s",
                            transport.describe(), self.conn_failures[key], problem)
                if len(self.out_of_rotation) == len(self.transports):
                    self.pause_reason = (f"auto-paused after {self.conn_failures[key]} consecutive connection failures "
                                         f"(last: {problem})")
                    self.pause_kind = PauseKind.CONNECTIONS
                    self.stop_all.set()



class Lane(threading.Thread):
    """One connection: takes items, marks them sending, sends, records."""

    def __init__(self, run: SendRun, transport, session, n: int):
        super().__init__(name=f"send-lane-{n}", daemon=True)
        self.r, self.t, self.session = run, transport, session

    def run(self) -> None:
        """Take items until the run stops or the feeder is done and the queue empty."""
        r = self.r
        carry: dict | None = None
        try:
            while not r.stopping() and id(self.t) not in r.out_of_rotation:
                try:
                    item = r.queue.get_nowait()
                except queue.Empty:
                    if carry is not None:
                        r.commit.run(results=[carry])
                        carry = None
                    try:
                        item = r.queue.get(timeout=0.05)
                    except queue.Empty:
                        if r.feeder_done.is_set():
                            break
                        continue
                with r.lock:
                    r.in_flight += 1
                try:
                    carry = self._one(item, carry)
                finally:
                    with r.lock:
                        r.in_flight -= 1
        except BaseException as e:
            r.fatal = r.fatal or e
            r.stop_all.set()
        finally:
            try:
                if carry is not None:
                    r.commit.run(results=[carry])
            except BaseException as e:
                r.fatal = r.fatal or e
            try:
                self.session.close()
            except Exception:
                pass

    def _one(self, item: Item, carry: dict | None) -> dict | None:
        """Handle one claimed item; returns the result to record with the next commit."""
        r = self.r
        if item.id in r.unwanted:
            return carry
        if not r.limiter.acquire(r.stop_all, recipient=item.recipient.email) or not self.t_limiter_acquire():
            r.queue.put(item)
            return carry
        # After the rate limiter's wait, so the check is as close to the send as it can be.
        if not r.still_wanted(item):
            return carry
        try:
            built = r.factory.build(item.recipient)
        except InvalidInput as e:  # a bad address in the ledger: fail it, never send
            if item.id not in r.commit.run(results=[carry] if carry else [], sending=[item.id]):
                return None
            return r.result_for(item, None, Outcome("failed", str(e)), self.t.name)
        try:
            self.session.connect()
        except ConnectFailed as e:
            r.queue.put(item)
            r.connection_result(self.t, False, str(e))
            if carry is not None:
                r.commit.run(results=[carry])
            # back off a little before the next try on this server
            r.stop_all.wait(min(2.0, 0.1 * 2 ** min(r.conn_failures[id(self.t)], 5)))
            return None
        if r.stopping():  # asked to stop while we waited: this one stays claimed (released as pending)
            r.queue.put(item)
            return carry
        def mark() -> bool:  # the previous result and this copy's `sending` mark, committed
            if item.id in r.commit.run(results=[carry] if carry else [], sending=[item.id]):
                return True
            # no longer ours (e.g. given back by a sender that took this one for dead): never sent
            log.warning("campaign %s: copy %s is no longer claimed by this sender; not sent", r.cid, item.id)
            return False

        gated = getattr(self.session, "send_gated", None)  # SMTP: the envelope overlaps the commit
        if gated is not None:
            sent = gated(built, mark)
            if sent is None:
                return None
            outcome = sent
        elif mark():
            outcome = self.session.send(built)
        else:
            return None
        if outcome.fatal:  # nothing can go through as configured: stop the whole send, lose no attempt
            with transaction(r.engine) as conn:
                q.unmark_sending(conn, [item.id], r.worker, outcome.reply)
            raise DispatchError(outcome.fatal)
        r.connection_result(self.t, not outcome.server_trouble, outcome.reply)
        return r.result_for(item, built.message_id, outcome, self.t.name)

    def t_limiter_acquire(self) -> bool:
        """Wait for this transport's own rate limit, if it has one (False: the run stops)."""
        lim = getattr(self.t, "limiter", None)
        return True if lim is None else lim.acquire(self.r.stop_all)



def lane_plan(transports: list, concurrency: int) -> list:
    """Spread ``concurrency`` lanes over the transports round-robin, within each one's connection cap."""
    plan: list = []
    caps = {id(t): max(1, int(getattr(t, "max_connections", 1) or 1)) for t in transports}
    used = {id(t): 0 for t in transports}
    while len(plan) < concurrency:
        progressed = False
        for t in transports:
            if len(plan) >= concurrency:
                break
            if used[id(t)] < caps[id(t)]:
                plan.append(t)
                used[id(t)] += 1
                progressed = True
        if not progressed:
            break
    return plan

