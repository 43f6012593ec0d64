"""Double opt-in: the confirmation link and email, sending it (once, or as a reminder), and confirming.

Every confirmation email — ``subscribers add``, ``subscribers send-confirmations``, the web
signup — is built, sent and recorded by ``mail_confirmation``, so one person is never mailed
twice for one subscription by two paths that do not see each other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Callable

from sqlalchemy import and_, func, or_, select
from sqlalchemy.engine import Engine

from ..compose.confirm import ConfirmationMessage
from ..config import Config
from ..errors import InvalidInput, NotFound, StateError
from ..i18n import N_
from . import tokens
from .consent import Join, may_join
from .db import transaction
from .lookups import _list_row, _lists_of, lists_t, subs_t, subscribers_t
from .models import utcnow
from .subscribers import TokenResult, _token_subscription
from .suppressions import _find_suppression, suppressed_condition


def confirm_by_token(engine: Engine, secret: bytes, token: str, *, now: datetime | None = None,
                     ip_class: str | None = None) -> TokenResult:
    """Verify a confirm token and make that unconfirmed subscription active (idempotent).

    Someone who has since unsubscribed or is suppressed is not re-activated (StateError). The
    consent's time (and ``ip_class``, the class of network the link was used from) is recorded."""
    when = now or utcnow()
    sid, lid = tokens.verify_confirm_token(secret, token, now=now)
    with transaction(engine) as conn:
        r = _token_subscription(conn, sid, lid)
        if may_join(r["status"], fresh_consent=False) is Join.LEFT:  # a confirm link is no fresh consent
            raise StateError(N_("%(email)s is no longer on %(list)s: this confirmation link no longer applies (sign up again)",
                                email=r["email"], list=r["list_name"]))
        if _find_suppression(conn, r["email_key"]) is not None:
            raise StateError(N_("%(email)s was not subscribed: mail to this address has been stopped", email=r["email"]))
        changed = r["status"] == "unconfirmed"
        if changed:
            conn.execute(
                subs_t.update().where(subs_t.c.id == r["id"]).values(status="active", confirmed_at=when, updated_at=when)
            )
            conn.execute(subscribers_t.update().where(subscribers_t.c.id == sid).values(
                consent_at=when, consent_ip_class=ip_class or None))
        lists = _lists_of(conn, [sid])[sid]
    return TokenResult(sid, r["email"], lid, r["slug"], r["list_name"], "active", changed, lists)


def confirm_url(config: Config, subscriber_id: int, list_id: int, *, secret: bytes | None = None, now: datetime | None = None) -> str:
    """The public double-opt-in link ``{base_url}/confirm/{token}`` (expires after 7 days)."""
    from .secret import secret_key

    key = secret if secret is not None else secret_key(config)
    return f"{config.base_url.rstrip('/')}/confirm/{tokens.confirm_token(key, subscriber_id, list_id, now=now)}"


def confirmation_message(config: Config, *, email: str, list_name: str, confirm_url: str, name: str = "",
                         language: str | None = None, template_dir: str | Path | None = None) -> ConfirmationMessage:
    """Subject and bodies (plain text and HTML) asking someone to confirm their subscription, in
    ``language`` (the list's; default ``config.language``), rendered from confirm.mjml and
    confirm.txt (compose/confirm.py: the shipped ones, or those of ``template_dir``/config ``template_dir``)."""
    from ..compose.confirm import render_confirmation

    return render_confirmation(config, email=email, list_name=list_name, confirm_url=confirm_url, name=name,
                               language=language, template_dir=template_dir)


def check_confirmation_template(config: Config, language: str | None = None) -> None:
    """Render a sample confirmation email (config ``template_dir``'s confirm.mjml and confirm.txt,
    else the shipped ones): a broken template is one RenderError before anyone is mailed, rather
    than one failure per address."""
    from ..compose.confirm import check_confirmation

    check_confirmation(config, language=language)


def _list_language(engine: Engine, list_id: int) -> str | None:
    """The language a list's readers are written to in (None: the configured default)."""
    with engine.connect() as conn:
        return conn.execute(select(lists_t.c.language).where(lists_t.c.id == list_id)).scalar()


DEFAULT_REMIND_AFTER = timedelta(days=1)
_AGE_RE = re.compile(r"\s*(\d{1,9})\s*([mhdw])\s*", re.IGNORECASE)
_AGE_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_MAX_AGE = timedelta(days=36500)


