"""The public signup rule: what a form anyone can fill in may do, and the links that finish it.

A signup for an address we do not know stores it, as the list's opt-in says (double: unconfirmed
and a confirmation email; single: active). A signup for an address we DO know changes nothing
stored — not the name, not a status, not an unsubscribe date, not the consent record — until the
person uses the link we mail them (a *rejoin* token naming the person, the list and when it was
asked for); only then does their membership of that list change, with fresh consent evidence.
This holds on single opt-in lists too: someone who left one is asked to confirm. Someone already
active, or suppressed, gets nothing. Confirmation emails to one address for one list are rate
limited: RESEND_AFTER for a pending signup, REMAIL_AFTER for someone who left.

The web form runs ``request_signup`` on its background queue, never in the request (see
web/mailer.py), so the answer costs the same whoever the address belongs to.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..errors import NotFound, StateError
from ..i18n import N_
from . import tokens
from .consent import Join, joining_status, may_join, rejoin_in
from .db import transaction
from .models import OPTED_OUT_STATUSES, utcnow
from .addresses import normalize_email
from .lookups import _list_row, _lists_of, _subscriber_by_key, lists_t, subs_t, subscribers_t
from .optin import confirm_by_token, confirm_url
from .subscribers import TokenResult, peek_token
from .suppressions import _find_suppression
from .textrules import check_text

REMAIL_AFTER = timedelta(hours=24)  # at most one confirmation email a day to someone who left the list
RESEND_AFTER = timedelta(minutes=10)  # and one per 10 minutes while a signup awaits confirmation
SOURCE = "web form"


@dataclass
class SignupPlan:
    """What a signup asks of the mailer: ``mail`` is none | confirm (a new, unconfirmed
    subscription) | rejoin (a known person: nothing stored until they use the link)."""

    mail: str
    email: str = ""
    name: str = ""  # for the greeting: the stored name for a known person, never the posted one
    subscriber_id: int = 0
    list_id: int = 0


def _due(sent_at: datetime | None, every: timedelta, now: datetime) -> bool:
    if sent_at is None:
        return True
    if sent_at.tzinfo is None:
        sent_at = sent_at.replace(tzinfo=timezone.utc)
    return sent_at <= now - every


def request_signup(engine: Engine, list_slug: str, email: str, name: str = "", *, source: str = SOURCE,
                   now: datetime | None = None, timezone: str = "") -> SignupPlan:
    """Apply the signup rule to one form post and say which email (if any) to send. ``timezone``
    (the browser's IANA zone, checked) is stored for a new address only, like the name."""
    from .preferences import check_timezone

    address, key = normalize_email(email)
    name = check_text("the name", (name or "").strip())
    zone = check_timezone(timezone) or None
    now = now or utcnow()
    with transaction(engine) as conn:
        lst = _list_row(conn, list_slug)
        if _find_suppression(conn, key) is not None:
            return SignupPlan("none")
        person = _subscriber_by_key(conn, key)
        if person is None:
            conn.execute(subscribers_t.insert().values(
                email=address, email_key=key, name=name, attributes={}, consent_source=source, consent_at=now,
                created_at=now, updated_at=now, timezone=zone))
            sid = _subscriber_by_key(conn, key)["id"]
            status = joining_status(lst["opt_in"])
            conn.execute(subs_t.insert().values(
                subscriber_id=sid, list_id=lst["id"], status=status, source=source, created_at=now, updated_at=now,
                confirmed_at=now if status == "active" else None))
            return SignupPlan("confirm" if status == "unconfirmed" else "none", address, name, sid, lst["id"])
        sid = person["id"]
        sub = conn.execute(select(subs_t).where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lst["id"])).mappings().first()
    plan = SignupPlan("none", person["email"], person["name"], sid, lst["id"])
    # A known person: the form is no consent yet (anyone can fill it in); the link we mail them is.
    current: str | None = sub["status"] if sub is not None else None
    sent_at: datetime | None = sub["confirmation_sent_at"] if sub is not None else None
    decision = may_join(current, fresh_consent=False)
    if decision is Join.NEW:
        plan.mail = "rejoin"  # nothing stored to rate-limit by: the web form's per-address limit applies
    elif decision is Join.LEFT and _due(sent_at, REMAIL_AFTER, now):
        plan.mail = "rejoin"
    elif current == "unconfirmed" and _due(sent_at, RESEND_AFTER, now):
        plan.mail = "confirm"
    return plan


