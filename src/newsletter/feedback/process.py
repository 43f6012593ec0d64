"""``bounces process`` and the worker's poll: read the bounce and unsubscribe mailboxes once, act on
each message, and move it out of the way only after what it said is committed.

Per message: a message already in ``mailbox_messages`` (by mailbox and key) is not read again —
it is moved if it is still there (a crash came between the commit and the move) or, if it was
left on purpose, left. Otherwise its size is checked before it is fetched (over
``bounce_max_message_bytes``: left in place and counted), its bytes are compared with messages
already processed (the same message twice counts once), and it is read: a report goes through
``parse_message`` and ``record_bounces``; a mailto unsubscribe with a verified token unsubscribes
that person from that list; a message without a token From a subscribed address, arriving in the
unsubscribe mailbox, is listed for the operator and never acted on; anything else stays where it
is. A mailbox that refuses the login or drops the connection stops that mailbox's run with one
line naming it; what was committed before stays committed, and the next run carries on.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from datetime import datetime
from typing import Callable

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ..config import Config
from ..errors import ConfigError, MailboxError, NewsletterError, NotFound
from ..store.db import table_of, transaction
from ..store.mailbox_models import MailboxMessage, MailboxMessageKind as Kind
from ..store.models import utcnow
from .mailbox import MailboxOptions, MailboxSpec, MessageRef, TooLarge, open_mailbox, parse_mailbox_url
from .mailto import Reading, clean, read_message
from .model import BounceKind

log = logging.getLogger("newsletter.bounces")
_ACTED_ON = (BounceKind.HARD, BounceKind.SOFT, BounceKind.COMPLAINT)
messages_t = table_of(MailboxMessage)


@dataclass
class ProcessResult:
    """What one run over the mailboxes did (summed over them)."""

    mailboxes: list[str] = field(default_factory=list)
    read: int = 0  # messages fetched and read this run
    reports: int = 0  # ... that were bounce/complaint/auto-reply reports
    events_new: int = 0
    events_duplicate: int = 0
    events_unmatched: int = 0
    bounced: int = 0  # people taken off their lists as bounced
    complained: int = 0  # ... after a complaint
    unsubscribed: int = 0  # ... by a mailto unsubscribe (a verified token)
    already_unsubscribed: int = 0  # verified tokens for someone already off that list
    requests: int = 0  # unsubscribe requests without a token, listed for the operator
    duplicates: int = 0  # messages with the same bytes as one processed before
    left: int = 0  # neither a report nor an unsubscribe: left in place
    unreadable: int = 0  # too large or not readable: left in place
    already: int = 0  # processed on an earlier run and still in the mailbox
    paused: list[int] = field(default_factory=list)  # campaigns the bounce guard paused
    errors: list[str] = field(default_factory=list)  # one line per mailbox that failed

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def mailbox_specs(config: Config) -> list[tuple[MailboxSpec, set[str]]]:
    """The configured mailboxes and their roles (``bounce``, ``unsubscribe``); one entry when both
    keys name the same mailbox. A server mailbox without its password is a ConfigError."""
    entries: dict[str, tuple[MailboxSpec, set[str], str]] = {}
    for key, role, password in (("bounce_mailbox", "bounce", config.bounce_mailbox_password),
                                ("unsubscribe_mailbox", "unsubscribe", config.unsubscribe_mailbox_password)):
        url = getattr(config, key)
        if not url:
            continue
        spec, env = parse_mailbox_url(url, password=password, key=key), f"NEWSLETTER_{key.upper()}_PASSWORD"
        if spec.name in entries:
            old, roles, old_env = entries[spec.name]
            entries[spec.name] = (old, roles | {role}, old_env) if old.password else (spec, roles | {role}, env)
        else:
            entries[spec.name] = (spec, {role}, env)
    for spec, _, env in entries.values():
        if not spec.is_local and not spec.password:
            raise ConfigError(f"{spec.name}: no password; set {env} in the environment")
    return [(spec, roles) for spec, roles, _ in entries.values()]


def options_from(config: Config, ssl_context=None) -> MailboxOptions:
    if config.bounce_max_message_bytes < 1024:
        raise ConfigError(f"bounce_max_message_bytes: {config.bounce_max_message_bytes} is too small (at least 1024)")
    return MailboxOptions(processed_folder=config.bounce_processed_folder, timeout=config.bounce_mailbox_timeout,
                          pop3_delete=config.bounce_pop3_delete, ssl_context=ssl_context)


def process_mailboxes(engine: Engine, config: Config, *, secret: bytes | None = None, now: datetime | None = None,
                      on_event: Callable[[str], None] | None = None, ssl_context=None,
                      stop_event: threading.Event | None = None) -> ProcessResult:
    """Read every configured mailbox once (see the module docstring). A mailbox that fails is one
    line in ``result.errors`` and the others still run; ConfigError when none is configured.
    ``stop_event`` (the worker stopping) ends the run between two messages, cleanly."""
    from ..store.secret import secret_key

    specs = mailbox_specs(config)
    if not specs:
        raise ConfigError("no mailbox configured: set bounce_mailbox (and/or unsubscribe_mailbox), e.g. imaps://user@host/INBOX")
    options = options_from(config, ssl_context)
    secret = secret or secret_key(config)
    emit = on_event or (lambda line: log.warning("%s", line[9:]) if line.startswith("warning: ") else log.info("%s", line))
    result = ProcessResult()
    for spec, roles in specs:
        result.mailboxes.append(spec.name)
        try:
            _process_one(engine, config, spec, roles, options, secret, now, emit, result, stop_event)
        except MailboxError as e:
            result.errors.append(str(e))
            emit(f"warning: {e}")
    return result


def _known(engine: Engine, mailbox: str) -> dict[str, str]:
    with transaction(engine) as conn:
        rows = conn.execute(select(messages_t.c.message_key, messages_t.c.kind).where(messages_t.c.mailbox == mailbox))
        return {k: kind for k, kind in rows}


def _digest_seen(engine: Engine, digest: str) -> bool:
    with transaction(engine) as conn:
        return conn.execute(select(messages_t.c.id).where(messages_t.c.digest == digest, messages_t.c.kind != Kind.LEFT.value)
                            .limit(1)).first() is not None


def _remember(engine: Engine, values: dict) -> bool:
    """Insert the message's row; False when another run recorded it first (nothing counted twice)."""
    try:
        with transaction(engine) as conn:
            conn.execute(messages_t.insert().values(processed_at=utcnow(), **values))
        return True
    except IntegrityError:
        return False