def parse_age(value: str) -> timedelta:
    """An age such as ``30m``, ``12h``, ``3d`` or ``2w`` (minutes, hours, days, weeks); InvalidInput otherwise."""
    m = _AGE_RE.fullmatch(value or "")
    if m is None:
        raise InvalidInput(f"{value!r} is not an age: use a whole number and a unit, like 30m, 12h, 3d or 2w")
    try:
        age = timedelta(**{_AGE_UNITS[m.group(2).lower()]: int(m.group(1))})
    except OverflowError:
        age = None
    if age is None or age > _MAX_AGE:
        raise InvalidInput(f"{value!r} is too long an age: at most 100 years")
    return age


@dataclass
class ConfirmationRun:
    """What ``send_confirmations`` did; ``failures`` keeps (address, one-line reason), at most 100.

    ``skipped_mailed``: unconfirmed but already mailed (default run) or mailed too recently
    (reminders); ``stopped_at_limit``: ``limit`` was reached with more left to mail."""

    sent: int = 0
    failed: int = 0
    skipped_mailed: int = 0
    skipped_suppressed: int = 0
    stopped_at_limit: bool = False
    failures: list[tuple[str, str]] = field(default_factory=list)


def record_confirmation_sent(engine: Engine, subscriber_id: int, list_id: int, *, when: datetime | None = None) -> bool:
    """Remember that the confirmation email for this subscription went out (at ``when``, default now).

    Called by ``mail_confirmation`` right after each successful send, in a transaction of its
    own, so a later ``send-confirmations`` does not mail that person again. False if there is no such
    subscription."""
    with transaction(engine) as conn:
        return conn.execute(
            subs_t.update()
            .where(subs_t.c.subscriber_id == subscriber_id, subs_t.c.list_id == list_id)
            .values(confirmation_sent_at=when or utcnow())
        ).rowcount > 0


Send = Callable[[str, str, str, str], Any]  # send(to, subject, html, text): dispatch's send_one, as each shell configures it


@dataclass
class Invitation:
    """One confirmation email to send: to whom, for which list, with which link (None: the
    subscription's confirm link; the signup form passes its confirm or rejoin link)."""

    subscriber_id: int
    list_id: int
    email: str
    name: str
    list_name: str
    url: str | None = None


def invitation_for(engine: Engine, subscriber_id: int, list_id: int) -> Invitation:
    """The confirmation email for this subscription, addressed from what is stored; NotFound otherwise."""
    q = (
        select(subscribers_t.c.email, subscribers_t.c.name, lists_t.c.name.label("list_name"))
        .select_from(subs_t.join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id)
                     .join(lists_t, lists_t.c.id == subs_t.c.list_id))
        .where(subs_t.c.subscriber_id == subscriber_id, subs_t.c.list_id == list_id)
    )
    with transaction(engine) as conn:
        r = conn.execute(q).mappings().first()
    if r is None:
        raise NotFound(f"subscriber #{subscriber_id} is not on list #{list_id}")
    return Invitation(subscriber_id, list_id, r["email"], r["name"], r["list_name"])


def mail_confirmation(engine: Engine, config: Config, send: Send, invitation: Invitation, *, secret: bytes | None = None) -> Any:
    """Build the confirmation email, send it with ``send`` and record that it went out; returns
    what ``send`` returned. Every confirmation email goes through here (``subscribers add``,
    ``send-confirmations``, the signup form), so each is recorded and ``send_confirmations``
    does not mail that person again. When ``send`` raises nothing is recorded: the caller
    reports the failure, and a later run tries again."""
    url = invitation.url or confirm_url(config, invitation.subscriber_id, invitation.list_id, secret=secret)
    msg = confirmation_message(config, email=invitation.email, name=invitation.name, list_name=invitation.list_name,
                               confirm_url=url, language=_list_language(engine, invitation.list_id))
    sent = send(invitation.email, msg.subject, msg.html, msg.text)
    record_confirmation_sent(engine, invitation.subscriber_id, invitation.list_id)
    return sent


def _confirmation_due(cutoff: datetime | None):
    """Never mailed, or (reminders, with ``cutoff``) last mailed at or before ``cutoff``."""
    never = subs_t.c.confirmation_sent_at.is_(None)
    return never if cutoff is None else or_(never, subs_t.c.confirmation_sent_at <= cutoff)


