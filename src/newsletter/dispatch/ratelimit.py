"""Rate limits shared by every connection of a process.

``--rate 20/s`` (or ``600/m``, ``10000/h``; several, comma-separated, all apply) is a token
bucket run as a GCRA: messages are spaced evenly at the stated rate with a burst of one, so no
window of the stated length ever holds more than N messages. Provider quotas such as "2,000 per
day" are sliding windows (``rate_window = "500/h,2000/d"``): the timestamps of the last window's
sends are kept (and may be seeded from the ledger so a restart does not forget them).

``rate_per_domain = {"gmail.com" = "20/s"}`` adds a bucket per recipient domain (the domain and
its subdomains): a copy to a gmail.com reader needs a slot in the gmail bucket *and* in the
global ones, taken together under one lock. A copy waiting for a busy domain holds no global
slot, so the other connections keep sending to other domains at the full global rate; the price
is that the connection holding it waits (at most that domain's interval per copy) — with every
connection waiting on the same slow domain, the send runs at that domain's pace until a copy for
another domain comes up. Waiting is sleeping until the computed instant: no spinning.
"""

from __future__ import annotations

import collections
import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping

from ..errors import ConfigError

_UNITS = {"s": 1.0, "sec": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|sec|m|min|h|d)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Rate:
    """``count`` messages per ``period`` seconds."""

    count: float
    period: float

    def __str__(self) -> str:
        unit = {1.0: "s", 60.0: "m", 3600.0: "h", 86400.0: "d"}.get(self.period, f"{self.period:g}s")
        return f"{self.count:g}/{unit}"


def parse_rates(spec: str | None, *, what: str = "rate") -> list[Rate]:
    """Parse ``"20/s"`` or ``"20/s, 1000/h"``; an empty or None spec means no limit."""
    if spec is None or not str(spec).strip() or str(spec).strip().lower() in {"0", "none", "unlimited"}:
        return []
    rates = []
    for part in str(spec).split(","):
        m = _RATE.match(part)
        if not m:
            raise ConfigError(f"{what} {spec!r}: expected N/s, N/m, N/h or N/d (for example 20/s)")
        count = float(m.group(1))
        if count <= 0:
            raise ConfigError(f"{what} {spec!r}: the count must be positive")
        rates.append(Rate(count, _UNITS[m.group(2).lower()]))
    return rates


def parse_domain_rates(spec: dict | None, *, where: str = "") -> dict[str, list[Rate]]:
    """``{"gmail.com": "20/s"}`` → {domain: [Rate]} (domains lower-cased, IDNA-encoded).
    ConfigError naming ``rate_per_domain`` and the domain for a bad entry."""
    at = f"{where}: " if where else ""
    out: dict[str, list[Rate]] = {}
    for raw, rate in (spec or {}).items():
        name = str(raw).strip().strip(".").lower()
        if not name or "@" in name or any(c.isspace() for c in name):
            raise ConfigError(f"{at}rate_per_domain: {raw!r} is not a domain name")
        try:
            name = name.encode("idna").decode("ascii")
        except UnicodeError:
            raise ConfigError(f"{at}rate_per_domain: {raw!r} is not a valid domain name") from None
        if not isinstance(rate, str):
            raise ConfigError(f"{at}rate_per_domain: {raw}: expected a rate string such as \"20/s\"")
        rates = parse_rates(rate, what=f"{at}rate_per_domain {name} =")
        if rates:
            out[name] = rates
    return out


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].strip().rstrip(".").lower()


class _Gcra:
    """Even spacing at ``rate`` with a burst of ``burst`` messages (generic cell rate algorithm)."""

    def __init__(self, rate: Rate, burst: int = 1):
        self.interval = rate.period / rate.count
        self.tolerance = self.interval * (max(1, burst) - 1)
        self.tat = 0.0  # theoretical arrival time of the next message

    def wait_time(self, now: float) -> float:
        tat = max(self.tat, now)
        allowed_at = tat - self.tolerance
        wait = allowed_at - now
        return wait if wait > 1e-9 else 0.0

    def take(self, now: float) -> None:
        self.tat = max(self.tat, now) + self.interval


class _Window:
    """At most ``count`` messages in any trailing ``period`` seconds."""

    def __init__(self, rate: Rate):
        self.count = int(rate.count)
        self.period = rate.period
        self.times: collections.deque[float] = collections.deque()

    def wait_time(self, now: float) -> float:
        while self.times and self.times[0] <= now - self.period:
            self.times.popleft()
        if len(self.times) < self.count:
            return 0.0
        return self.times[0] + self.period - now

    def take(self, now: float) -> None:
        self.times.append(now)


