"""HMAC-SHA256 signed tokens for unsubscribe and confirmation links.

A token is ``base64url(payload || mac)`` without padding, where the payload holds a
kind byte and varint-encoded integers, and the MAC is the first 16 bytes of
HMAC-SHA256 under a key derived per purpose from the secret. Unsubscribe tokens name
(subscriber, list) and never expire (a reader may click an old email years later); so do
preferences tokens, which name (subscriber, key version): bumping the version stored with the
subscriber revokes every older link. Confirm tokens also carry an expiry time. Subscriber ids are never reused, so a token
cannot act on another address. Verification compares MACs in constant time.

View tokens name (campaign, subscriber) and never expire: the "view in browser" link of one
copy opens that reader's copy (their merge tags filled) for as long as they keep the email.

Bounce tokens (VERP, the envelope sender of one copy) name (campaign, subscriber) and are
written in lowercase unpadded base32 with a 12-byte MAC, so they stay short, survive an MTA
that changes the case of a local part, and hold only ``[a-z2-7]``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from datetime import datetime, timedelta

from ..errors import InvalidToken

VERSION = 1
MAC_BYTES = 16
DEFAULT_CONFIRM_TTL = timedelta(days=7)
_UNSUBSCRIBE = b"u"
_CONFIRM = b"c"
_BOUNCE = b"b"
_REJOIN = b"r"  # a signup by a known address: names the list and when it was asked for (see store/signup.py)
_OPEN = b"o"  # the open pixel of one copy: (campaign, subscriber)
_CLICK = b"k"  # one tracked link of one copy: (campaign, subscriber, link index)
_PREFERENCES = b"p"  # a reader's preference centre: (subscriber, their link's key version)
_VIEW = b"v"  # a reader's own web version of one campaign: (campaign, subscriber)
_PURPOSE = {_UNSUBSCRIBE: b"newsletter/unsubscribe/v1", _CONFIRM: b"newsletter/confirm/v1",
            _BOUNCE: b"newsletter/bounce/v1", _REJOIN: b"newsletter/rejoin/v1",
            _OPEN: b"newsletter/open/v1", _CLICK: b"newsletter/click/v1",
            _PREFERENCES: b"newsletter/preferences/v1", _VIEW: b"newsletter/view/v1"}
_NAME = {_UNSUBSCRIBE: "unsubscribe", _CONFIRM: "confirmation", _BOUNCE: "bounce", _REJOIN: "confirmation",
         _OPEN: "open", _CLICK: "click", _PREFERENCES: "preferences", _VIEW: "web version"}
# Shorter than MAC_BYTES: a VERP local part must fit in 64 octets; a tracked link is in every
# anchor of every copy (96 bits still leave forgery at 2^-96 per try).
_MAC_LEN = {_BOUNCE: 12, _OPEN: 12, _CLICK: 12}


def _invalid(kind: bytes, reason: str, detail: str) -> InvalidToken:
    err = InvalidToken(f"{_NAME[kind]} token is {reason}: {detail}")
    err.reason = reason  # "forged" | "expired" | "malformed"
    return err


def _key(secret: bytes, kind: bytes) -> bytes:
    if isinstance(secret, str):
        secret = secret.encode("utf-8")
    if not secret:
        raise ValueError("secret key is empty")
    return hmac.new(secret, _PURPOSE[kind], hashlib.sha256).digest()


def _varint(n: int) -> bytes:
    if n < 0:
        raise ValueError("token fields must be non-negative integers")
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes, count: int) -> list[int] | None:
    values, pos = [], 0
    for _ in range(count):
        n = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                return None
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                break
        values.append(n)
    return values if pos == len(data) else None


def _signed_with(key: bytes, kind: bytes, fields: list[int]) -> bytes:
    """Payload and MAC under an already derived ``key`` (see :func:`_key`)."""
    payload = bytes([VERSION]) + kind + b"".join(_varint(int(f)) for f in fields)
    return payload + hmac.new(key, payload, hashlib.sha256).digest()[:_MAC_LEN.get(kind, MAC_BYTES)]


def _signed(secret: bytes, kind: bytes, fields: list[int]) -> bytes:
    return _signed_with(_key(secret, kind), kind, fields)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _sign(secret: bytes, kind: bytes, fields: list[int]) -> str:
    return _b64(_signed(secret, kind, fields))


def _open(secret: bytes, kind: bytes, token: str, count: int) -> list[int]:
    if not isinstance(token, str) or not token or len(token) > 200:
        raise _invalid(kind, "malformed", "empty or too long")
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise _invalid(kind, "malformed", "not base64url") from None
    if base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii") != token:
        raise _invalid(kind, "malformed", "not canonical base64url")
    return _check(secret, kind, raw, count)


def _check(secret: bytes, kind: bytes, raw: bytes, count: int) -> list[int]:
    mac_len = _MAC_LEN.get(kind, MAC_BYTES)
    if len(raw) < 2 + mac_len + count or raw[0] != VERSION or raw[1:2] != kind:
        raise _invalid(kind, "malformed", "wrong length, version or kind")
    payload, mac = raw[:-mac_len], raw[-mac_len:]
    expected = hmac.new(_key(secret, kind), payload, hashlib.sha256).digest()[:mac_len]
    if not hmac.compare_digest(mac, expected):
        raise _invalid(kind, "forged", "signature does not match")
    fields = _read_varints(payload[2:], count)
    if fields is None:
        raise _invalid(kind, "malformed", "bad fields")
    return fields


def unsubscribe_token(secret: bytes, subscriber_id: int, list_id: int) -> str:
    """A non-expiring token that unsubscribes ``subscriber_id`` from ``list_id``."""
    return _sign(secret, _UNSUBSCRIBE, [subscriber_id, list_id])


def verify_unsubscribe_token(secret: bytes, token: str) -> tuple[int, int]:
    """(subscriber_id, list_id) of a genuine unsubscribe token; InvalidToken otherwise."""
    sid, lid = _open(secret, _UNSUBSCRIBE, token, 2)
    return sid, lid


def _timestamp(now: datetime | float | None) -> float:
    if now is None:
        return time.time()
    if isinstance(now, datetime):
        return now.timestamp()
    return float(now)


def confirm_token(
    secret: bytes,
    subscriber_id: int,
    list_id: int,
    *,
    ttl: timedelta = DEFAULT_CONFIRM_TTL,
    now: datetime | float | None = None,
) -> str:
    """A token confirming ``subscriber_id`` on ``list_id``, valid for ``ttl`` (default 7 days)."""
    expires = int(_timestamp(now) + ttl.total_seconds())
    return _sign(secret, _CONFIRM, [subscriber_id, list_id, expires])


def verify_confirm_token(secret: bytes, token: str, *, now: datetime | float | None = None) -> tuple[int, int]:
    """(subscriber_id, list_id) of a genuine, unexpired confirm token; InvalidToken otherwise."""
    sid, lid, expires = _open(secret, _CONFIRM, token, 3)
    if _timestamp(now) > expires:
        raise _invalid(_CONFIRM, "expired", "ask for a new confirmation email")
    return sid, lid


def bounce_token(secret: bytes, campaign_id: int, subscriber_id: int) -> str:
    """A non-expiring token for a VERP local part naming one copy: lowercase base32, ``[a-z2-7]`` only."""
    return base64.b32encode(_signed(secret, _BOUNCE, [campaign_id, subscriber_id])).rstrip(b"=").decode("ascii").lower()


def verify_bounce_token(secret: bytes, token: str) -> tuple[int, int]:
    """(campaign_id, subscriber_id) of a genuine bounce token, in any letter case; InvalidToken otherwise."""
    if not isinstance(token, str) or not token or len(token) > 100:
        raise _invalid(_BOUNCE, "malformed", "empty or too long")
    upper = token.upper()
    try:
        raw = base64.b32decode(upper + "=" * (-len(upper) % 8))
    except (binascii.Error, ValueError):
        raise _invalid(_BOUNCE, "malformed", "not base32") from None
    if base64.b32encode(raw).rstrip(b"=").decode("ascii") != upper:
        raise _invalid(_BOUNCE, "malformed", "not canonical base32")
    cid, sid = _check(secret, _BOUNCE, raw, 2)
    return cid, sid


def rejoin_token(secret: bytes, subscriber_id: int, list_id: int, *, now: datetime | float | None = None) -> str:
    """A token by which a person already stored joins ``list_id`` (again), valid for
    DEFAULT_CONFIRM_TTL; it carries when it was issued (milliseconds), so an opt-out made after
    it was sent wins over it."""
    return _sign(secret, _REJOIN, [subscriber_id, list_id, int(_timestamp(now) * 1000)])


def verify_rejoin_token(secret: bytes, token: str, *, now: datetime | float | None = None) -> tuple[int, int, float]:
    """(subscriber_id, list_id, issued as a POSIX timestamp) of a genuine, unexpired rejoin token."""
    sid, lid, issued_ms = _open(secret, _REJOIN, token, 3)
    if _timestamp(now) > issued_ms / 1000 + DEFAULT_CONFIRM_TTL.total_seconds():
        raise _invalid(_REJOIN, "expired", "ask for a new confirmation email")
    return sid, lid, issued_ms / 1000


def is_rejoin_token(token: str) -> bool:
    """Whether a /confirm/ link's token is a rejoin token (by its kind byte; not verified)."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)) if isinstance(token, str) and len(token) <= 200 else b""
    except (binascii.Error, ValueError):
        return False
    return raw[1:2] == _REJOIN


