"""Mail header safety: the one check every message builder runs on every header value.

A header value may not hold a line break or control character — CR, LF, NUL, VT, FF, FS/GS/RS,
DEL, NEL (U+0085), LINE/PARAGRAPH SEPARATOR (U+2028/9) — and neither may the text any RFC 2047
encoded word in it decodes to: ``=?utf-8?q?x=0D=0ABcc:_all@evil.example?=`` is plain ASCII, but
``email.message.EmailMessage`` decodes it when the header is set and writes a real ``Bcc:`` line,
and mail clients decode it when they show it. Values the publisher wrote are refused with
``InvalidInput`` naming the header; untrusted text bound for a header (a subject made from
article titles, a reader's name) goes through :func:`header_text`, which keeps it readable and
makes its encoded words inert instead.
"""

from __future__ import annotations

import base64
import binascii
import re

from ..errors import InvalidInput

# Everything below space except TAB, DEL, and the Unicode line breaks Python's splitlines() knows.
UNSAFE = re.compile(r"[\x00-\x08\x0a-\x1f\x7f\x85\u2028\u2029]")
# An RFC 2047 encoded word, found as leniently as mail clients find them (inside words too).
ENCODED_WORD = re.compile(r"=\?([^?\s]*)\?([QqBb])\?([^?]*)\?=")
# A header name: printable ASCII except the colon (RFC 5322 ftext).
_NAME = re.compile(r"[!-9;-~]+")
# Headers the builders write themselves: an extra header of that name would duplicate or override one.
RESERVED = frozenset(h.lower() for h in (
    "From", "To", "Cc", "Bcc", "Subject", "Date", "Message-ID", "Reply-To", "Sender", "Return-Path",
    "MIME-Version", "Content-Type", "Content-Transfer-Encoding", "Content-ID", "Content-Disposition",
    "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "DKIM-Signature", "Received",
))
_WORD_JOINER = "\u2060"


def decode_word(charset: str, encoding: str, payload: str) -> str:
    """The text one encoded word stands for (unknown charsets as Latin-1, bad bytes replaced)."""
    raw = payload.encode("ascii", "replace")
    try:
        if encoding in "Qq":
            data = binascii.a2b_qp(raw, header=True)
        else:
            data = base64.b64decode(raw + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        data = raw
    charset = charset.split("*", 1)[0] or "latin-1"  # RFC 2231 language suffix: utf-8*en
    try:
        return data.decode(charset, "replace")
    except LookupError:  # unknown, or not a text encoding ("base64")
        return data.decode("latin-1")


def hidden_break(value: str) -> bool:
    """True when an encoded word in ``value`` decodes to a line break or control character."""
    if "=?" not in value:
        return False
    return any(UNSAFE.search(decode_word(*m.groups())) for m in ENCODED_WORD.finditer(value))


def check_header(name: str, value: str) -> str:
    """``value`` unchanged, or InvalidInput naming header ``name`` when it holds a line break or
    control character, itself or once its encoded words are decoded (header injection)."""
    if value is None:
        return value
    if UNSAFE.search(value):
        raise InvalidInput(f"{name}: line breaks are not allowed in a mail header (nor any other control character)")
    if hidden_break(value):
        raise InvalidInput(f"{name}: an encoded word (=?...?=) hides a line break or control character; not allowed in a mail header")
    return value


def check_header_name(name: str) -> str:
    """``name`` stripped, or InvalidInput: an extra header's name must be printable ASCII without a
    colon, and not one the message builders write themselves (From, To, Subject, List-Id...)."""
    n = (name or "").strip(" \t")
    if not _NAME.fullmatch(n):
        raise InvalidInput(f"header name {name!r}: only printable ASCII letters, digits and punctuation (no spaces, colons or control characters)")
    if n.lower() in RESERVED:
        raise InvalidInput(f"header name {n!r}: the message already has this header (it is set from the campaign and config)")
    return n


def header_text(text: str) -> str:
    """Untrusted text made fit for a header without refusing it: control characters and line
    breaks become spaces, and every ``=?`` gets an invisible WORD JOINER so nothing decodes it
    as an encoded word (the reader sees the text as written). Idempotent."""
    text = " ".join(UNSAFE.sub(" ", text or "").split())
    return text.replace("=?", "=" + _WORD_JOINER + "?") if "=?" in text else text


# An addr-spec as it may stand in ``<mailto:ADDR?subject=...>``: printable ASCII, nothing that ends
# the URL or the angle brackets (no spaces, <>, ?, &, #, %, quotes or control characters).
_MAILTO = re.compile(r"[A-Za-z0-9.!$'*+/=^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?")


def check_mailto(name: str, value: str) -> str:
    """``value`` stripped when it is a plain address fit for a ``mailto:`` link in a header, else
    InvalidInput naming the setting ``name`` (e.g. ``unsubscribe_mailto``)."""
    v = (value or "").strip()
    if not _MAILTO.fullmatch(v) or ".." in v:
        raise InvalidInput(f"{name}: {value!r} is not a plain email address (like unsubscribe@example.org; "
                           "no name, brackets, spaces, line breaks or control characters)")
    return v