def _process_one(engine, config, spec: MailboxSpec, roles: set[str], options: MailboxOptions, secret: bytes,
                 now, emit, result: ProcessResult, stop_event: threading.Event | None = None) -> None:
    cap = config.bounce_max_message_bytes
    with open_mailbox(spec, options) as box:
        refs = box.messages()
        known = _known(engine, spec.name)
        for ref in refs:
            if stop_event is not None and stop_event.is_set():
                break  # what was committed is moved on the way out; the rest waits for the next run
            kind = known.get(ref.key)
            if kind == Kind.LEFT.value:
                result.left += 1
                continue
            if kind is not None:  # processed before: finish the move a crash or failure interrupted
                result.already += 1
                box.mark_processed(ref)
                continue
            if ref.size is not None and ref.size > cap:
                result.unreadable += 1
                emit(f"warning: {spec.name}: message {ref.key} is {ref.size:,} bytes, over bounce_max_message_bytes "
                     f"({cap:,}): left in place")
                continue
            try:
                raw = box.fetch(ref, cap)
            except TooLarge:
                result.unreadable += 1
                emit(f"warning: {spec.name}: message {ref.key} is over bounce_max_message_bytes ({cap:,}): left in place")
                continue
            result.read += 1
            if _handle(engine, config, spec, roles, ref, raw, secret, now, emit, result):
                box.mark_processed(ref)


