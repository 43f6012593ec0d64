"""Structured reports read field by field: RFC 3464 DSNs and RFC 5965 ARF feedback reports.

Both are ``multipart/report`` messages whose machine-readable part is a set of header-like field
blocks (``message/delivery-status``: one block per message, then one per recipient;
``message/feedback-report``: one block). The blocks are read from the parsed part when the email
package split them, or from its text otherwise (a truncated or mislabelled report).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.header import Header, decode_header
from email.message import Message
from email.parser import HeaderParser

from .classify import classify_smtp_reply, parse_enhanced, parse_reply_code
from .model import BounceKind

DSN_TYPES = ("message/delivery-status", "message/global-delivery-status", "text/delivery-status")
ARF_TYPES = ("message/feedback-report",)
ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers",
                  "text/rfc822", "message/global-headers")
MAX_FIELD_TEXT = 64 * 1024
MAX_BLOCKS = 500  # recipients per report; a report naming more is cut here
_ADDR_RE = re.compile(r"[\w.%+\-=/!#$&*?^`{|}~]{1,64}@\w[\w.\-]{0,250}")  # \w: SMTPUTF8 addresses too
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Finding:
    """One recipient's outcome read from a report, before attribution."""

    kind: BounceKind
    recipient: str | None
    status: str | None
    reason: str


def header_text(value: object) -> str:
    """A header value as text: raw 8-bit bytes (kept as surrogates by the parser) read as UTF-8."""
    if isinstance(value, Header):  # compat32 wraps 8-bit values as "unknown-8bit" Header objects
        out = []
        for chunk, charset in decode_header(value):
            if isinstance(chunk, bytes):
                cs = charset if charset and charset != "unknown-8bit" else "utf-8"
                try:
                    chunk = chunk.decode(cs, "replace")
                except LookupError:
                    chunk = chunk.decode("utf-8", "replace")
            out.append(chunk)
        return "".join(out)
    text = str(value)
    if any("\udc80" <= c <= "\udcff" for c in text):
        text = text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return text


def payload_bytes(part: Message) -> bytes | None:
    """The transfer-decoded body of a leaf part (base64, quoted-printable undone); None for a
    multipart or a body that cannot be decoded."""
    try:
        payload = part.get_payload(decode=True)
    except Exception:
        return None
    return payload if isinstance(payload, bytes) else None


def part_text(part: Message, limit: int = MAX_FIELD_TEXT) -> str:
    """The decoded text of a leaf part, at most ``limit`` characters; '' when it cannot be read."""
    payload = payload_bytes(part)
    if payload is None:
        raw = part.get_payload()
        if isinstance(raw, str):
            return raw[:limit]
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload[: limit * 4].decode(charset, errors="replace")[:limit]
    except LookupError:
        return payload[: limit * 4].decode("utf-8", errors="replace")[:limit]


def field_blocks(part: Message) -> list[dict[str, str]]:
    """The field blocks of a delivery-status or feedback-report part, keys lowercased."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and all(isinstance(p, Message) for p in payload):
        blocks = []
        for sub in payload[:MAX_BLOCKS]:
            if not isinstance(sub, Message):
                continue
            fields: dict[str, str] = {}
            for key, value in sub.items():
                fields.setdefault(key.strip().lower(), " ".join(header_text(value).split()))
            blocks.append(fields)
        return blocks
    return parse_field_text(part_text(part))


def parse_field_text(text: str) -> list[dict[str, str]]:
    """Header-like ``Name: value`` blocks separated by blank lines (with folded continuations)."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last = None
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line.strip():
            if current:
                blocks.append(current)
                if len(blocks) >= MAX_BLOCKS:
                    return blocks
            current, last = {}, None
            continue
        if line[0] in " \t" and last is not None:
            current[last] = (current[last] + " " + line.strip())[:2000]
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            last = name.strip().lower()
            current.setdefault(last, value.strip()[:2000])
    if current:
        blocks.append(current)
    return blocks