def open_key(secret: bytes) -> bytes:
    """The derived key of open tokens, computed once per campaign by the message factory."""
    return _key(secret, _OPEN)


def open_token(secret: bytes, campaign_id: int, subscriber_id: int, *, key: bytes | None = None) -> str:
    """A non-expiring token for the open pixel of one copy (one HMAC with ``key`` from :func:`open_key`)."""
    return _b64(_signed_with(key or open_key(secret), _OPEN, [campaign_id, subscriber_id]))


def verify_open_token(secret: bytes, token: str) -> tuple[int, int]:
    """(campaign_id, subscriber_id) of a genuine open token; InvalidToken otherwise."""
    cid, sid = _open(secret, _OPEN, token, 2)
    return cid, sid


def click_key(secret: bytes) -> bytes:
    """The derived key of click tokens, computed once per campaign by the message factory."""
    return _key(secret, _CLICK)


def click_token(key: bytes, campaign_id: int, subscriber_id: int, link: int) -> str:
    """A non-expiring token naming link ``link`` of one copy (``key`` from :func:`click_key`):
    an old email's links keep working, and the redirect can only go to that campaign's link."""
    return _b64(_signed_with(key, _CLICK, [campaign_id, subscriber_id, link]))


def verify_click_token(secret: bytes, token: str) -> tuple[int, int, int]:
    """(campaign_id, subscriber_id, link index) of a genuine click token; InvalidToken otherwise."""
    cid, sid, link = _open(secret, _CLICK, token, 3)
    return cid, sid, link


