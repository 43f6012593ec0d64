"""Read one raw message into :class:`Bounce` records: DSN, ARF, prose bounce or auto-reply.

The order is from most to least structured: an RFC 5965 feedback report, an RFC 3464 delivery
status, a free-text bounce (see ``heuristics``), an RFC 3834 auto-reply. Attribution to a
(campaign, subscriber) comes first from our signed VERP address in the report's own envelope
headers, then from our headers quoted in the returned original. Input is capped at
``MAX_PARSE_BYTES``; anything malformed yields ``[]`` or an UNKNOWN record, never an exception.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from dataclasses import replace
from email.message import Message

from .classify import classify_smtp_reply  # noqa: F401  (re-exported: the send path classifies replies too)
from .dsn import (ARF_TYPES, DSN_TYPES, ORIGINAL_TYPES, Finding, _short, arf_finding, header_text, original_message, part_text,
                  read_arf, read_dsn)
from .heuristics import MAX_TEXT, auto_reply_reason, looks_like_bounce, party_addresses, read_nonstandard
from .model import Bounce, BounceKind, BounceSource
from .verp import find_verp

__all__ = ["parse_message", "classify_smtp_reply", "report_id", "MAX_PARSE_BYTES"]
log = logging.getLogger(__name__)

MAX_PARSE_BYTES = 2 * 1024 * 1024  # reports put their explanation first; the returned original may be cut
MAX_PARTS = 64  # MIME parts and boundaries read; a report has a handful
# Headers where the report's envelope recipient (our VERP address) shows.
ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "x-rcpt-to", "to",
                    "x-original-recipient", "original-recipient")
# Headers we put on each copy that may come back quoted: the VERP Return-Path and a signed reference.
QUOTED_HEADERS = ("return-path", "x-newsletter-ref", "errors-to", "sender", "x-original-mail-from")
REF_HEADER = "X-Newsletter-Ref"  # carries the same signed token as the VERP address


def report_id(raw: bytes, msg: Message | None) -> str:
    """The report's Message-ID (bounded, one line), else ``sha256:`` of its bytes."""
    if msg is not None:
        try:
            mid = " ".join(str(msg.get("message-id", "")).split())
        except Exception:
            mid = ""
        if 3 <= len(mid) <= 250:
            return mid
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def parse_message(raw: bytes, *, secret: bytes | str | None = None) -> list[Bounce]:
    """Every bounce, complaint, delivery or auto-reply one raw message reports; [] if it is none of these."""
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        return []
    raw = bytes(raw)
    head, cut = _bounded(raw)
    try:
        msg = email.message_from_bytes(head, policy=email.policy.compat32)
    except Exception as e:  # the email package is lenient; this is the last guard
        log.debug("unparseable message: %s", e)
        return [Bounce(BounceKind.UNKNOWN, BounceSource.HEURISTIC, reason="unreadable message",
                       report_id=report_id(raw, None))]
    rid = report_id(raw, msg)
    try:
        return _parse(msg, rid, secret, truncated=cut)
    except Exception as e:  # never let one odd message stop a mailbox run
        log.warning("message %s could not be read: %s: %s", rid, type(e).__name__, e)
        return [Bounce(BounceKind.UNKNOWN, BounceSource.HEURISTIC, reason=f"could not be read ({type(e).__name__})",
                       report_id=rid)]


_STRUCTURE_RE = re.compile(rb"boundary\s*=|\ncontent-type\s*:", re.IGNORECASE)


def _bounded(raw: bytes) -> tuple[bytes, bool]:
    """The first MAX_PARSE_BYTES, also cut before the MAX_PARTS-th MIME part or nested boundary.

    The email package checks every line against every open boundary, so deeply nested or
    many-part input costs far more than its size; real reports have a handful of parts, and what
    follows them (the returned original) can go.
    """
    head = raw[:MAX_PARSE_BYTES]
    for count, m in enumerate(_STRUCTURE_RE.finditer(head), 1):
        if count > MAX_PARTS:
            return head[: m.start()], True
    return head, len(raw) > MAX_PARSE_BYTES


def _walk(msg: Message):
    """Parts of the report itself, not descending into a returned original; bounded."""
    stack, seen = [msg], 0
    while stack and seen < MAX_PARTS:
        part = stack.pop(0)
        seen += 1
        yield part
        ctype = part.get_content_type()
        if part.is_multipart() and ctype not in ORIGINAL_TYPES:
            payload = part.get_payload()
            if isinstance(payload, list):
                stack[0:0] = [p for p in payload if isinstance(p, Message)]