def address_of(value: str | None) -> str | None:
    """The address in a DSN/ARF address field (``rfc822; <a@b>``), lowercased domain kept as given."""
    if not value:
        return None
    text = value.split(";", 1)[1] if ";" in value else value
    m = _ADDR_RE.search(text)
    if m is None:
        return None
    addr = m.group(0).rstrip(".").strip()
    local = addr.rpartition("@")[0]
    if ".." in local or local.startswith(".") or local.endswith("."):
        return None  # an elided or mangled address ("david...@gmail.com") is nobody's
    return addr


def _diagnostic(value: str | None) -> str:
    if not value:
        return ""
    kind, sep, rest = value.partition(";")
    return (rest if sep and len(kind) < 20 else value).strip()


def read_dsn(part: Message, prose: str = "") -> tuple[list[Finding], dict[str, str]]:
    """Per-recipient findings of a delivery-status part, and its per-message fields.

    A recipient block without a Diagnostic-Code is explained by the report's prose (``prose``,
    the human-readable part) where that names the recipient.
    """
    blocks = field_blocks(part)
    per_message: dict[str, str] = {}
    findings: list[Finding] = []
    for block in blocks:
        if not any(k in block for k in ("final-recipient", "original-recipient", "action", "status")):
            per_message.update({k: v for k, v in block.items() if k not in per_message})
            continue
        recipient = address_of(block.get("original-recipient")) or address_of(block.get("final-recipient"))
        action = (block.get("action") or "").strip().lower().split(" ")[0].rstrip(";")
        diag = _diagnostic(block.get("diagnostic-code")) or _prose_about(prose, recipient)
        status = parse_enhanced(block.get("status")) or parse_enhanced(diag)
        if action in ("delivered", "relayed", "expanded"):
            kind = BounceKind.DELIVERED
        elif action == "delayed":
            kind = BounceKind.SOFT
        else:
            kind = classify_smtp_reply(parse_reply_code(diag), status, diag)
            if kind is BounceKind.DELIVERED and action == "failed":
                kind = BounceKind.UNKNOWN  # a "failed" action with a 2.x.x status contradicts itself
        reason = diag or (f"{action or 'no action'}" + (f" ({status})" if status else ""))
        if action == "delayed" and diag:
            reason = f"delayed: {diag}"
        findings.append(Finding(kind, recipient, status, _short(reason)))
    return findings, per_message


def _prose_about(prose: str, recipient: str | None, limit: int = 400) -> str:
    """The prose from where it names ``recipient``, up to ``limit`` characters ('' if it does not)."""
    if not prose or not recipient:
        return ""
    at = prose.lower().find(recipient.lower())
    if at < 0:
        return ""
    return prose[at: at + limit]


FEEDBACK_COMPLAINTS = {"abuse", "fraud", "virus", "other", ""}


def read_arf(part: Message) -> dict[str, str]:
    """The fields of a feedback-report part (one block), keys lowercased."""
    merged: dict[str, str] = {}
    for block in field_blocks(part):
        for k, v in block.items():
            merged.setdefault(k, v)
    return merged


def arf_finding(fields: dict[str, str], original: Message | None) -> Finding:
    """A complaint (or UNKNOWN for not-spam and authentication-failure reports) for one report."""
    ftype = (fields.get("feedback-type") or "").strip().lower()
    recipient = address_of(fields.get("original-rcpt-to"))
    if recipient is None and original is not None:
        recipient = address_of(str(original.get("to") or ""))
    kind = BounceKind.COMPLAINT if ftype in FEEDBACK_COMPLAINTS else BounceKind.UNKNOWN
    reason = f"feedback-type {ftype or 'missing'}"
    ua = fields.get("user-agent")
    if ua:
        reason += f" from {ua}"
    return Finding(kind, recipient, None, _short(reason))


def original_message(part: Message) -> Message | None:
    """The returned original (full message or headers only) carried by a report part."""
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return payload[0]
    text = part_text(part)
    if not text.strip():
        return None
    try:
        return HeaderParser().parsestr(text, headersonly=True)
    except Exception:
        return None


def _short(text: str, limit: int = 300) -> str:
    """One line, at most ``limit`` characters: the reason is shown in tables and stored."""
    line = " ".join(_CONTROL_RE.sub(" ", str(text)).split())  # no terminal escapes or bidi tricks from a report
    return line if len(line) <= limit else line[: limit - 1] + "…"
