"""Who may use the admin pages and the API: password hash, signed session cookies, CSRF tokens,
the local-only guard and an in-memory rate limiter.

Nothing here touches the database; the app factory wires these into FastAPI dependencies.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer

SESSION_COOKIE = "nl_session"
SESSION_MAX_AGE = 12 * 3600


@dataclass(frozen=True)
class PasswordHash:
    """A scrypt hash of the admin password: the clear password is not kept after start-up."""

    salt: bytes
    digest: bytes

    @classmethod
    def of(cls, password: str) -> "PasswordHash":
        salt = secrets.token_bytes(16)
        return cls(salt, _scrypt(password, salt))

    def matches(self, candidate: str) -> bool:
        return hmac.compare_digest(self.digest, _scrypt(candidate, self.salt))


def _scrypt(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=2**14, r=8, p=1, dklen=32)


def token_matches(expected_hash: bytes | None, candidate: str | None) -> bool:
    """Constant-time comparison of an API token against the SHA-256 of the configured one."""
    if expected_hash is None or not candidate:
        return False
    return hmac.compare_digest(expected_hash, hashlib.sha256(candidate.encode("utf-8")).digest())


class Sessions:
    """Signed (not encrypted) session cookies holding a CSRF nonce and whether the visitor logged in.

    The payload never holds a secret: only ``{"csrf": nonce, "admin": bool}`` and a one-shot
    flash message shown after a redirect.
    """

    def __init__(self, key: bytes, *, max_age: int = SESSION_MAX_AGE):
        self._ser = URLSafeTimedSerializer(key, salt="newsletter.web.session")
        self.max_age = max_age

    def load(self, cookie: str | None) -> dict:
        if cookie:
            try:
                data = self._ser.loads(cookie, max_age=self.max_age)
                if isinstance(data, dict) and isinstance(data.get("csrf"), str):
                    return data
            except BadSignature:
                pass
        return {"csrf": secrets.token_urlsafe(24), "admin": False, "new": True}

    def dump(self, data: dict) -> str:
        out = {"csrf": data["csrf"], "admin": bool(data.get("admin"))}
        if data.get("flash"):
            out["flash"] = data["flash"]
        return self._ser.dumps(out)


def csrf_ok(session: dict, submitted: str | None) -> bool:
    """The form's token must equal the nonce in this visitor's signed session cookie."""
    return bool(submitted) and not session.get("new") and hmac.compare_digest(session["csrf"], submitted)


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8 and ::1 client addresses (the ASGI peer, never a forwarded header)."""
    if not host:
        return False
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def is_loopback_bind(host: str) -> bool:
    """Whether ``serve --host`` keeps the server on this machine."""
    return host in {"localhost", "ip6-localhost"} or is_loopback(host)


@dataclass
class RateLimiter:
    """Sliding-window limiter kept in this process's memory: at most ``limit`` hits per ``window``
    seconds per key. It resets on restart and is not shared between workers (fine for one `serve`)."""

    limit: int
    window: float
    _hits: dict[str, deque] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def hit(self, key: str, now: float | None = None) -> bool:
        """Record one hit; False when the key is over its limit (the hit is then not counted)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            q = self._hits.setdefault(key, deque())
            while q and q[0] <= now - self.window:
                q.popleft()
            if len(q) >= self.limit:
                return False
            q.append(now)
            if len(self._hits) > 50_000:  # bound memory under a flood of distinct keys
                for k in [k for k, v in self._hits.items() if not v][:10_000]:
                    del self._hits[k]
            return True

    def retry_after(self, key: str, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        q = self._hits.get(key)
        if not q:
            return 0
        return max(1, int(q[0] + self.window - now) + 1)