class RateLimiter:
    """Blocks callers (threads) so that all of them together respect every configured limit.

    ``acquire()`` returns True when a message may go now, or False if ``stop`` was set while
    waiting. With no limits it returns at once. ``on_grant``, when given, is called with the
    ``clock`` reading each message was granted at (under the limiter's lock, so keep it short):
    a way to watch the pacing, e.g. in tests.
    """

    def __init__(self, rates: Iterable[Rate] = (), windows: Iterable[Rate] = (), *, burst: int = 1,
                 clock=time.monotonic, per_domain: Mapping[str, Iterable[Rate]] | None = None,
                 on_grant: Callable[[float], None] | None = None):
        self._buckets = [_Gcra(r, burst) for r in rates]
        self._windows = [_Window(w) for w in windows]
        self._domains = {d.lower(): [_Gcra(r, burst) for r in rs] for d, rs in (per_domain or {}).items()}
        self._lock = threading.Lock()
        self._clock = clock
        self._on_grant = on_grant
        self.limited = bool(self._buckets or self._windows or self._domains)

    @classmethod
    def from_specs(cls, rate: str | None, window: str | None = None, *, per_domain: dict | None = None,
                   **kw) -> "RateLimiter":
        """A limiter from config-style specs (``rate``, ``window``: e.g. "20/s", "500/d"; ``per_domain``:
        domain -> rate); other keywords go to the constructor."""
        return cls(parse_rates(rate), parse_rates(window, what="rate window"),
                   per_domain=parse_domain_rates(per_domain), **kw)

    def _domain_buckets(self, recipient: str | None) -> list[_Gcra]:
        """The buckets of the recipient's domain: its own, or the closest configured parent's."""
        if not recipient or not self._domains:
            return []
        d = _domain_of(recipient)
        while d:
            if d in self._domains:
                return self._domains[d]
            d = d.partition(".")[2]
        return []

    def seed(self, ages: Iterable[float]) -> None:
        """Count earlier sends (seconds ago, e.g. from the ledger) against the sliding windows."""
        now = self._clock()
        stamps = sorted(now - a for a in ages)
        with self._lock:
            for w in self._windows:
                w.times.extend(t for t in stamps if t > now - w.period)

    def wait_time(self) -> float:
        with self._lock:
            now = self._clock()
            return max([0.0] + [b.wait_time(now) for b in self._buckets] + [w.wait_time(now) for w in self._windows])

    def try_acquire(self, recipient: str | None = None) -> float:
        """Take a slot if one is free now (returns 0.0), else return how long to wait. With
        ``recipient`` (an address or a domain) its domain's buckets must have a slot too; all
        slots are taken together or none is."""
        if not self.limited:
            return 0.0
        with self._lock:
            now = self._clock()
            mine = self._domain_buckets(recipient)
            wait = max([0.0] + [b.wait_time(now) for b in self._buckets] + [w.wait_time(now) for w in self._windows]
                       + [b.wait_time(now) for b in mine])
            if wait <= 0:
                for b in self._buckets:
                    b.take(now)
                for w in self._windows:
                    w.take(now)
                for b in mine:
                    b.take(now)
                if self._on_grant is not None:
                    self._on_grant(now)
            return wait

    def acquire(self, stop: threading.Event | None = None, max_wait: float | None = None,
                recipient: str | None = None) -> bool:
        """Wait for a slot and take it; False when ``stop`` is set (or ``max_wait`` passes) first."""
        if not self.limited:
            return True
        deadline = None if max_wait is None else self._clock() + max_wait
        while True:
            wait = self.try_acquire(recipient)
            if wait <= 0:
                return True
            if deadline is not None:
                left = deadline - self._clock()
                if left <= 0:
                    return False
                wait = min(wait, left)
            if stop is not None:
                if stop.wait(wait):
                    return False
            else:
                time.sleep(wait)


class MultiLimiter:
    """Several limiters that must all allow a message (process-wide and per-server)."""

    def __init__(self, *limiters: RateLimiter):
        self.parts = [lim for lim in limiters if lim is not None and lim.limited]
        self.limited = bool(self.parts)

    def acquire(self, stop: threading.Event | None = None) -> bool:
        for lim in self.parts:
            if not lim.acquire(stop):
                return False
        return True
