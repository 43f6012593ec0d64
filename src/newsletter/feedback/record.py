"""Record feedback events and apply the rules, in one place, whatever the source.

``record_bounces`` stores each :class:`~.model.Bounce` once (``(report_id, recipient)`` is
unique), ties it to a subscriber, and acts:

- hard → every subscription ``bounced``, the address suppressed;
- soft → counted (except security/policy statuses ``x.7.x``: a block of our mail says nothing
  about the reader's mailbox, so it is stored and never counted); ``soft_bounce_limit`` of them within ``soft_bounce_window`` act like a hard
  bounce. The count restarts after proof that mail reaches the person: a positive DSN, or a
  later copy accepted by our server with no bounce reported ``soft_bounce_reset_after`` after
  it (see :func:`~newsletter.store.bounces.soft_bounce_count`);
- complaint → every subscription ``complained``, the address suppressed with reason ``complaint``;
- auto-reply, delivered, unknown → stored, nothing changes.

A report is tied to a subscriber by its signed VERP token, else by its recipient address — and
then only when we ever mailed that address: anything else is stored as ``unmatched`` and never
acted on. After hard bounces and complaints the campaign's rates are checked and a running
campaign past ``complaint_pause_rate`` / ``bounce_pause_rate`` (after ``pause_min_sent``
copies) is paused, with the reason stored on it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Iterable

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import ConfigError, InvalidInput
from ..store import bounces as sql
from ..store.db import transaction
from ..store.leaving import leave_all_lists
from ..store.models import utcnow
from ..store.optin import parse_age
from ..store.suppressions import suppress_in
from .model import Bounce, BounceKind, BounceSource

log = logging.getLogger(__name__)

# A campaign paused by the rate guard (pause kind ``bounce-guard``) needs a person to look: `send`
# refuses it until `campaigns resume` (unlike an automatic pause, which `send` continues). The
# prefix begins the reason shown to people; code matches on the pause kind.
RATE_PAUSE_PREFIX = "paused by the bounce guard"
RATE_PAUSE_OVERRIDE = "rate_pause_resumed"  # campaign meta key set by resume: the guard is off
MAX_REPORT_ID = 255


@dataclass
class RecordResult:
    """What one ``record_bounces`` call did."""

    new: int = 0  # events stored
    duplicates: int = 0  # already stored (same report, same recipient): nothing done again
    unmatched: int = 0  # stored, but tied to nobody we ever mailed: never acted on
    bounced: int = 0  # subscribers taken off their lists as bounced (hard, or soft limit reached)
    complained: int = 0  # subscribers taken off their lists after a complaint
    counted: int = 0  # soft bounces counted, below the limit
    suppressed: list[str] = field(default_factory=list)  # addresses newly suppressed
    paused: list[int] = field(default_factory=list)  # campaigns the rate guard paused
    event_ids: list[int] = field(default_factory=list)

    def as_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass(frozen=True)
class Rules:
    """The configured thresholds, checked once per call."""

    soft_limit: int
    soft_window: timedelta
    reset_after: timedelta
    complaint_pause_rate: float
    bounce_pause_rate: float
    pause_min_sent: int

    @classmethod
    def from_config(cls, config: Config | None) -> "Rules":
        c = config or Config()
        ages = {}
        for key in ("soft_bounce_window", "soft_bounce_reset_after"):
            try:
                ages[key] = parse_age(str(getattr(c, key)))
            except InvalidInput as e:
                raise ConfigError(f"{key}: {e}") from None
        if c.soft_bounce_limit < 1:
            raise ConfigError(f"soft_bounce_limit: {c.soft_bounce_limit} must be at least 1")
        for key in ("complaint_pause_rate", "bounce_pause_rate"):
            v = getattr(c, key)
            if not 0 <= v <= 1:
                raise ConfigError(f"{key}: {v} must be a fraction between 0 and 1 (0.003 means 0.3 %)")
        if c.pause_min_sent < 0:
            raise ConfigError(f"pause_min_sent: {c.pause_min_sent} must not be negative")
        return cls(c.soft_bounce_limit, ages["soft_bounce_window"], ages["soft_bounce_reset_after"],
                   c.complaint_pause_rate, c.bounce_pause_rate, c.pause_min_sent)


def report_id_for(b: Bounce) -> str:
    """The idempotency key of a report: its own id (Message-ID, provider event id), hashed when
    too long; for a report without one, a digest of what it says (the same report twice is the
    same key)."""
    rid = (b.report_id or "").strip()
    if not rid:
        parts = [b.source.value, b.provider or "", b.kind.value, (b.recipient or "").lower(), str(b.campaign_id),
                 str(b.subscriber_id), b.status or "", b.reason, b.occurred_at.isoformat() if b.occurred_at else ""]
        return "auto:" + hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]
    if len(rid) > MAX_REPORT_ID:
        return "sha256:" + hashlib.sha256(rid.encode()).hexdigest()
    return rid


def _when(b: Bounce, now: datetime) -> datetime:
    """When it happened: the report's time, never later than now (a forged future date would
    keep a soft bounce in the window for ever)."""
    t = b.occurred_at
    if t is None:
        return now
    if t.tzinfo is None:
        t = t.replace(tzinfo=timezone.utc)
    return min(t, now)


def _short(text: str, n: int = 200) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _attribute(conn, b: Bounce, recipient: str) -> tuple[int | None, int | None, str]:
    """(subscriber_id, campaign_id, recipient to store) for a report.

    A signed VERP token names both; a subscriber erased since leaves no address behind. Otherwise
    the recipient address names a subscriber we mailed, and a campaign id read from quoted
    headers is kept only when that campaign really sent them a copy."""
    if b.subscriber_id is not None:
        key = sql.subscriber_key(conn, b.subscriber_id)
        cid = b.campaign_id if b.campaign_id is not None and sql.campaign_exists(conn, b.campaign_id) else None
        if key is None:
            return None, cid, ""
        return b.subscriber_id, cid, recipient or key
    if not recipient:
        return None, None, ""
    sid = sql.mailed_subscriber(conn, recipient)
    cid = b.campaign_id
    if cid is not None and (sid is None or not sql.copy_exists(conn, cid, sid)):
        cid = None
    return sid, cid, recipient


def _take_off(conn, sid: int, status: str, reason: str, now: datetime, result: RecordResult) -> bool:
    """Every subscription of ``sid`` → ``status`` and the address suppressed; True when anything changed."""
    key = sql.subscriber_key(conn, sid)
    changed = leave_all_lists(conn, sid, status, now) > 0
    if key:
        _, created = suppress_in(conn, key, reason=reason)
        if created:
            result.suppressed.append(key)
        changed = changed or created
    return changed


def _apply(conn, b: Bounce, sid: int, rules: Rules, now: datetime, result: RecordResult) -> str:
    """Apply the rule for one new event; returns its outcome."""
    where = f"{b.source.value}" + (f", campaign {b.campaign_id}" if b.campaign_id else "")
    detail = _short(" ".join(x for x in (b.status or "", b.reason) if x), 160)
    if b.kind is BounceKind.HARD:
        if _take_off(conn, sid, "bounced", _short(f"hard bounce ({where}): {detail}"), now, result):
            result.bounced += 1
            return "bounced"
        return "none"
    if b.kind is BounceKind.SOFT:
        if sql.is_policy_status(b.status):  # a block of our mail (x.7.x), not the reader's mailbox
            return "none"
        sql.lock_subscriber(conn, sid)  # two processes counting the same reader's bounces take turns
        n = sql.soft_bounce_count(conn, sid, since=now - rules.soft_window, quiet_before=now - rules.reset_after)
        if n >= rules.soft_limit:
            why = _short(f"{n} soft bounces within {_age(rules.soft_window)} (last: {where}: {detail})")
            if _take_off(conn, sid, "bounced", why, now, result):
                result.bounced += 1
                return "bounced"
            return "none"
        result.counted += 1
        return "counted"
    if b.kind is BounceKind.COMPLAINT:
        if _take_off(conn, sid, "complained", "complaint", now, result):
            result.complained += 1
            return "complained"
        return "none"
    return "none"


def _age(d: timedelta) -> str:
    s = int(d.total_seconds())
    for unit, n in (("w", 604800), ("d", 86400), ("h", 3600), ("m", 60)):
        if s % n == 0 and s >= n:
            return f"{s // n}{unit}"
    return f"{s}s"


def record_bounces(engine: Engine, bounces: Iterable[Bounce], *, now: datetime | None = None,
                   config: Config | None = None, check_rates: bool = True) -> RecordResult:
    """Store each event once and apply the rules (see the module docstring). One transaction per
    event: a failure leaves the events before it recorded and acted on, and recording the same
    events again (after a crash) does nothing twice. Then, once per campaign that got a new hard
    bounce or complaint, its rates are checked (``check_rates``; a sender checks on its own
    schedule instead). ``now`` is injectable for tests."""
    rules = Rules.from_config(config)
    result = RecordResult()
    to_check: list[int] = []
    t = now
    for b in bounces:
        b = _checked(b)
        t = now or utcnow()
        recipient = (b.recipient or "").strip().lower()[:320]
        with transaction(engine) as conn:
            sid, cid, stored = _attribute(conn, b, recipient)
            event_id = sql.insert_event(conn, {
                "subscriber_id": sid, "campaign_id": cid, "recipient": stored, "kind": b.kind.value,
                "status": (b.status or None) and b.status[:16], "reason": _short(b.reason, 1000),
                "source": b.source.value, "provider": (b.provider or None) and b.provider[:32],
                "report_id": report_id_for(b), "outcome": "none" if sid is not None else "unmatched",
                "occurred_at": _when(b, t), "recorded_at": t,
            })
            if event_id is None:
                result.duplicates += 1
                continue
            result.new += 1
            result.event_ids.append(event_id)
            if sid is None:
                result.unmatched += 1
                continue
            outcome = _apply(conn, b if b.campaign_id == cid else _with_campaign(b, cid), sid, rules, t, result)
            if outcome != "none":
                sql.set_outcome(conn, event_id, outcome)
        if cid is not None and b.kind in (BounceKind.HARD, BounceKind.COMPLAINT) and cid not in to_check:
            to_check.append(cid)
    for cid in to_check if check_rates else ():
        with transaction(engine) as conn:
            if check_campaign_rates(conn, cid, rules, now=t):
                result.paused.append(cid)
    return result


def _checked(b: Bounce) -> Bounce:
    """The bounce with its kind and source as the closed enums (producers may pass strings)."""
    from dataclasses import replace

    try:
        return replace(b, kind=BounceKind(b.kind), source=BounceSource(b.source))
    except ValueError:
        raise InvalidInput(f"bounce report {b.report_id or '(no id)'}: kind {str(b.kind)!r} or source "
                           f"{str(b.source)!r} is not one we know") from None


def _with_campaign(b: Bounce, cid: int | None) -> Bounce:
    from dataclasses import replace

    return replace(b, campaign_id=cid)


def rate_pause_reason(rates: sql.CampaignRates, rules: Rules) -> str | None:
    """Why a campaign with these rates must pause, or None."""
    if rates.copies < max(1, rules.pause_min_sent):
        return None
    if rates.complaint_rate > rules.complaint_pause_rate:
        return (f"{RATE_PAUSE_PREFIX}: complaint rate {rates.complaint_rate:.2%} ({rates.complaints} of "
                f"{rates.copies} copies) passed complaint_pause_rate {rules.complaint_pause_rate:.2%}")
    if rates.hard_rate > rules.bounce_pause_rate:
        return (f"{RATE_PAUSE_PREFIX}: hard bounce rate {rates.hard_rate:.2%} ({rates.hard} of "
                f"{rates.copies} copies) passed bounce_pause_rate {rules.bounce_pause_rate:.2%}")
    return None


def check_campaign_rates(conn, campaign_id: int, rules: Rules | Config | None = None, *,
                         now: datetime | None = None) -> str | None:
    """Pause a running campaign whose complaint or hard-bounce rate passed its limit, in the
    caller's transaction; returns the reason when it paused it. A campaign a person resumed
    after such a pause is not paused again (they looked and decided)."""
    from ..dispatch.campaigns import transition
    from ..errors import StateError
    from ..store.lifecycle import CampaignStatus, PauseKind
    from ..store.queries import campaigns

    if not isinstance(rules, Rules):
        rules = Rules.from_config(rules)
    row = conn.execute(select(campaigns.c.status, campaigns.c.meta).where(campaigns.c.id == campaign_id)).first()
    if row is None or row.status != "running" or (row.meta or {}).get(RATE_PAUSE_OVERRIDE):
        return None
    reason = rate_pause_reason(sql.campaign_rates(conn, campaign_id), rules)
    if reason is None:
        return None
    try:
        transition(conn, campaign_id, CampaignStatus.PAUSED, reason=reason, allow_from=(CampaignStatus.RUNNING,),
                   now=now, pause_kind=PauseKind.BOUNCE_GUARD)
    except StateError:  # someone else moved it meanwhile
        return None
    log.warning("campaign %s %s", campaign_id, reason)
    return reason

# An SMTP reply recorded on a ledger row at RCPT or DATA ("550 5.1.1 ..."), possibly after
# retries ("gave up after 172800 s of retries (12 attempts): 452 4.2.2 ..."). Replies at other
# stages carry a prefix ("MAIL: 550 ...") and say nothing about the reader's mailbox.
_SMTP_REPLY = re.compile(r"^(?:gave up after [^:]*: )?([45]\d\d)(?:[ -](.*))?$", re.S)


def smtp_bounce(reply: str, *, recipient: str, campaign_id: int, subscriber_id: int | None) -> Bounce | None:
    """The bounce event for a copy our server refused for good, or None when the reply is not
    about the recipient (connection trouble, a reply to MAIL FROM). Classified like a reply
    quoted in a DSN (``classify_smtp_reply``); the copy itself is the report (one per copy)."""
    from .classify import classify_smtp_reply, parse_enhanced

    m = _SMTP_REPLY.match((reply or "").strip())
    if m is None:
        return None
    code, text = int(m.group(1)), m.group(2) or ""
    enhanced = parse_enhanced(text)
    kind = classify_smtp_reply(code, enhanced, text)
    if kind not in (BounceKind.HARD, BounceKind.SOFT):
        kind = BounceKind.UNKNOWN
    return Bounce(kind, BounceSource.SMTP, recipient=recipient, status=enhanced, reason=_short(reply, 300),
                  campaign_id=campaign_id, subscriber_id=subscriber_id,
                  report_id=f"smtp:{campaign_id}:{subscriber_id or recipient.lower()}")


def list_bounces(engine: Engine, *, campaign_id: int | None = None, kind: str | None = None,
                 email: str | None = None, limit: int | None = None) -> list[sql.EventRow]:
    """Stored events, newest first, filtered by campaign, kind and subscriber address (their
    bounce history). Raises InvalidInput for an unknown kind, NotFound for an unknown campaign
    or subscriber."""
    from ..errors import NotFound
    from ..store.db import require_current_schema

    require_current_schema(engine)
    if kind is not None and kind not in {k.value for k in BounceKind}:
        raise InvalidInput(f"bounce kind {kind!r} is invalid: use one of {', '.join(k.value for k in BounceKind)}")
    if limit is not None and limit < 1:
        raise InvalidInput(f"limit {limit} must be at least 1")
    with transaction(engine) as conn:
        if campaign_id is not None and not sql.campaign_exists(conn, campaign_id):
            raise NotFound(f"campaign {campaign_id} does not exist")
        sid = None
        if email is not None:
            from ..store.lookups import _key_of, _subscriber_by_key

            r = _subscriber_by_key(conn, _key_of(email))
            if r is None:
                raise NotFound(f"subscriber {email.strip()!r} does not exist")
            sid = r["id"]
        return sql.list_events(conn, campaign_id=campaign_id, kind=kind, subscriber_id=sid, limit=limit)


__all__ = ["record_bounces", "RecordResult", "Rules", "check_campaign_rates", "rate_pause_reason", "report_id_for",
           "smtp_bounce", "list_bounces", "RATE_PAUSE_PREFIX", "RATE_PAUSE_OVERRIDE"]
