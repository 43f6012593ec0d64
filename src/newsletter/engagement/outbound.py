"""Outgoing event webhooks: subscribed, confirmed, unsubscribed, bounced, complained, opened and
clicked, POSTed as signed JSON to the operator's ``event_webhooks`` URLs, retried with backoff,
never in a sender's way.

Events are read from what the database already records (subscriptions, bounce events,
engagement events) by a collector with a cursor per source, so no code path that changes a
subscriber has to remember to emit anything. The collector re-reads a short overlap each time
(rows committed late) and ``(url, event_key)`` is unique, so an event is queued once. The
worker runs collection and delivery in a thread of its own (``event_webhook_interval``);
``newsletter events deliver`` runs one round by hand.

Each POST carries ``Newsletter-Event``, ``Newsletter-Delivery`` (a stable id: retries repeat
it) and ``Newsletter-Signature: t=<unix time>,v1=<hex HMAC-SHA256 of "<t>.<body>">`` under
``NEWSLETTER_EVENT_WEBHOOK_SECRET``; :func:`verify_signature` is the receiver's check.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Callable

from sqlalchemy import and_, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..config import Config
from ..errors import ConfigError, InvalidInput
from ..periodic import Periodic
from ..store.bounce_models import BounceEvent
from ..store.db import table_of, transaction
from ..store.engagement_models import EngagementEvent, TrackedLink
from ..store.models import MailingList, Subscriber, Subscription
from ..store.outbound_models import EventCursor, WebhookDelivery

log = logging.getLogger("newsletter.webhooks")
UTC = timezone.utc
EVENTS = ("subscribed", "confirmed", "unsubscribed", "bounced", "complained", "opened", "clicked")
OVERLAP = timedelta(minutes=5)  # re-read window for rows committed after the cursor moved
ID_OVERLAP = 1000
PAGE = 2000
BACKOFF_FIRST = 30.0
BACKOFF_MAX = 6 * 3600.0

deliveries_t = table_of(WebhookDelivery)
cursors_t = table_of(EventCursor)
subs_t, people_t, lists_t = table_of(Subscription), table_of(Subscriber), table_of(MailingList)
bounces_t, events_t, links_t = table_of(BounceEvent), table_of(EngagementEvent), table_of(TrackedLink)


def _utc(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


def check_settings(config: Config) -> list[str]:
    """The events to send (ConfigError naming the key when a setting is wrong)."""
    for url in config.event_webhooks:
        if not (url.startswith("https://") or url.startswith("http://")) or any(c in url for c in " \r\n\t"):
            raise ConfigError(f"event_webhooks: {url!r} is not an http(s) URL")
    events = list(config.event_webhook_events or EVENTS)
    unknown = [e for e in events if e not in EVENTS]
    if unknown:
        raise ConfigError(f"event_webhook_events: unknown event {unknown[0]!r} (known: {', '.join(EVENTS)})")
    if config.event_webhooks and not config.event_webhook_secret:
        raise ConfigError("event_webhooks is set but NEWSLETTER_EVENT_WEBHOOK_SECRET is not: receivers could not "
                          "tell our posts from forged ones")
    return events


def sign(secret: str, body: bytes, at: int) -> str:
    """The ``Newsletter-Signature`` header value for ``body`` sent at unix time ``at``."""
    mac = hmac.new(secret.encode("utf-8"), str(at).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={mac}"


def verify_signature(secret: str, header: str, body: bytes, *, now: float | None = None, tolerance: float = 300) -> None:
    """Raise InvalidInput unless ``header`` signs ``body`` under ``secret`` within ``tolerance`` seconds."""
    parts = dict(p.split("=", 1) for p in (header or "").split(",") if "=" in p)
    try:
        at = int(parts["t"])
    except (KeyError, ValueError):
        raise InvalidInput("Newsletter-Signature: no timestamp") from None
    if abs((time.time() if now is None else now) - at) > tolerance:
        raise InvalidInput("Newsletter-Signature: too old or from the future (a replay?)")
    if not hmac.compare_digest(sign(secret, body, at).split("v1=", 1)[1], parts.get("v1", "")):
        raise InvalidInput("Newsletter-Signature: does not match the body")


# --- collecting ---------------------------------------------------------------------------------

def _cursor(conn, source: str):
    return conn.execute(select(cursors_t.c.at, cursors_t.c.last_id).where(cursors_t.c.source == source)).first()


def _save_cursor(conn, source: str, at: datetime | None, last_id: int, existed: bool) -> None:
    if existed:
        conn.execute(update(cursors_t).where(cursors_t.c.source == source).values(at=at, last_id=last_id))
    else:
        conn.execute(cursors_t.insert().values(source=source, at=at, last_id=last_id))


def _queue(conn, urls: list[str], events: list[tuple[str, str, dict]], now: datetime) -> int:
    """Insert (event, key, payload) for every URL, skipping what is already queued; returns how many."""
    if not events or not urls:
        return 0
    rows = [dict(url=u, event=ev, event_key=key[:200], created_at=now, attempts=0, next_attempt_at=now, last_error="",
                 payload=json.dumps({"event": ev, "id": key, "data": data}, separators=(",", ":"), default=str,
                                    ensure_ascii=False))
            for ev, key, data in events for u in urls]
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(deliveries_t).on_conflict_do_nothing(index_elements=["url", "event_key"])
    return len(conn.execute(stmt.returning(deliveries_t.c.id), rows).all())  # rowcount is -1 for a batch on psycopg


def _subscription_events(conn, since: datetime, wanted: set[str]) -> tuple[list, datetime | None]:
    s, p, lt = subs_t.c, people_t.c, lists_t.c
    out: list = []
    newest = None
    after = (since, 0)
    while True:
        rows = conn.execute(select(s.id, s.updated_at, s.created_at, s.confirmed_at, s.unsubscribed_at, s.status,
                                   p.email, lt.slug).select_from(subs_t.join(people_t, p.id == s.subscriber_id)
                                                                 .join(lists_t, lt.id == s.list_id))
                            .where(or_(s.updated_at > after[0], and_(s.updated_at == after[0], s.id > after[1])))
                            .order_by(s.updated_at, s.id).limit(PAGE)).all()
        for sid, upd, created, confirmed, unsub, status, email, slug in rows:
            newest = upd if newest is None or upd > newest else newest
            for ev, at in (("subscribed", created), ("confirmed", confirmed), ("unsubscribed", unsub)):
                if ev in wanted and at is not None and at >= since:
                    out.append((ev, f"{ev}:{sid}:{at.timestamp():.6f}",
                                {"email": email, "list": slug, "status": status, "occurred_at": at.isoformat()}))
        if len(rows) < PAGE:
            return out, newest
        after = (rows[-1][1], rows[-1][0])


def _bounce_events(conn, after_id: int, wanted: set[str]) -> tuple[list, int]:
    b = bounces_t.c
    out, last = [], after_id
    rows = conn.execute(select(b.id, b.kind, b.status, b.recipient, b.campaign_id, b.subscriber_id, b.occurred_at)
                        .where(b.id > after_id - ID_OVERLAP, b.subscriber_id.is_not(None),
                               b.kind.in_(("hard", "soft", "complaint"))).order_by(b.id)).all()
    for bid, kind, status, email, cid, sid, at in rows:
        last = max(last, bid)
        ev = "complained" if kind == "complaint" else "bounced"
        if ev in wanted:
            out.append((ev, f"{ev}:{bid}", {"email": email, "kind": kind, "status": status, "campaign_id": cid,
                                            "occurred_at": at.isoformat()}))
    return out, last


def _engagement_events(conn, after_id: int, wanted: set[str]) -> tuple[list, int]:
    e, p, lk = events_t.c, people_t.c, links_t.c
    out, last = [], after_id
    rows = conn.execute(select(e.id, e.kind, e.agent, e.campaign_id, e.occurred_at, p.email, lk.url)
                        .select_from(events_t.join(people_t, p.id == e.subscriber_id).outerjoin(
                            links_t, and_(lk.campaign_id == e.campaign_id, lk.idx == e.link_idx)))
                        .where(e.id > after_id - ID_OVERLAP).order_by(e.id).limit(50 * PAGE)).all()
    for eid, kind, agent, cid, at, email, url in rows:
        last = max(last, eid)
        ev = "opened" if kind == "open" else "clicked"
        if ev in wanted:
            data = {"email": email, "campaign_id": cid, "agent": agent, "occurred_at": at.isoformat()}
            if ev == "clicked":
                data["url"] = url
            out.append((ev, f"{ev}:{eid}", data))
    return out, last


def collect(engine, config: Config, *, now: datetime | None = None) -> int:
    """Queue the events recorded since the last run for every configured URL; returns how many
    deliveries were queued. The first run only sets the cursors (no flood of past history)."""
    wanted = set(check_settings(config))
    urls = list(config.event_webhooks)
    now = _utc(now)
    queued = 0
    with transaction(engine) as conn:
        cur = _cursor(conn, "subscriptions")
        if cur is None:
            _save_cursor(conn, "subscriptions", now, 0, False)
        else:
            events, newest = _subscription_events(conn, cur.at - OVERLAP, wanted)
            queued += _queue(conn, urls, events, now)
            if newest is not None and newest > cur.at:
                _save_cursor(conn, "subscriptions", newest, 0, True)
        for source, read, table in (("bounces", _bounce_events, bounces_t), ("engagement", _engagement_events, events_t)):
            cur = _cursor(conn, source)
            if cur is None:
                top = conn.execute(select(table.c.id).order_by(table.c.id.desc()).limit(1)).scalar() or 0
                _save_cursor(conn, source, None, int(top), False)
                continue
            events, last = read(conn, int(cur.last_id), wanted)
            queued += _queue(conn, urls, events, now)
            if last > cur.last_id:
                _save_cursor(conn, source, None, last, True)
    return queued


# --- delivering ---------------------------------------------------------------------------------

@dataclass
class DeliverResult:
    """What one delivery round did."""

    delivered: int = 0
    retrying: int = 0
    given_up: int = 0


def _post(url: str, body: bytes, headers: dict, timeout: float) -> str | None:
    """POST; None on a 2xx answer, else a one-line reason."""
    req = urllib.request.Request(url, data=body, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (the operator's own URL)
            resp.read(1024)
            return None if 200 <= resp.status < 300 else f"HTTP {resp.status}"
    except urllib.error.HTTPError as e:
        return f"HTTP {e.code}"
    except (urllib.error.URLError, OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        return f"{type(reason).__name__}: {reason}"[:300]


def backoff(attempts: int) -> timedelta:
    """Wait before retry number ``attempts`` (1-based): 30 s doubling, at most 6 hours."""
    return timedelta(seconds=min(BACKOFF_MAX, BACKOFF_FIRST * 2 ** max(0, attempts - 1)))


def deliver(engine, config: Config, *, now: datetime | None = None, limit: int = 200,
            post: Callable[[str, bytes, dict, float], str | None] | None = None) -> DeliverResult:
    """POST the deliveries that are due; a failure is retried after :func:`backoff` until
    ``event_webhook_max_attempts``. ``post`` is the transport (tests may pass one that fails)."""
    check_settings(config)
    post = post or _post
    now = _utc(now)
    result = DeliverResult()
    d = deliveries_t.c
    with transaction(engine) as conn:
        due = conn.execute(select(d.id, d.url, d.event, d.payload, d.attempts).where(
            d.delivered_at.is_(None), d.failed_at.is_(None), d.next_attempt_at <= now).order_by(d.id).limit(limit)).all()
    down: set[str] = set()  # a URL that failed this round waits for the next one (its other events too)
    for did, url, event, payload, attempts in due:
        if url in down:
            continue
        body = payload.encode("utf-8")
        headers = {"Content-Type": "application/json", "User-Agent": "newsletter-webhooks/1",
                   "Newsletter-Event": event, "Newsletter-Delivery": str(did),
                   "Newsletter-Signature": sign(config.event_webhook_secret or "", body, int(time.time()))}
        error = post(url, body, headers, config.event_webhook_timeout)
        with transaction(engine) as conn:
            if error is None:
                conn.execute(update(deliveries_t).where(d.id == did).values(delivered_at=now, attempts=attempts + 1,
                                                                            last_error=""))
                result.delivered += 1
            elif attempts + 1 >= config.event_webhook_max_attempts:
                conn.execute(update(deliveries_t).where(d.id == did).values(failed_at=now, attempts=attempts + 1,
                                                                            last_error=error))
                result.given_up += 1
            else:
                conn.execute(update(deliveries_t).where(d.id == did).values(
                    attempts=attempts + 1, last_error=error, next_attempt_at=now + backoff(attempts + 1)))
                result.retrying += 1
        if error is not None:
            down.add(url)
    return result


def pending(engine) -> dict[str, int]:
    """{"pending", "delivered", "failed"}: counts of queued deliveries (``events status``)."""
    d = deliveries_t.c
    with transaction(engine) as conn:
        rows = conn.execute(select(d.delivered_at.is_not(None), d.failed_at.is_not(None))).all()
    out = {"pending": 0, "delivered": 0, "failed": 0}
    for delivered, failed in rows:
        out["delivered" if delivered else "failed" if failed else "pending"] += 1
    return out


class OutboundPoller(Periodic):
    """The worker's webhook thread: collect and deliver every ``event_webhook_interval`` seconds.
    Failures are warning lines; the worker goes on sending."""

    name = "event-webhooks"

    def __init__(self, engine, config: Config, emit: Callable[[str], None]):
        super().__init__(config.event_webhook_interval)
        self.engine, self.config, self.emit = engine, config, emit

    @classmethod
    def for_config(cls, engine, config: Config, emit: Callable[[str], None]) -> "OutboundPoller | None":
        if not config.event_webhooks:
            return None
        check_settings(config)  # a bad setting stops the worker at start, in one line
        return cls(engine, config, emit)

    def run_once(self) -> None:
        try:
            collect(self.engine, self.config)
            r = deliver(self.engine, self.config)
            if r.retrying or r.given_up:
                self.emit(f"warning: event webhooks: {r.delivered} delivered, {r.retrying} to retry, {r.given_up} given up")
        except Exception as e:  # a database hiccup: say it, keep the worker alive
            self.emit(f"warning: event webhooks failed: {e if str(e) else type(e).__name__}")
            log.debug("event webhooks failed", exc_info=True)
