"""VERP: a signed envelope sender per copy, so a bounce names its campaign and subscriber.

Every copy of a campaign goes out with ``MAIL FROM:<bounces+TOKEN@example.org>`` where TOKEN is
an HMAC-signed (campaign, subscriber) pair in lowercase base32 (see ``store/tokens.py``). A
receiving MTA sends its bounce to that address, so attribution does not depend on the bounce
quoting our headers. ``Feedback-ID`` is Gmail's feedback-loop header, aggregated per field.
"""

from __future__ import annotations

import re

from ..errors import InvalidToken
from ..store.tokens import bounce_token, verify_bounce_token

MAX_LOCAL_PART = 64  # RFC 5321 section 4.5.3.1.1
SEPARATORS = "+-="  # what may stand between the base local part and the token
# The token is the run of base32 letters after the last separator of the local part.
_TOKEN_RE = re.compile(r"[+\-=]([a-z2-7]{16,80})$")
_ADDRESS_RE = re.compile(r"([^\s<>()\[\];,\"']{1,256})@([a-z0-9.\-\[\]:]{1,255})", re.IGNORECASE)


def verp_address(bounce_address: str, secret: bytes | str, campaign_id: int, subscriber_id: int,
                 *, separator: str = "+") -> str:
    """``bounces+<token>@example.org`` for ``bounces@example.org``; ValueError if it cannot be built.

    The local part must stay within 64 octets: a base local part longer than about 25 characters
    leaves no room for the token and is refused rather than silently truncated.
    """
    if separator not in SEPARATORS or len(separator) != 1:
        raise ValueError(f"VERP separator must be one of {' '.join(SEPARATORS)}, not {separator!r}")
    local, at, domain = (bounce_address or "").strip().rpartition("@")
    if not at or not local or not domain or any(c.isspace() or c in '<>"' for c in bounce_address.strip()):
        raise ValueError(f"bounce address {bounce_address!r} is not a plain local@domain address")
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    token = bounce_token(secret, campaign_id, subscriber_id)
    new_local = f"{local}{separator}{token}"
    if len(new_local.encode("utf-8")) > MAX_LOCAL_PART:
        raise ValueError(f"bounce address {bounce_address!r}: local part {local!r} is too long to carry a VERP "
                         f"token within {MAX_LOCAL_PART} octets")
    return f"{new_local}@{domain}"


def _local_part(address: str) -> str | None:
    text = address.strip()
    if ";" in text:  # "rfc822; bounces+x@example.org" as in DSN fields
        text = text.split(";", 1)[1].strip()
    text = text.strip("<> \t\"'")
    m = _ADDRESS_RE.search(text)
    if m is None:
        return None
    return m.group(1)


def read_verp_address(address: str, secret: bytes | str) -> tuple[int, int] | None:
    """(campaign_id, subscriber_id) for a genuine VERP address of ours, else None; never raises."""
    try:
        if not isinstance(address, str) or not address or len(address) > 1000 or not secret:
            return None
        local = _local_part(address)
        if local is None:
            return None
        m = _TOKEN_RE.search(local.lower())
        if m is None:
            return None
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        return verify_bounce_token(secret, m.group(1))
    except (InvalidToken, ValueError, TypeError, UnicodeError):
        return None


def find_verp(text: str, secret: bytes | str) -> tuple[int, int] | None:
    """The first genuine VERP address anywhere in ``text`` (a header value, a DSN field), else None."""
    if not text or not secret:
        return None
    for m in _ADDRESS_RE.finditer(text[:20000]):
        found = read_verp_address(m.group(0), secret)
        if found is not None:
            return found
    return None


_FEEDBACK_FIELD = re.compile(r"[^A-Za-z0-9._\-]+")
FEEDBACK_FIELD_MAX = 32


def _fb_field(value: object) -> str:
    text = _FEEDBACK_FIELD.sub("-", str(value)).strip("-")
    return text[:FEEDBACK_FIELD_MAX] or "none"


def feedback_id(campaign_id: int, list_slug: str, sender_id: str) -> str:
    """A Gmail ``Feedback-ID`` value ``<campaign>:<list>:newsletter:<SenderId>``.

    Gmail reports complaint rates per field, so the campaign and the list each get one; each
    field is reduced to ``[A-Za-z0-9._-]`` (no colon, no whitespace, no header injection) and
    capped at 32 characters.
    """
    return ":".join([_fb_field(int(campaign_id)), _fb_field(list_slug), "newsletter", _fb_field(sender_id)])
