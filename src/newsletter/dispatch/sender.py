"""The sending loop: claim a batch → build → send → record, resumable after ``kill -9``.

One process runs ``concurrency`` lanes (threads), each owning one connection. The main thread
claims batches of ledger rows (``claimed``: held by this worker, never handed to a server) and
feeds the lanes. Before a lane hands a message to the server it commits that row as ``sending``
*in the same transaction* as the previous message's result, so at any instant each lane has at
most one row whose outcome the database does not know: after a crash the ambiguous rows number
at most ``concurrency``. ``claimed`` rows of a dead worker simply go back to ``pending``.

Several processes share a campaign on PostgreSQL (``FOR UPDATE SKIP LOCKED`` claims; a worker's
liveness is a session advisory lock that dies with its connection). On SQLite one process holds
the campaign (``campaigns.lock_owner`` with a heartbeat); a second one is told who has it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Callable, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import ConfigError, DispatchError, InvalidInput, NewsletterError, StateError
from ..store import queries as q
from ..store.db import require_current_schema, transaction
from ..store.models import utcnow
from .campaigns import campaign_lists, get_campaign, titled, transition
from .personalize import CampaignContent, MessageFactory, Recipient, check_header_value, format_address
from .ratelimit import RateLimiter
from .transports import ConnectFailed, Outcome, OutboxTransport

log = logging.getLogger(__name__)

LOCK_HEARTBEAT_S = 5.0
LOCK_STALE_S = 60.0
# Claims run ahead of the lanes; a claimed row older than this is re-checked (with the next rows
# in the queue, one query per group) just before its message goes out.
RECHECK_AFTER_S = 0.5
RECHECK_GROUP = 50
# How often a running send re-checks its campaign's bounce and complaint rates (the rate guard).
RATES_CHECK_S = 2.0


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
    stopped: str | None = None
    resumed_from: str | None = None  # the auto-pause reason when this run resumed an auto-paused campaign

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rate(self) -> float:
        return self.sent_now / self.elapsed if self.elapsed > 0 else 0.0

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["total"] = self.total
        d["rate"] = round(self.rate, 1)
        return d


def new_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def _advisory_key(worker_id: str) -> int:
    return int.from_bytes(hashlib.sha256(b"newsletter-worker:" + worker_id.encode()).digest()[:8], "big", signed=True)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _Liveness:
    """Who is alive: PostgreSQL session advisory locks, or the SQLite campaign lock."""

    def __init__(self, engine: Engine, campaign_id: int, worker_id: str):
        self.engine = engine
        self.cid = campaign_id
        self.me = worker_id
        self.pg = engine.dialect.name == "postgresql"
        self.conn = None
        self.last_beat = 0.0

    def start(self) -> None:
        if self.pg:
            self.conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            self.conn.execute(text("select pg_advisory_lock(:k)"), {"k": _advisory_key(self.me)})
            return
        now = utcnow()
        with transaction(self.engine) as conn:
            if q.acquire_campaign_lock(conn, self.cid, self.me, now - timedelta(seconds=LOCK_STALE_S), now):
                self.last_beat = time.monotonic()
                return
            owner, beat = conn.execute(select(q.campaigns.c.lock_owner, q.campaigns.c.lock_heartbeat_at)
                                       .where(q.campaigns.c.id == self.cid)).one()
            host, _, rest = (owner or "").partition(":")
            pid = rest.split(":", 1)[0]
            if host == socket.gethostname() and pid.isdigit() and not _pid_alive(int(pid)):
                if q.acquire_campaign_lock(conn, self.cid, self.me, now - timedelta(seconds=LOCK_STALE_S), now,
                                           take_from=owner):
                    self.last_beat = time.monotonic()
                    return
        when = f", alive at {beat:%H:%M:%S} UTC" if beat else ""
        raise DispatchError(
            f"campaign {self.cid} is being sent by another process ({owner}{when}); "
            "on SQLite one sender works a campaign at a time (use PostgreSQL for several workers)")

    def alive(self, worker_id: str) -> bool:
        if worker_id == self.me:
            return True
        if not self.pg:
            return False  # we hold the campaign lock: any other holder of rows is gone
        k = _advisory_key(worker_id)
        got = self.conn.execute(text("select pg_try_advisory_lock(:k)"), {"k": k}).scalar()
        if got:
            self.conn.execute(text("select pg_advisory_unlock(:k)"), {"k": k})
            return False
        return True

    def beat(self) -> None:
        if self.pg or time.monotonic() - self.last_beat < LOCK_HEARTBEAT_S:
            return
        with transaction(self.engine) as conn:
            if not q.heartbeat_campaign_lock(conn, self.cid, self.me):
                raise DispatchError(f"campaign {self.cid}: another process took over the campaign lock; stopping")
        self.last_beat = time.monotonic()

    def stop(self) -> None:
        try:
            if self.pg and self.conn is not None:
                # Release explicitly: close() only hands the connection back to the pool, whose
                # session would keep the lock, and this worker's next send (on another pooled
                # connection) would wait for it forever.
                try:
                    self.conn.execute(text("select pg_advisory_unlock_all()"))
                except Exception:  # a broken session: its locks died with it; throw it away
                    self.conn.invalidate()
                finally:
                    self.conn.close()
            elif not self.pg:
                with transaction(self.engine) as conn:
                    q.release_campaign_lock(conn, self.cid, self.me)
        except NewsletterError:
            log.warning("campaign %s: could not release the sender lock cleanly", self.cid)


class _GroupCommit:
    """Leader/follower group commit: lanes hand in ledger updates, one of them commits them all.

    A lane's call returns once its updates are durable, which is what bounds the ambiguous rows."""

    def __init__(self, engine: Engine, worker_id: str, on_failed_suppress: Callable[[list[str]], None],
                 on_committed: Callable[[int], None]):
        self.on_committed = on_committed
        self.engine = engine
        self.conn = None  # one connection for all ledger writes (used by one leader at a time)
        self.worker = worker_id
        self.cond = threading.Condition()
        self.pending: list[dict] = []
        self.leader = False
        self.suppress = on_failed_suppress
        self.clock: Callable[[], datetime] | None = None  # stamps sent_at (send_campaign's clock)

    def run(self, results: Sequence[dict] = (), sending: Sequence[int] = ()) -> None:
        ticket = {"results": list(results), "sending": list(sending), "done": False, "error": None}
        with self.cond:
            self.pending.append(ticket)
            while not ticket["done"] and self.leader:
                self.cond.wait()
            if ticket["done"]:
                if ticket["error"]:
                    raise ticket["error"]
                return
            self.leader = True
            batch, self.pending = self.pending, []
        error = None
        try:
            results_all = [r for t in batch for r in t["results"]]
            sending_all = [(i, self.worker) for t in batch for i in t["sending"]]
            self._write(results_all, sending_all)
            self.on_committed(len(results_all))
            failed = [r for r in results_all if r["state"] == "failed"]
            if failed:  # 5xx replies go through the bounce rules (one table of events)
                self.suppress(failed)
        except BaseException as e:  # every waiting lane learns about it
            error = e
        finally:
            with self.cond:
                for t in batch:
                    t["done"], t["error"] = True, error
                self.leader = False
                self.cond.notify_all()
        if error:
            raise error

    def _write(self, results: list[dict], sending: list[tuple[int, str]]) -> None:
        from sqlalchemy import exc as sa_exc

        from ..store.db import describe_db_error

        try:
            if self.conn is None:
                self.conn = self.engine.connect()
            with self.conn.begin():
                q.record_and_mark_sending(self.conn, results, sending, now=self.clock() if self.clock else None)
        except sa_exc.SQLAlchemyError as e:
            self.close()
            raise describe_db_error(e, self.engine.url) from None
        except Exception as e:  # driver errors raised outside SQLAlchemy's wrapping
            self.close()
            if type(e).__module__.split(".")[0] in ("sqlite3", "psycopg"):
                raise describe_db_error(e, self.engine.url) from None
            raise

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass
            self.conn = None