def _unconfirmed_on(list_id: int):
    """Unconfirmed subscriptions of a list joined to their subscriber (uses ix_subscriptions_list_status)."""
    return (
        subs_t.join(subscribers_t, subscribers_t.c.id == subs_t.c.subscriber_id),
        and_(subs_t.c.list_id == list_id, subs_t.c.status == "unconfirmed"),
    )


def send_confirmations(
    engine: Engine,
    config: Config,
    list_slug: str,
    send: Send,
    *,
    limit: int | None = None,
    remind_after: timedelta | None = None,
    secret: bytes | None = None,
    now: datetime | None = None,
) -> ConfirmationRun:
    """Mail the confirmation link to the ``unconfirmed`` subscribers of a double-opt-in list
    who were never mailed it; with ``remind_after``, also to those last mailed at least that
    long ago (a reminder; the age counts back from ``now``, default the current time).
    Suppressed addresses are skipped; oldest subscriptions first.

    ``send(to, subject, html, text)`` delivers one message (the CLI passes dispatch's send_one).
    Each successful send is recorded at once in its own transaction, so a run that stops half-way
    (crash, ``limit``) mails only the rest next time; a crash between a send and its record can
    repeat that one message. A failure for one address (any NewsletterError) is counted, left
    unrecorded (the next run tries again) and the run goes on; any other exception ends it.
    Each person is checked again just before their message, so someone who confirmed, left, was
    suppressed or was mailed by someone else meanwhile is not mailed."""
    from ..errors import NewsletterError
    from .secret import secret_key

    if limit is not None and limit < 1:
        raise InvalidInput(f"limit must be at least 1, not {limit}")
    if remind_after is not None and remind_after < timedelta(0):
        raise InvalidInput("the reminder age cannot be negative")
    now = now or utcnow()
    cutoff = now - remind_after if remind_after is not None else None
    due = _confirmation_due(cutoff)
    with transaction(engine) as conn:
        lst = _list_row(conn, list_slug)
        if lst["opt_in"] != "double":
            raise StateError(f"list {list_slug!r} is single opt-in: its subscribers need no confirmation")
        joined, unconfirmed = _unconfirmed_on(lst["id"])
        suppressed = suppressed_condition(subscribers_t.c.email_key)
        counted = select(func.count()).select_from(joined).where(unconfirmed)
        run = ConfirmationRun(
            skipped_suppressed=conn.execute(counted.where(suppressed)).scalar_one(),
            skipped_mailed=conn.execute(counted.where(~suppressed, ~due)).scalar_one(),
        )
    check_confirmation_template(config, lst["language"])  # a broken template: nobody mailed, nothing recorded
    key = secret if secret is not None else secret_key(config)
    candidates = (
        select(subs_t.c.id, subs_t.c.subscriber_id, subscribers_t.c.email, subscribers_t.c.name)
        .select_from(joined).where(unconfirmed, due, ~suppressed).order_by(subs_t.c.id).limit(500)
    )
    recheck = select(subs_t.c.status, due.label("due"), suppressed.label("suppressed")).select_from(joined)
    last = 0
    while True:
        with transaction(engine) as conn:
            rows = conn.execute(candidates.where(subs_t.c.id > last)).mappings().all()
        if not rows:
            return run
        for row in rows:
            last = row["id"]
            if limit is not None and run.sent + run.failed >= limit:
                run.stopped_at_limit = True
                return run
            with transaction(engine) as conn:
                fresh = conn.execute(recheck.where(subs_t.c.id == row["id"])).mappings().first()
            if fresh is None or fresh["status"] != "unconfirmed":
                continue  # confirmed, left or erased meanwhile
            if fresh["suppressed"]:
                run.skipped_suppressed += 1
                continue
            if not fresh["due"]:
                run.skipped_mailed += 1  # mailed meanwhile (web signup, `subscribers add`, another run)
                continue
            invitation = Invitation(row["subscriber_id"], lst["id"], row["email"], row["name"], lst["name"])
            try:
                mail_confirmation(engine, config, send, invitation, secret=key)
            except NewsletterError as e:
                run.failed += 1
                if len(run.failures) < 100:
                    run.failures.append((row["email"], str(e)))
                continue
            run.sent += 1