def preferences_token(secret: bytes, subscriber_id: int, version: int) -> str:
    """A non-expiring token opening ``subscriber_id``'s preference centre; it is honoured only
    while ``version`` is the key version stored with the subscriber (store/preferences.py)."""
    return _sign(secret, _PREFERENCES, [subscriber_id, version])


def verify_preferences_token(secret: bytes, token: str) -> tuple[int, int]:
    """(subscriber_id, key version) of a genuine preferences token; InvalidToken otherwise."""
    sid, version = _open(secret, _PREFERENCES, token, 2)
    return sid, version


def view_key(secret: bytes) -> bytes:
    """The derived key of view tokens, computed once per campaign by the message factory."""
    return _key(secret, _VIEW)


def view_token(key: bytes, campaign_id: int, subscriber_id: int) -> str:
    """A non-expiring token opening ``subscriber_id``'s copy of ``campaign_id`` in a browser
    (``key`` from :func:`view_key`: one HMAC per copy)."""
    return _b64(_signed_with(key, _VIEW, [campaign_id, subscriber_id]))


def verify_view_token(secret: bytes, token: str) -> tuple[int, int]:
    """(campaign_id, subscriber_id) of a genuine view token; InvalidToken otherwise."""
    cid, sid = _open(secret, _VIEW, token, 2)
    return cid, sid