@dataclass
class _Item:
    id: int
    recipient: Recipient
    attempts: int
    first_deferred_at: datetime | None  # its first "try later", if any
    checked_at: float = 0.0  # time.monotonic() when the subscriber was last seen still wanting it


class _Run:
    """State shared by the feeder and the lanes of one send_campaign call."""

    def __init__(self, engine, config: Config, cid: int, worker: str, factory: MessageFactory, transports: list,
                 limiter: RateLimiter, stop_event: threading.Event | None):
        self.engine, self.config, self.cid, self.worker = engine, config, cid, worker
        self.factory, self.transports, self.limiter = factory, transports, limiter
        self.external_stop = stop_event or threading.Event()
        self.stop_all = threading.Event()
        self.queue: "queue.Queue[_Item]" = queue.Queue()
        self.feeder_done = threading.Event()
        self.lock = threading.Lock()
        self.sent = self.failed = self.deferred = 0
        self.suppressed: list[str] = []
        self.conn_failures = {id(t): 0 for t in transports}
        self.out_of_rotation: set[int] = set()
        self.last_trouble = ""
        self.fatal: BaseException | None = None
        self.pause_reason: str | None = None
        self.in_flight = 0
        self.uncommitted = 0  # results computed but not yet in the database
        self.commit = _GroupCommit(engine, worker, self._suppress, self._committed)
        self.recheck_lock = threading.Lock()
        self.unwanted: set[int] = set()  # claimed rows found skipped just before sending
        self.skipped_now = 0

    def still_wanted(self, item: _Item) -> bool:
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
        return self.stop_all.is_set() or self.external_stop.is_set()

    def result_for(self, item: _Item, built_msgid: str | None, outcome: Outcome, server: str) -> dict:
        attempts = item.attempts + 1
        state, reply = outcome.state, outcome.reply
        nxt = None
        if state == "deferred":
            state, reply, nxt = retry_decision(self.config, attempts, item.first_deferred_at or utcnow(), reply)
        with self.lock:
            self.uncommitted += 1
            if state == "sent":
                self.sent += 1
            elif state == "failed":
                self.failed += 1
            else:
                self.deferred += 1
        return {"id": item.id, "state": state, "reply": reply, "message_id": built_msgid, "server": server,
                "next_attempt_at": nxt, "email": item.recipient.email, "subscriber_id": item.recipient.subscriber_id}

    def connection_result(self, transport, ok: bool, problem: str = "") -> None:
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
                    self.stop_all.set()


