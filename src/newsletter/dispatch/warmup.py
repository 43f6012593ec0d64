"""Warm-up of a new sending domain: a daily quota that ramps from a start date.

``warmup = "200/d x2 up to 50000"`` with ``warmup_start = "2026-12-01"`` allows 200 copies on the
start day (UTC), 400 the next, 800 the one after, ... and never more than 50,000 a day. Receivers
judge a new domain by its first weeks; a steady ramp is what they expect.

What counts against a day's quota is read from the ledger, so every process and every restart
agrees: the copies a server accepted that UTC day (``sent_at``, any campaign), plus the copies
claimed or being sent right now (they are about to be handed over). A sender claims no more than
what is left; when nothing is left and copies remain, the campaign auto-pauses (pause kind
``warmup``, a reason that starts with :data:`PAUSE_PREFIX`), and a worker resumes it at the first
pass of the next UTC day.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable

from sqlalchemy import func, select, text

from ..errors import ConfigError

UTC = timezone.utc
PAUSE_PREFIX = "auto-paused (warm-up)"

_NUM = r"(\d[\d_,]*)"
_SPEC = re.compile(
    rf"^\s*{_NUM}\s*/\s*d(?:ay)?\s*(?:[x×*]\s*(\d+(?:\.\d+)?))?\s*(?:up\s+to\s+{_NUM})?\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Warmup:
    """``start`` copies on day 0 (``since``), times ``factor`` each further UTC day, at most ``cap``."""

    start: int
    factor: float
    cap: int | None
    since: date

    def quota(self, day: date) -> int:
        """How many copies may be handed to servers on the UTC date ``day``."""
        n = max(0, (day - self.since).days)
        q = float(self.start)
        for _ in range(n):  # a loop, not factor ** n: stops at the cap, never overflows
            q *= self.factor
            if self.cap is not None and q >= self.cap:
                break
        q = int(q)
        return min(q, self.cap) if self.cap is not None else q


def _int(raw: str) -> int:
    return int(raw.replace("_", "").replace(",", ""))


def parse_warmup(spec: str | None, start: str | None, *, where: str = "") -> Warmup | None:
    """The Warmup of config keys ``warmup`` and ``warmup_start``, None when ``warmup`` is unset.

    ConfigError (one line naming the key) for a malformed spec, a factor below 1, a cap below the
    start, or a missing or malformed start date."""
    at = f"{where}: " if where else ""
    since = _start_date(start, at) if start is not None and str(start).strip() else None
    if spec is None or not str(spec).strip() or str(spec).strip().lower() in ("off", "none", "0"):
        return None
    m = _SPEC.match(str(spec))
    if not m:
        raise ConfigError(f"{at}warmup {spec!r}: expected N/d [xFACTOR] [up to CAP], for example \"200/d x2 up to 50000\"")
    first = _int(m.group(1))
    factor = float(m.group(2)) if m.group(2) else 2.0
    cap = _int(m.group(3)) if m.group(3) else None
    if first <= 0:
        raise ConfigError(f"{at}warmup {spec!r}: the daily start volume must be positive")
    if factor < 1:
        raise ConfigError(f"{at}warmup {spec!r}: the factor must be at least 1 (a ramp does not shrink)")
    if cap is not None and cap < first:
        raise ConfigError(f"{at}warmup {spec!r}: the cap ({cap}) is below the start volume ({first})")
    if since is None:
        raise ConfigError(f"{at}warmup_start: required when warmup is set (the first UTC day of the ramp, e.g. 2026-12-01)")
    return Warmup(first, factor, cap, since)


def _start_date(start, at: str) -> date:
    try:
        return date.fromisoformat(str(start).strip())
    except ValueError:
        raise ConfigError(f"{at}warmup_start {start!r}: expected a date YYYY-MM-DD") from None


def day_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The UTC day holding ``now``: [00:00, next 00:00)."""
    d = now.astimezone(UTC).date()
    start = datetime.combine(d, time(0), tzinfo=UTC)
    return start, start + timedelta(days=1)


class WarmupGate:
    """Today's allowance, read from the ledger at each claim (see the module docstring).

    ``clock`` returns an aware datetime (the worker's injected clock in tests)."""

    def __init__(self, warmup: Warmup, clock: Callable[[], datetime]):
        self.warmup, self.clock = warmup, clock

    def usage(self, conn) -> tuple[int, int]:
        """(used today, quota today): copies accepted since 00:00 UTC plus those in flight."""
        from ..store.queries import deliveries

        start, end = day_bounds(self.clock())
        d = deliveries.c
        # One statement, so one snapshot: counted as two, a copy that moved from "sending" to
        # "sent" between them (another sender's group commit) was in neither count. Claimed rows
        # are about to go (a dead worker's are released by the next sender); a row left "sending"
        # by a crash counts on the day it was marked, not forever.
        used = conn.execute(select(func.count()).select_from(deliveries).where(
            ((d.state == "sent") & (d.sent_at >= start) & (d.sent_at < end))
            | (d.state == "claimed")
            | ((d.state == "sending") & (d.updated_at >= start)))).scalar() or 0
        return int(used), self.warmup.quota(start.date())

    def room(self, conn) -> int:
        """How many more copies may be claimed today. The count and the claim that follows in the
        caller's transaction are serialised across processes, so two senders never both take the
        last slots: on PostgreSQL by a transaction-scoped advisory lock, on SQLite by taking the
        database's write lock first (a write statement that matches no row) so the count sees
        every committed claim."""
        if conn.dialect.name == "postgresql":
            conn.execute(text("select pg_advisory_xact_lock(hashtext('newsletter-warmup'))"))
        elif conn.dialect.name == "sqlite":
            conn.execute(text("update campaigns set id = id where 0 = 1"))
        used, quota = self.usage(conn)
        return max(0, quota - used)

    def pause_reason(self, conn) -> str:
        """The status reason of a campaign stopped by today's quota."""
        used, quota = self.usage(conn)
        _, nxt = day_bounds(self.clock())
        return f"{PAUSE_PREFIX}: {min(used, quota):,} of {quota:,} today; continues at 00:00 UTC ({nxt:%Y-%m-%d})"


def gate_for(config, clock: Callable[[], datetime] | None = None) -> WarmupGate | None:
    """The gate of ``config.warmup``, or None when warm-up is off."""
    w = parse_warmup(config.warmup, config.warmup_start)
    if w is None:
        return None
    return WarmupGate(w, clock or (lambda: datetime.now(UTC)))


def resume_warmed_up(engine, config, now: datetime, on_event: Callable[[str], None]) -> list[int]:
    """Campaigns paused by the warm-up quota go back to ``running`` once the quota has room again
    (the first pass of the next UTC day, or at once when warm-up was turned off). Only a warm-up
    pause is touched — compare-and-set on the pause kind, so a campaign a user paused meanwhile
    stays paused. Returns the ids resumed."""
    from ..store import queries as q
    from ..store.db import transaction
    from ..store.lifecycle import PauseKind

    with transaction(engine) as conn:
        ids = q.campaigns_paused_by(conn, PauseKind.WARMUP)
    if not ids:
        return []
    gate = gate_for(config, lambda: now)
    resumed = []
    for cid in ids:
        with transaction(engine) as conn:
            room = None if gate is None else gate.room(conn)
            if room == 0:
                continue
            if q.resume_paused_by(conn, cid, PauseKind.WARMUP, now):
                resumed.append(cid)
                on_event(f"campaign {cid}: warm-up quota has room again"
                         + (f" ({room:,} today)" if room is not None else " (warm-up is off)") + "; sending")
    return resumed
