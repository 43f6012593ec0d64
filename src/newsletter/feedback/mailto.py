"""Reading a mailbox message for what it asks: is it a report (DSN, ARF, auto-reply), or a
mailto unsubscribe carrying one of our signed tokens?

Every copy's ``List-Unsubscribe`` offers ``mailto:ADDRESS?subject=unsubscribe%20TOKEN``. A token
counts when it is in the Subject, or in the body written after the word "unsubscribe" on a line
that is not quoted (``> ...``): a reader's reply that quotes the newsletter carries the token
inside an ``/unsubscribe/TOKEN`` link, and a reply must not unsubscribe its writer. Reports and
automatic replies (RFC 3834) are never read as unsubscribe requests, for the same reason, nor is
a quoted ``List-Unsubscribe`` header line (the processing loop also gives a body token no weight
in a message the parser reads as a bounce of our copy). A token is acted on only if its HMAC
verifies; the From address alone is never acted on.
"""

from __future__ import annotations

import email
import email.policy
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.errors import HeaderParseError
from email.header import decode_header, make_header
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime
from urllib.parse import unquote

from ..errors import InvalidToken
from ..store import tokens
from .dsn import payload_bytes

_WORD = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{24,200}(?![A-Za-z0-9_-])")
_BODY = re.compile(r"\bunsubscribe[\s:=]+([A-Za-z0-9_-]{24,200})(?![A-Za-z0-9_-])", re.I)
_REQUEST_WORDS = re.compile(r"\b(unsubscribe|opt[- ]?out|remove me|take me off)\b", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_DAEMONS = ("mailer-daemon", "postmaster", "mail-daemon", "mailerdaemon")
MAX_TEXT = 200_000  # characters of body text searched for a token


def clean(text: str | None, limit: int = 300) -> str:
    """A header value fit for one line of output and the database: control characters (CR, LF...)
    folded to a space, cut to ``limit``."""
    return " ".join(_CONTROL.sub(" ", str(text or "")).split())[:limit]


@dataclass
class Reading:
    """What the message is, before anything is done about it."""

    message_id: str | None
    from_address: str | None
    subject: str
    sent_at: datetime | None
    report_like: bool  # a DSN/ARF/auto-reply or from a mail daemon: never an unsubscribe request
    token: str | None = None  # a verified unsubscribe token
    in_subject: bool = False  # ... found in the Subject (as our mailto writes it), not only in the body
    subscriber_id: int | None = None
    list_id: int | None = None
    forged: list[str] = field(default_factory=list)  # well-formed tokens whose signature did not verify (shortened)
    mentions_unsubscribe: bool = False


def _header(msg: Message, name: str) -> str:
    """A header's value with RFC 2047 encoded words decoded (what is malformed is kept as written)."""
    raw = msg.get(name)
    if raw is None:
        return ""
    try:
        return str(make_header(decode_header(str(raw))))
    except (HeaderParseError, LookupError, UnicodeError, ValueError):
        return str(raw)


def _date(msg: Message) -> datetime | None:
    try:
        d = parsedate_to_datetime(_header(msg, "Date"))
    except (TypeError, ValueError, IndexError):
        return None
    if d is None:
        return None
    return d if d.tzinfo else d.replace(tzinfo=timezone.utc)


def is_report_like(msg: Message) -> bool:
    """A delivery report, a feedback report, an automatic reply or anything from a mail daemon."""
    if msg.get_content_type() == "multipart/report":
        return True
    auto = _header(msg, "Auto-Submitted").strip().lower()
    if auto and not auto.startswith("no"):
        return True
    if any(_header(msg, h) for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress-Reply")):
        return True
    if _header(msg, "Precedence").strip().lower() in ("auto_reply", "junk"):
        return True
    local = parseaddr(_header(msg, "From"))[1].split("@", 1)[0].lower()
    if local in _DAEMONS:
        return True
    return any(p.get_content_type() in ("message/delivery-status", "message/feedback-report") for p in msg.walk())


def _body_text(msg: Message) -> str:
    out, size = [], 0
    for part in msg.walk():
        if part.get_content_type() != "text/plain" or part.get_filename():
            continue
        payload = payload_bytes(part) or b""
        try:
            text = payload.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:  # an unknown charset: read what we can
            text = payload.decode("utf-8", "replace")
        out.append(text)
        size += len(text)
        if size > MAX_TEXT:
            break
    return "\n".join(out)[:MAX_TEXT]


def _unquoted_lines(text: str) -> list[str]:
    return [unquote(line) for line in text.splitlines() if not line.lstrip().startswith(">")]


def read_message(raw: bytes, secret: bytes) -> tuple[Message, Reading]:
    """Parse ``raw`` and look for a verified unsubscribe token (see the module docstring)."""
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)  # the modern policy is 5x slower here
    subject = clean(_header(msg, "Subject"))
    sender = parseaddr(_header(msg, "From"))[1].strip().lower() or None
    reading = Reading(
        message_id=clean(_header(msg, "Message-ID"), 998) or None,
        from_address=clean(sender, 320) if sender and "@" in sender else None,
        subject=subject,
        sent_at=_date(msg),
        report_like=is_report_like(msg),
    )
    if reading.report_like:
        return msg, reading
    body = _body_text(msg)
    lines = _unquoted_lines(body)
    reading.mentions_unsubscribe = bool(_REQUEST_WORDS.search(subject) or any(_REQUEST_WORDS.search(l) for l in lines))
    from_subject = [m.group(0) for m in _WORD.finditer(unquote(subject))]
    candidates = list(from_subject)
    for line in lines:
        if "list-unsubscribe" in line.lower():  # our own header, quoted by a bounce: not a request
            continue
        candidates += [m.group(1) for m in _BODY.finditer(line)]
    seen = set()
    for word in candidates:
        if word in seen:
            continue
        seen.add(word)
        try:
            sid, lid = tokens.verify_unsubscribe_token(secret, word)
        except InvalidToken as e:
            if getattr(e, "reason", "") == "forged":  # well formed, wrong signature: worth a warning
                reading.forged.append(word[:12] + "…")
            continue
        reading.token, reading.subscriber_id, reading.list_id = word, sid, lid
        reading.in_subject = word in from_subject
        break
    return msg, reading