def retry_decision(config: Config, attempts: int, since: datetime, reply: str,
                   now: datetime | None = None) -> tuple[str, str, datetime | None]:
    """What becomes of a copy that was just deferred (4xx, dropped connection, timeout) after
    ``attempts`` tries: ``("deferred", reply, next_attempt_at)`` or ``("failed", why, None)``.

    The age is the limit: retries go on until ``retry_max_age`` after ``since``, the copy's first
    temporary failure (2 days by default; a campaign paused for a week before it was tried does
    not eat into them), ``retry_base`` apart at first and doubling up to ``retry_max_delay`` (an
    hour), with equal jitter; the last retry is due no later than the deadline itself.
    ``max_attempts`` (default 100: with the default delays, at least about two days of retries) is
    only a backstop."""
    now = now or utcnow()
    age = (now - since).total_seconds()
    if age >= config.retry_max_age:
        return "failed", f"gave up after {int(age)} s of retries ({attempts} attempts): {reply}", None
    if attempts >= config.max_attempts:
        return "failed", f"gave up after {attempts} attempts: {reply}", None
    delay = min(config.retry_max_delay, config.retry_base * 2 ** min(attempts - 1, 60))
    delay = delay / 2 + random.uniform(0, delay / 2)  # "equal jitter"
    delay = min(delay, config.retry_max_age - age)
    return "deferred", reply, now + timedelta(seconds=delay)


class _Lane(threading.Thread):
    """One connection: takes items, marks them sending, sends, records."""

    def __init__(self, run: _Run, transport, session, n: int):
        super().__init__(name=f"send-lane-{n}", daemon=True)
        self.r, self.t, self.session = run, transport, session

    def run(self) -> None:
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

    def _one(self, item: "_Item", carry: dict | None) -> dict | None:
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
            r.commit.run(results=[carry] if carry else [], sending=[item.id])
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
        r.commit.run(results=[carry] if carry else [], sending=[item.id])
        outcome = self.session.send(built)
        if outcome.fatal:  # nothing can go through as configured: stop the whole send, lose no attempt
            with transaction(r.engine) as conn:
                q.unmark_sending(conn, [item.id], r.worker, outcome.reply)
            raise DispatchError(outcome.fatal)
        r.connection_result(self.t, not outcome.server_trouble, outcome.reply)
        return r.result_for(item, built.message_id, outcome, self.t.name)

    def t_limiter_acquire(self) -> bool:
        lim = getattr(self.t, "limiter", None)
        return True if lim is None else lim.acquire(self.r.stop_all)


def _content(engine: Engine, campaign) -> CampaignContent:
    from .campaigns import campaign_images

    return CampaignContent(
        campaign_id=campaign.id, subject=campaign.subject, from_address=campaign.from_address, html=campaign.html,
        text=campaign.text, reply_to=campaign.reply_to, headers=campaign.headers or {},
        images=campaign_images(engine, campaign.id), lists=campaign_lists(engine, campaign.id),
    )