def _parse(msg: Message, rid: str, secret, *, truncated: bool, depth: int = 0) -> list[Bounce]:
    dsn_parts, arf_parts, originals, texts = [], [], [], []
    text_budget = MAX_TEXT
    for part in _walk(msg):
        ctype = part.get_content_type()
        if ctype in DSN_TYPES:
            dsn_parts.append(part)
        elif ctype in ARF_TYPES:
            arf_parts.append(part)
        elif ctype in ORIGINAL_TYPES:
            original = original_message(part)
            if original is not None:
                originals.append(original)
        elif not part.is_multipart() and ctype in ("text/plain", "text/html") and text_budget > 0:
            text = part_text(part, text_budget)
            if ctype == "text/html":
                text = _strip_html(text)
            texts.append(text)
            text_budget -= len(text)
    original = originals[0] if originals else None
    text = "\n".join(texts)
    # Envelope values the report itself carries rank after its own headers, before quoted ones.
    report_values: list[tuple[str, str]] = []

    findings: list[Finding] = []
    source = BounceSource.HEURISTIC
    if not dsn_parts and not arf_parts and depth == 0:
        # A report forwarded as an attachment (a gateway wrapping the DSN): read the inner report once.
        for inner in originals[:3]:
            if inner.get_content_type() == "multipart/report":
                nested = _parse(inner, rid, secret, truncated=truncated, depth=1)
                if nested:
                    attribution = _attribute(msg, original, secret, [])
                    if attribution is not None:
                        nested = [replace(b, campaign_id=attribution[0][0], subscriber_id=attribution[0][1],
                                          attribution=attribution[1]) if b.campaign_id is None else b for b in nested]
                    return nested
    if arf_parts:
        source = BounceSource.ARF
        fields = read_arf(arf_parts[0])
        findings = [arf_finding(fields, original)]
        report_values.append((fields.get("original-mail-from", ""), "verp"))
    elif dsn_parts:
        source = BounceSource.DSN
        per_message: dict[str, str] = {}
        for part in dsn_parts[:5]:
            got, fields = read_dsn(part)
            findings.extend(got)
            per_message.update(fields)
        report_values.append((per_message.get("original-envelope-id", ""), "envid"))
        if not findings:  # a report with no per-recipient block (truncated): read the prose
            source = BounceSource.HEURISTIC
            findings = read_nonstandard(msg, text, party_addresses(msg, original))
    elif looks_like_bounce(msg, text):
        findings = read_nonstandard(msg, text, party_addresses(msg, original))
    else:
        reason = auto_reply_reason(msg)
        if reason is not None:
            sender = _from_address(msg)
            findings = [Finding(BounceKind.AUTO_REPLY, sender, None, reason)]
    attribution = _attribute(msg, original, secret, report_values)
    if not findings:
        if attribution is None:
            return []
        source = BounceSource.VERP
        findings = [Finding(BounceKind.UNKNOWN, None, None, "sent to our bounce address, but not a report we recognise")]
    if truncated:
        findings = [replace(f, reason=_short(f.reason + " (message cut: over 2 MiB or 64 parts)")) for f in findings]
    return [_bounce(f, source, rid, attribution) for f in findings]


def _bounce(f: Finding, source: BounceSource, rid: str, attribution) -> Bounce:
    campaign_id = subscriber_id = None
    how = None
    if attribution is not None:
        (campaign_id, subscriber_id), how = attribution
    return Bounce(kind=f.kind, source=source, recipient=f.recipient, status=f.status, reason=f.reason,
                  campaign_id=campaign_id, subscriber_id=subscriber_id, report_id=rid, attribution=how)


def _token(value: str, secret) -> tuple[int, int] | None:
    """A bare signed token (ENVID, X-Newsletter-Ref) read as ``x+TOKEN@x``."""
    value = " ".join(str(value).split())[:200]
    if not value or " " in value:
        return None
    return find_verp(f"x+{value.lower()}@ref.invalid", secret)


def _attribute(msg: Message, original: Message | None, secret,
               report_values: list[tuple[str, str]]) -> tuple[tuple[int, int], str] | None:
    """((campaign, subscriber), how): our VERP address in the report's envelope headers, then in
    its ARF/DSN envelope fields (``report_values``), then in the returned original's headers."""
    if not secret:
        return None
    for header in ENVELOPE_HEADERS:
        for value in (msg.get_all(header) or [])[:20]:
            found = find_verp(str(value), secret)
            if found:
                return found, "verp"
    for value in (msg.get_all("received") or [])[:30]:  # "for <bounces+token@...>"
        found = find_verp(str(value), secret)
        if found:
            return found, "verp"
    for value, how in report_values:
        found = find_verp(value, secret) or _token(value, secret)
        if found:
            return found, how
    if original is not None:
        for header in QUOTED_HEADERS:
            for value in (original.get_all(header) or [])[:5]:
                found = find_verp(str(value), secret) or _token(str(value), secret)
                if found:
                    return found, "quoted"
    return None


def _from_address(msg: Message) -> str | None:
    from email.utils import parseaddr

    _, addr = parseaddr(header_text(msg.get("from", "")))
    return addr or None


def _strip_html(html: str) -> str:
    """Text of an HTML explanation (tags dropped, entities decoded); linear in its length."""
    import html as _html

    text = re.sub(r"(?i)<br\s*/?>|</p>|</div>|</tr>|</li>", "\n", html)
    text = re.sub(r"<[^<>]{0,2000}>", " ", text)
    return _html.unescape(text)