def signup_url(config, plan: SignupPlan, *, secret: bytes, now: datetime | None = None) -> str:
    """The link the confirmation email carries for this plan."""
    if plan.mail == "confirm":
        return confirm_url(config, plan.subscriber_id, plan.list_id, secret=secret, now=now)
    token = tokens.rejoin_token(secret, plan.subscriber_id, plan.list_id, now=now)
    return f"{config.base_url.rstrip('/')}/confirm/{token}"


def _rejoin_target(conn, sid: int, lid: int):
    person = conn.execute(select(subscribers_t).where(subscribers_t.c.id == sid)).mappings().first()
    lst = conn.execute(select(lists_t).where(lists_t.c.id == lid)).mappings().first()
    if person is None or lst is None:
        raise NotFound(N_("the subscription this link was made for no longer exists"))
    sub = conn.execute(select(subs_t).where(subs_t.c.subscriber_id == sid, subs_t.c.list_id == lid)).mappings().first()
    return person, lst, sub


def _left_since(sub, issued: float) -> bool:
    """Did this subscription opt out at or after ``issued`` (a link's issue time, epoch seconds)?"""
    if sub["status"] not in OPTED_OUT_STATUSES:
        return False
    left = sub["unsubscribed_at"] or sub["updated_at"]
    if left.tzinfo is None:
        left = left.replace(tzinfo=timezone.utc)
    return left.timestamp() >= issued


def peek_link(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None) -> TokenResult:
    """Describe what a /confirm/ link (confirm or rejoin token) is for, changing nothing."""
    if not tokens.is_rejoin_token(token):
        return peek_token(engine, secret, token, "confirm", now=now)
    sid, lid, _ = tokens.verify_rejoin_token(secret, token, now=now)
    with transaction(engine) as conn:
        person, lst, sub = _rejoin_target(conn, sid, lid)
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, person["email"], lid, lst["slug"], lst["name"], sub["status"] if sub else "none", False, lists)


def confirm_link(engine: Engine, secret: bytes, token: str, *, source: str = SOURCE, now: datetime | None = None) -> TokenResult:
    """Use a /confirm/ link. A confirm token activates its unconfirmed subscription; a rejoin token
    makes the person active on its list (subscribing them, or bringing them back) with fresh
    consent — unless they opted out after the link was sent, or are suppressed (StateError)."""
    if not tokens.is_rejoin_token(token):
        return confirm_by_token(engine, secret, token, now=now)
    sid, lid, issued = tokens.verify_rejoin_token(secret, token, now=now)
    when = now or utcnow()
    with transaction(engine) as conn:
        person, lst, sub = _rejoin_target(conn, sid, lid)
        status = sub["status"] if sub is not None else None
        # The link is fresh consent, unless the person left the list after it was sent.
        decision = may_join(status, fresh_consent=sub is None or not _left_since(sub, issued),
                            suppressed=_find_suppression(conn, person["email_key"]) is not None)
        if decision is Join.SUPPRESSED:
            raise StateError(N_("%(email)s was not subscribed: mail to this address has been stopped", email=person["email"]))
        if decision is Join.LEFT:
            raise StateError(N_("%(email)s left %(list)s after this link was sent: it no longer applies (sign up again)",
                                email=person["email"], list=lst["name"]))
        changed = status != "active"
        if changed:  # joining, coming back, or confirming a pending signup: all with this fresh consent
            rejoin_in(conn, subscriber_id=sid, list_id=lid, subscription_id=sub["id"] if sub is not None else None,
                      status="active", source=source, now=when)
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, person["email"], lid, lst["slug"], lst["name"], "active", changed, lists)