def message_factory(engine: Engine, campaign, config: Config) -> MessageFactory:
    """The per-campaign skeleton builder (also used for previews and test sends)."""
    from ..store.secret import secret_key
    from ..store import preferences
    from ..store.tokens import unsubscribe_token
    from .dkim import make_signer

    secret = secret_key(config)
    bounce = config.bounce_address
    if bounce:
        check_header_value("bounce_address", bounce)
        bounce = parseaddr(bounce)[1] or None
    copy_address, verp, feedback = _feedback_headers(engine, campaign, config, secret, bounce)
    from ..engagement.campaign import tracked_content

    content, tracker = tracked_content(engine, campaign, config, secret, _content(engine, campaign))
    return MessageFactory(
        content, base_url=config.base_url, tracker=tracker,
        unsubscribe_token=lambda sid, lid: unsubscribe_token(secret, sid, lid),
        preferences_token=preferences.token_maker(engine, secret),
        newsletter_name=config.newsletter_name, instance_key=secret,
        precedence_bulk=(config.precedence or "").strip().lower() == "bulk",
        unsubscribe_mailto=config.unsubscribe_mailto, envelope_from=bounce, signer=make_signer(config),
        copy_address=copy_address, verp=verp, feedback_id=feedback,
    )


def _feedback_headers(engine: Engine, campaign, config: Config, secret: bytes, bounce: str | None):
    """(copy_address, verp, feedback_id) for the message factory: each copy names itself with a
    signed ``bounce_address`` + token (the From address when no bounce address is set), used as
    its envelope sender when ``verp`` is on and a bounce address is configured (a plain From
    mailbox may not accept ``+`` addresses); Feedback-ID is campaign:list:newsletter:domain.

    The token grows with the ids: a bounce address too long to carry it for today's highest
    subscriber id is refused up front; a copy for a much later id that would not fit goes out
    with the plain envelope (``copy_address`` returns None) rather than fail."""
    from ..feedback.verp import feedback_id, verp_address
    from ..store.models import Subscriber

    base = bounce or parseaddr(campaign.from_address)[1]
    verp = bool(config.verp and bounce)
    with transaction(engine) as conn:
        top = conn.execute(select(func.max(Subscriber.__table__.c.id))).scalar() or 1
    try:
        verp_address(base, secret, campaign.id, top)
    except ValueError as e:
        if verp:
            raise ConfigError(f"bounce_address: {e} (shorten it, or set verp = false)") from None
        copy_address = None
    else:
        def copy_address(sid: int) -> str | None:
            try:
                return verp_address(base, secret, campaign.id, sid)
            except ValueError:
                return None
    domain = parseaddr(campaign.from_address)[1].rpartition("@")[2]
    return copy_address, verp, lambda slug: feedback_id(campaign.id, slug, domain)


def make_transports(config: Config, *, smtp: str | None = None, tls: str | None = None, outbox: str | None = None) -> list:
    """The transports of a send: ``--outbox DIR``, ``--smtp URL|NAME|a,b``, the configured default,
    or — when no SMTP server is configured at all — the outbox folder (nothing reaches real people)."""
    from .smtp import SMTPTransport, settings_for

    if outbox is not None and smtp is not None:
        raise ConfigError("--outbox and --smtp exclude each other")
    if outbox is not None:
        return [OutboxTransport(outbox)]
    servers = settings_for(config, smtp, tls=tls, timeout=config.smtp_timeout)
    if not servers:
        return [OutboxTransport(config.outbox)]
    return [SMTPTransport(s) for s in servers]


def local_links_problem(base_url: str) -> str | None:
    """Why readers could not follow links under ``base_url`` (not https, or a loopback host), or None."""
    import ipaddress
    from urllib.parse import urlsplit

    parts = urlsplit(base_url or "")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        return "has no host"
    if host == "localhost" or host.endswith(".localhost"):
        return "points at this machine"
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None and (ip.is_loopback or ip.is_unspecified or ip.is_link_local):
        return "points at this machine"
    if parts.scheme != "https":
        return "is not https"
    return None


def check_public_links(config: Config, transports: Sequence, allow_local_links: bool | None = None) -> None:
    """Refuse an SMTP send whose unsubscribe and web-version links would be dead for readers.

    Outbox sends (files for a local look) pass; ``allow_local_links`` (default: the config key)
    lets a local test through."""
    from .smtp import SMTPTransport

    allow = config.allow_local_links if allow_local_links is None else allow_local_links
    if allow or not any(isinstance(t, SMTPTransport) for t in transports):
        return
    if local_links_problem(config.base_url):
        raise ConfigError(
            f"base_url is {config.base_url}: unsubscribe links would not work for readers; set NEWSLETTER_BASE_URL "
            "to your public https address, or pass --allow-local-links (config allow_local_links) for a local test")


def _lane_plan(transports: list, concurrency: int) -> list:
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


def _refuse_user_pause(cid: int, status: str | None, reason: str | None) -> None:
    """A campaign someone paused stays paused until they resume it; one the sender auto-paused
    (servers failing) may be continued by ``send`` (the summary says so)."""
    if status == "paused" and not (reason or "").startswith("auto-paused"):
        raise StateError(f"campaign {cid} is paused ({reason or 'paused by the user'}): "
                         f"run `newsletter campaigns resume {cid}` first")