def _handle(engine, config, spec, roles, ref: MessageRef, raw: bytes, secret, now, emit, result: ProcessResult) -> bool:
    """Act on one message and record it; True when it may be moved out of the way."""
    digest = hashlib.sha256(raw).hexdigest()
    base = dict(mailbox=spec.name, message_key=ref.key, digest=digest)
    if _digest_seen(engine, digest):
        if _remember(engine, {**base, "kind": Kind.DUPLICATE.value, "subject": "", "detail": "same message processed before"}):
            result.duplicates += 1
        return True
    try:
        _, reading = read_message(raw, secret)
    except Exception as e:  # the email package rarely raises, but a message we cannot read stays put
        result.unreadable += 1
        emit(f"warning: {spec.name}: message {ref.key} cannot be read ({type(e).__name__}): left in place")
        return False
    where = f"{spec.name}: message {ref.key}" + (f" {reading.message_id}" if reading.message_id else "")
    row = {**base, "message_id": reading.message_id, "from_address": reading.from_address,
           "subject": reading.subject, "sent_at": reading.sent_at}
    if reading.forged:
        emit(f"warning: {where}: unsubscribe token with a bad signature ignored ({', '.join(reading.forged[:3])})")
    if reading.token and reading.in_subject:  # the subject our mailto writes: a request, whatever the body
        return _unsubscribe(engine, secret, reading, reading.token, row, where, now, emit, result)
    try:
        bounces = _parse(raw, secret)
    except Exception as e:  # a parser bug must not lose the message: leave it and say which one
        result.unreadable += 1
        emit(f"warning: {where}: cannot be parsed ({type(e).__name__}: {clean(str(e), 120)}): left in place")
        return False
    if reading.token and not any(b.kind in _ACTED_ON for b in bounces):  # a body token, in no bounce of our copy
        return _unsubscribe(engine, secret, reading, reading.token, row, where, now, emit, result)
    if bounces:
        from .record import record_bounces

        rec = record_bounces(engine, bounces, now=now, config=config)
        result.reports += 1
        result.events_new += rec.new
        result.events_duplicate += rec.duplicates
        result.events_unmatched += rec.unmatched
        result.bounced += rec.bounced
        result.complained += rec.complained
        result.paused += [c for c in rec.paused if c not in result.paused]
        kinds = ", ".join(sorted({b.kind.value for b in bounces}))
        _remember(engine, {**row, "kind": Kind.BOUNCE.value, "events_new": rec.new, "events_duplicate": rec.duplicates,
                           "detail": clean(f"{len(bounces)} event(s): {kinds}; {rec.new} new, {rec.duplicates} duplicate, "
                                           f"{rec.unmatched} unmatched", 500)})
        return True
    if "unsubscribe" in roles and not reading.report_like and reading.from_address:
        subscriber = _subscribed(engine, reading.from_address)
        if subscriber is not None:
            if _remember(engine, {**row, "kind": Kind.UNSUBSCRIBE_REQUEST.value, "subscriber_id": subscriber,
                                  "detail": "no valid unsubscribe token: not acted on; listed for the operator"}):
                result.requests += 1
                emit(f"warning: {where}: unsubscribe request from {reading.from_address} without a valid token: "
                     "not acted on (From can be forged); see `newsletter bounces requests`")
            return True
    _remember(engine, {**row, "kind": Kind.LEFT.value, "detail": "not a report nor an unsubscribe: left in place"})
    result.left += 1
    emit(f"{where}: not a bounce report nor an unsubscribe request: left in place")
    return False


def _parse(raw: bytes, secret: bytes):
    from .parse import parse_message

    return parse_message(raw, secret=secret)


def _unsubscribe(engine, secret, reading: Reading, token: str, row: dict, where: str, now, emit, result: ProcessResult) -> bool:
    from ..store.leaving import unsubscribe_by_token

    try:
        info = unsubscribe_by_token(engine, secret, token, now=now)
    except NotFound:
        detail, changed, sid, lid = "the subscription this token names no longer exists", False, None, None
    else:
        changed, sid, lid = info.changed, info.subscriber_id, info.list_id
        detail = (f"unsubscribed {info.email} from {info.list_slug} by email" if changed
                  else f"{info.email} was already {info.status} on {info.list_slug}")
    if _remember(engine, {**row, "kind": Kind.UNSUBSCRIBE.value, "subscriber_id": sid, "list_id": lid,
                          "detail": clean(detail, 500)}):
        if changed:
            result.unsubscribed += 1
        else:
            result.already_unsubscribed += 1
        emit(f"{where}: {detail}")
    return True


def _subscribed(engine: Engine, address: str) -> int | None:
    """The subscriber id when ``address`` is on some list (active or unconfirmed), else None."""
    from ..store.subscribers import get_subscriber

    try:
        s = get_subscriber(engine, address)
    except NewsletterError:  # not found, or an address the validator refuses: nobody we know
        return None
    return s.id if any(st in ("active", "unconfirmed") for st in (s.lists or {}).values()) else None


def list_requests(engine: Engine, *, limit: int = 200) -> list[dict]:
    """Unsubscribe requests that carried no valid token, newest first, for the operator to handle."""
    with transaction(engine) as conn:
        rows = conn.execute(
            select(messages_t).where(messages_t.c.kind == Kind.UNSUBSCRIBE_REQUEST.value)
            .order_by(messages_t.c.processed_at.desc(), messages_t.c.id.desc()).limit(limit)
        ).mappings().all()
    return [{"id": r["id"], "from": r["from_address"], "subject": r["subject"], "message_id": r["message_id"],
             "sent_at": r["sent_at"].isoformat() if r["sent_at"] else None, "subscriber_id": r["subscriber_id"],
             "mailbox": r["mailbox"], "processed_at": r["processed_at"].isoformat()} for r in rows]