def send_campaign(
    engine: Engine,
    campaign_id: int | str,
    config: Config,
    *,
    transport=None,
    smtp: str | None = None,
    tls: str | None = None,
    outbox: str | None = None,
    concurrency: int | None = None,
    rate: str | None = None,
    resend_ambiguous: bool = False,
    progress_callback: Callable[[Progress], None] | None = None,
    stop_event: threading.Event | None = None,
    worker_id: str | None = None,
    batch_size: int | None = None,
    wait_deferred: bool = True,
    allow_local_links: bool | None = None,
    clock: Callable[[], datetime] | None = None,
) -> SendSummary:
    """Send (or continue sending) a campaign through the ledger and return a summary.

    Creates the ledger from the subscribers active right now on first call, then loops claim →
    build → send → record until nothing is left, the campaign is paused/cancelled (by anyone),
    ``stop_event`` is set (claimed rows go back to pending), or the servers keep failing (the
    campaign auto-pauses). Deferred copies are waited for and retried unless ``wait_deferred``
    is False. Rows left ``sending`` by a dead worker are reported as ambiguous and not resent
    unless ``resend_ambiguous``. A campaign paused by a user is refused (StateError: resume it
    first); an auto-paused one is continued and ``SendSummary.resumed_from`` names the old
    reason. ``transport`` may be one transport or a list; by default it
    comes from ``smtp``/``outbox``/config (see :func:`make_transports`). An SMTP send refuses a
    ``base_url`` readers cannot reach (see :func:`check_public_links`) unless ``allow_local_links``
    (default: ``config.allow_local_links``). ``clock`` (aware UTC datetimes; the worker's, in
    tests injected) says which UTC day the warm-up quota is for and stamps the ledger's sent_at."""
    t0 = time.monotonic()
    require_current_schema(engine)
    campaign = get_campaign(engine, campaign_id)
    cid = campaign.id
    if campaign.status == "cancelled":
        raise StateError(f"campaign {cid} was cancelled; nothing more is sent")
    if campaign.status == "finished" and not resend_ambiguous:
        raise StateError(f"campaign {cid} is already finished (see `newsletter campaigns show {cid}`)")
    _refuse_user_pause(cid, campaign.status, campaign.status_reason)
    if campaign.status == "scheduled" and campaign.scheduled_at is not None and campaign.scheduled_at > utcnow():
        raise StateError(f"campaign {cid} is scheduled for {campaign.scheduled_at.isoformat()}: a `newsletter worker` "
                         f"sends it then; to send it now, run `newsletter send {cid} --now`")
    concurrency = int(concurrency or config.concurrency or 1)
    if concurrency < 1 or concurrency > 256:
        raise ConfigError(f"concurrency {concurrency}: expected 1 to 256")
    from ..feedback.record import Rules, check_campaign_rates

    rules = Rules.from_config(config)  # bad bounce settings stop the send before anything goes out
    limiter = RateLimiter.from_specs(rate if rate is not None else config.rate, config.rate_window,
                                     per_domain=config.rate_per_domain)
    from .warmup import gate_for  # the warm-up quota: claims stop at today's allowance (issue 20)
    warmup = gate_for(config, clock)
    if config.rate_window:  # provider quotas remember what was sent before this process started
        from .ratelimit import parse_rates

        longest = max(r.period for r in parse_rates(config.rate_window))
        now = utcnow()
        with transaction(engine) as conn:
            limiter.seed((now - t).total_seconds() for t in q.sent_since(conn, now - timedelta(seconds=longest)))
    if transport is None:
        transports = make_transports(config, smtp=smtp, tls=tls, outbox=outbox)
    else:
        transports = list(transport) if isinstance(transport, (list, tuple)) else [transport]
    check_public_links(config, transports, allow_local_links)
    from .domain import auth_preflight  # DKIM d= vs From: warn once per campaign, refuse with strict_auth
    from .smtp import SMTPTransport
    auth_preflight(config, cid, campaign.from_address, smtp=any(isinstance(t, SMTPTransport) for t in transports))
    factory = message_factory(engine, campaign, config)
    worker = worker_id or new_worker_id()
    plan = _lane_plan(transports, concurrency)

    # Connect (and log in) before touching the ledger: a refused login changes nothing.
    sessions = []
    try:
        for t in plan:
            s = t.session()
            if not any(t is tt for tt, _ in sessions):
                try:
                    s.connect()
                except ConnectFailed as e:
                    if len(transports) == 1:
                        raise DispatchError(str(e)) from None
                    log.warning("%s", e)
            sessions.append((t, s))
    except BaseException:
        for _, s in sessions:
            s.close()
        raise

    live = _Liveness(engine, cid, worker)
    try:
        live.start()
    except BaseException:
        for _, s in sessions:
            s.close()
        raise
    run = _Run(engine, config, cid, worker, factory, transports, limiter, stop_event)
    run.commit.clock = clock
    ambiguous: list[str] = []
    ambiguous_resent: list[str] = []
    resent = 0
    lanes: list[_Lane] = []
    stopped: str | None = None
    skipped_now = 0
    seen_ambiguous: set[int] = set()
    resumed_from: str | None = None

    def recover(conn) -> int:
        """Rows of workers that are gone: claimed → pending; sending → ambiguous (reported; requeued
        when resend_ambiguous). Returns how many ambiguous rows were requeued."""
        holders = q.workers_holding_rows(conn, cid)
        dead = [w for w in holders if not live.alive(w)]
        for w in dead:
            q.release_claimed(conn, cid, w)
        live_workers = [w for w in holders if w not in dead]
        amb = [a for a in q.ambiguous_rows(conn, cid, live_workers + [worker]) if a.id not in seen_ambiguous]
        for a in amb:
            seen_ambiguous.add(a.id)
            ambiguous.append(a.email)
        if resend_ambiguous and amb:
            n = q.requeue_ambiguous(conn, [a.id for a in amb])
            ambiguous_resent.extend(a.email for a in amb)
            return n
        return 0

    try:
        with transaction(engine) as conn:
            status, status_reason = conn.execute(select(q.campaigns.c.status, q.campaigns.c.status_reason)
                                                 .where(q.campaigns.c.id == cid)).one()
            if status == "cancelled":
                raise StateError(f"campaign {cid} was cancelled; nothing more is sent")
            _refuse_user_pause(cid, status, status_reason)
            if status == "paused":
                resumed_from = status_reason
            row = conn.execute(select(q.campaigns.c.ledger_created_at).where(q.campaigns.c.id == cid)).scalar()
            if row is None:
                q.create_ledger(conn, cid)
                if not q.counts_by_state(conn, cid):
                    slugs = ", ".join(sorted(campaign_lists(engine, cid).values())) or "none"
                    raise DispatchError(f"campaign {cid}: no active subscribers on its list(s) {slugs}; nothing to send")
                conn.execute(q.campaigns.update().where(q.campaigns.c.id == cid, q.campaigns.c.ledger_created_at.is_(None))
                             .values(ledger_created_at=utcnow()))
            resent += recover(conn)
            if status == "finished":
                if not resent:
                    raise StateError(f"campaign {cid} is already finished and has no ambiguous copies to resend")
            if status != "running":
                transition(conn, cid, "running", reason="")

        for n, (t, s) in enumerate(sessions):
            lane = _Lane(run, t, s, n)
            lanes.append(lane)
        for lane in lanes:
            lane.start()

        batch = int(batch_size or max(50, concurrency * 25))
        low_water = max(concurrency * 4, batch // 2)
        last_progress = 0.0
        last_status_check = 0.0
        last_rates_check = 0.0
        while True:
            if run.fatal is not None:
                break
            if run.external_stop.is_set():
                stopped = "stop requested"
                break
            if run.stop_all.is_set():
                stopped = run.pause_reason or "stopped"
                break
            now_m = time.monotonic()
            if now_m - last_status_check > 0.25:
                last_status_check = now_m
                live.beat()
                with transaction(engine) as conn:
                    if now_m - last_rates_check > RATES_CHECK_S:  # bounces recorded elsewhere count too
                        last_rates_check = now_m
                        check_campaign_rates(conn, cid, rules)
                    st = q.campaign_status(conn, cid)
                if st in ("paused", "cancelled"):
                    stopped = st
                    break
            if progress_callback and now_m - last_progress > 0.5:
                last_progress = now_m
                _progress(engine, run, cid, t0, progress_callback)
            if run.queue.qsize() >= low_water:
                run.external_stop.wait(0.01)
                continue
            with transaction(engine) as conn:
                room = batch if warmup is None else min(batch, warmup.room(conn))
                ids = q.claim_batch(conn, cid, worker, room) if room > 0 else []
                if ids:
                    skipped_now += q.skip_unwanted(conn, cid, ids)
                    rows = q.claimed_recipients(conn, ids)
                else:
                    rows = []
            for r in rows:
                run.queue.put(_Item(r.id, Recipient(r.subscriber_id, r.list_id, r.email, r.name or "",
                                                    r.attributes or {}), r.attempts, r.first_deferred_at,
                                    time.monotonic()))
            if rows or ids:
                continue
            # Nothing claimable now: wait for lanes to drain, then for deferred rows or the end.
            if not run.queue.empty() or run.in_flight or run.uncommitted:
                run.external_stop.wait(0.01)
                continue
            with transaction(engine) as conn:
                counts = q.counts_by_state(conn, cid)
                retry_at = q.next_retry_at(conn, cid)
                others = [w for w in q.workers_holding_rows(conn, cid) if w != worker and live.alive(w)]
            with transaction(engine) as conn:  # a worker that died meanwhile: its rows come back
                again = recover(conn)
                resent += again
            if warmup is not None and (counts.get("pending") or (retry_at is not None and retry_at <= utcnow())):
                with transaction(engine) as conn:
                    if warmup.room(conn) == 0:  # today's quota is used up: pause until the next UTC day
                        run.pause_reason = warmup.pause_reason(conn)
                if run.pause_reason:
                    stopped = run.pause_reason
                    break
            if again or counts.get("pending") or (counts.get("claimed", 0) and not others):
                run.external_stop.wait(0.01)
                continue
            if counts.get("deferred") and retry_at is not None:
                if not wait_deferred:
                    stopped = "deferred copies wait for a later retry"
                    break
                wait = max(0.0, (retry_at - utcnow()).total_seconds())
                if progress_callback:
                    _progress(engine, run, cid, t0, progress_callback, note=f"waiting {wait:.0f} s to retry {counts['deferred']} deferred")
                run.external_stop.wait(min(max(wait, 0.01), 1.0))
                continue
            if others:
                stopped = "other workers are finishing the campaign"
                break
            break
    except BaseException:  # e.g. KeyboardInterrupt in this thread: the lanes stop at once too
        stopped = stopped or "interrupted"
        raise
    finally:
        run.feeder_done.set()
        if stopped or run.fatal is not None:
            run.stop_all.set()
        for lane in lanes:
            lane.join()
        if not lanes:
            for _, s in sessions:
                s.close()
        try:
            with transaction(engine) as conn:
                q.release_claimed(conn, cid, worker, cancelled=q.campaign_status(conn, cid) == "cancelled")
                if run.pause_reason:
                    try:
                        transition(conn, cid, "paused", reason=run.pause_reason, allow_from=("running",))
                    except StateError:
                        pass
                elif run.fatal is None and stopped is None:
                    counts = q.counts_by_state(conn, cid)
                    others = [w for w in q.workers_holding_rows(conn, cid) if w != worker and live.alive(w)]
                    if not any(counts.get(s) for s in ("pending", "claimed", "deferred")) and not others:
                        try:
                            transition(conn, cid, "finished", allow_from=("running",))
                        except StateError:
                            pass
        finally:
            run.commit.close()
            live.stop()
    if run.fatal is not None:
        if isinstance(run.fatal, NewsletterError):
            raise run.fatal
        raise DispatchError(f"campaign {cid}: sending stopped: {type(run.fatal).__name__}: {run.fatal}") from run.fatal
    with transaction(engine) as conn:
        counts = q.counts_by_state(conn, cid)
        st_row = conn.execute(select(q.campaigns.c.status, q.campaigns.c.status_reason).where(q.campaigns.c.id == cid)).one()
    if progress_callback:
        _progress(engine, run, cid, t0, progress_callback)
    return SendSummary(
        campaign_id=cid, status=st_row[0], status_reason=st_row[1], counts=counts,
        transport=", ".join(t.describe() for t in transports), worker_id=worker,
        sent_now=run.sent, failed_now=run.failed, deferred_now=run.deferred, skipped_now=skipped_now + run.skipped_now,
        suppressed=run.suppressed, ambiguous=ambiguous, resent_ambiguous=resent, ambiguous_resent=ambiguous_resent,
        elapsed=time.monotonic() - t0, stopped=stopped, resumed_from=resumed_from,
    )


def _progress(engine, run: _Run, cid: int, t0: float, cb, note: str = "") -> int:
    with transaction(engine) as conn:
        counts = q.counts_by_state(conn, cid)
    total = sum(counts.values())
    done = counts.get("sent", 0) + counts.get("failed", 0) + counts.get("skipped", 0)
    elapsed = time.monotonic() - t0
    rate = run.sent / elapsed if elapsed > 0 else 0.0
    left = total - done
    eta = left / rate if rate > 0 else None
    try:
        cb(Progress(cid, total, done, counts.get("sent", 0), counts.get("failed", 0), counts.get("deferred", 0),
                    counts.get("skipped", 0), run.sent, elapsed, rate, eta, note))
    except Exception:  # a display problem must never stop a send
        log.debug("progress callback failed", exc_info=True)
    return total


# --- one-off messages ---------------------------------------------------------------------------
@dataclass
class OneResult:
    message_id: str
    reply: str
    transport: str


def send_one(
    config: Config,
    to: str,
    subject: str,
    html: str | None,
    text: str,
    *,
    from_address: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    smtp: str | None = None,
    tls: str | None = None,
    outbox: str | None = None,
    transport=None,
    images: Sequence = (),
) -> OneResult:
    """Send one message now, outside any campaign (test sends, double opt-in confirmations).

    ``images`` (``compose.model.InlineImage``) become CID parts next to the HTML
    (``multipart/related``), e.g. ``compose.embed_relative_assets(digest).images``.

    Uses the same transports as campaigns (the outbox when no SMTP is configured) and DKIM when
    configured. Raises InvalidInput for bad headers or addresses and DispatchError when the
    server does not take it (the message names the reply, never the password)."""
    from ..compose.headers import check_header_name
    from .dkim import make_signer

    from_address = from_address or config.from_address
    for k in headers or {}:
        check_header_name(k)
    for k, v in {"To": to, "Subject": subject, **(headers or {})}.items():
        check_header_value(k, v)
    format_address(from_address, "From")
    if reply_to:
        format_address(reply_to, "Reply-To")
    rcpt = parseaddr(to)[1]
    if not rcpt or "@" not in rcpt:
        raise InvalidInput(f"recipient {to!r} is not an email address")
    domain = parseaddr(from_address)[1].rsplit("@", 1)[-1]
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msgid = make_msgid(domain=domain)
    msg["Message-ID"] = msgid
    if reply_to:
        msg["Reply-To"] = reply_to
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(text, cte="quoted-printable")
    if html:
        msg.add_alternative(titled(html, subject), subtype="html", cte="quoted-printable")
        if images:
            html_part = msg.get_payload()[1]
            for img in images:
                check_header_value("image cid", img.cid)
                maintype, _, subtype = img.content_type.partition("/")
                html_part.add_related(img.data, maintype=maintype, subtype=subtype or "octet-stream",
                                      cid=f"<{img.cid}>", filename=img.filename, disposition="inline")
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    signer = make_signer(config)
    if signer is not None:
        data = signer(data) + data
    from .personalize import Built

    built = Built(parseaddr(config.bounce_address or "")[1] or parseaddr(from_address)[1], rcpt, data, msgid)
    out, where = _deliver(config, built, transport=transport, smtp=smtp, tls=tls, outbox=outbox, what="message")
    return OneResult(msgid, out.reply, where)


def send_test(engine: Engine, campaign_id: int | str, config: Config, to: str, *, smtp: str | None = None,
              tls: str | None = None, outbox: str | None = None, transport=None) -> OneResult:
    """Send one copy of a campaign to ``to`` (subject prefixed ``[TEST]``); the ledger is not touched.

    Merge tags are filled from the subscriber with that address when there is one, else with
    the address alone; the unsubscribe link is a real, signed one only for a real subscriber."""
    require_current_schema(engine)
    campaign = get_campaign(engine, campaign_id)
    rcpt = parseaddr(to)[1]
    check_header_value("To", to)
    if not rcpt or "@" not in rcpt:
        raise InvalidInput(f"test address {to!r} is not an email address")
    from ..store.models import Subscriber

    subs = Subscriber.__table__
    with transaction(engine) as conn:
        row = conn.execute(select(subs.c.id, subs.c.name, subs.c.attributes).where(subs.c.email_key == rcpt.lower())).first()
    campaign.subject = "[TEST] " + campaign.subject
    campaign.html = titled(campaign.html, campaign.subject)  # the title follows the subject sent
    factory = message_factory(engine, campaign, config)
    lists = campaign_lists(engine, campaign.id)
    lid = min(lists) if lists else 0
    r = Recipient(row.id if row else 0, lid, rcpt, (row.name if row else "") or "", (row.attributes if row else {}) or {})
    built = factory.build(r)
    out, where = _deliver(config, built, transport=transport, smtp=smtp, tls=tls, outbox=outbox, what="test message")
    return OneResult(built.message_id, out.reply, where)


def _deliver(config: Config, built, *, transport, smtp, tls, outbox, what: str) -> tuple[Outcome, str]:
    """Send one built message on a fresh session; DispatchError unless the server took it."""
    t = transport if transport is not None else make_transports(config, smtp=smtp, tls=tls, outbox=outbox)[0]
    session = t.session()
    try:
        try:
            session.connect()
        except ConnectFailed as e:
            raise DispatchError(str(e)) from None
        out = session.send(built)
    finally:
        session.close()
    if out.fatal:
        raise DispatchError(out.fatal)
    if out.state != "sent":
        raise DispatchError(f"{t.describe()} did not take the {what} to {built.rcpt}: {out.reply}")
    return out, t.describe()
