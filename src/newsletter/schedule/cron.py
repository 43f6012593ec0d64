"""Schedules: cron expressions and simple forms, walked over wall-clock time with zoneinfo.

Why not croniter: croniter 7 runs ``30 2 * * *`` twice on a fall-back day (once at 02:30+02:00,
once at 02:30+01:00). Our rules (README "DST rules"):

* a wall-clock time that does not exist (spring-forward gap) runs once, at the first valid
  instant after the gap (``02:30`` on the last Sunday of March in Paris runs at 03:00+02:00);
* a wall-clock time that exists twice (fall-back) runs once, at its first occurrence —
  except for expressions whose hour field is ``*`` (or ``*/n``), which are about elapsed time
  and also run in the repeated hour, as Vixie cron does.

Every instant returned is an aware UTC ``datetime``; the clock is always passed in.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..errors import ScheduleError

UTC = timezone.utc

_MONTHS = {m.lower(): i for i, m in enumerate(calendar.month_abbr) if m}
_DAYS = {"sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6}
_FIELDS: tuple[tuple[str, int, int, dict[str, int]], ...] = (  # name, low, high, names
    ("minute", 0, 59, {}),
    ("hour", 0, 23, {}),
    ("day of month", 1, 31, {}),
    ("month", 1, 12, _MONTHS),
    ("day of week", 0, 7, _DAYS),
)
_MACROS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
# Longest a cron walk looks ahead before declaring "never": covers Feb 29 on a given weekday (28 years).
_HORIZON_YEARS = 30


def get_zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``, or a ScheduleError naming it."""
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ScheduleError(f"time zone {name!r}: not an IANA time zone name (e.g. Europe/Paris)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleError(f"time zone {name!r}: unknown (use an IANA name such as Europe/Paris or UTC)") from None


def _parse_value(token: str, field: int, expr: str) -> int:
    name, low, high, names = _FIELDS[field]
    t = token.lower()
    if t in names:
        return names[t]
    if not t.isdigit():
        raise ScheduleError(f"cron {expr!r}: {name} {token!r} is not a number{' or a name' if names else ''}")
    v = int(t)
    if not low <= v <= high:
        raise ScheduleError(f"cron {expr!r}: {name} {v} is out of range {low}-{high}")
    return v


def _parse_field(text: str, field: int, expr: str) -> tuple[frozenset[int], bool]:
    """The set of values a cron field allows, and whether it was unrestricted (``*`` or ``*/n``)."""
    name, low, high, _ = _FIELDS[field]
    values: set[int] = set()
    star = False
    for part in text.split(","):
        if not part:
            raise ScheduleError(f"cron {expr!r}: empty item in {name} field {text!r}")
        rng, _, step_s = part.partition("/")
        step = 1
        if step_s:
            if not step_s.isdigit() or int(step_s) == 0:
                raise ScheduleError(f"cron {expr!r}: step {step_s!r} in {name} field must be a positive number")
            step = int(step_s)
        if rng == "*":
            a, b = low, high if field != 4 else 6
            star = True
        elif "-" in rng:
            lo_s, _, hi_s = rng.partition("-")
            a, b = _parse_value(lo_s, field, expr), _parse_value(hi_s, field, expr)
            if field == 4 and b == 0 and a > 0:  # MON-SUN: Sunday closes the week as 7
                b = 7
            if a > b:
                raise ScheduleError(f"cron {expr!r}: range {rng!r} in {name} field goes backwards")
        else:
            a = _parse_value(rng, field, expr)
            b = high if step_s else a
        values.update(range(a, b + 1, step))
    if field == 4 and 7 in values:  # 7 is Sunday too
        values.discard(7)
        values.add(0)
    return frozenset(values), star


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule: the five cron fields as sets, plus the text it came from."""

    text: str
    cron: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    day_star: bool
    weekday_star: bool
    hour_star: bool

    def matches_date(self, d: date) -> bool:
        """Vixie rule: when both day fields are restricted, either one matching is enough."""
        if d.month not in self.months:
            return False
        dom = d.day in self.days
        dow = (d.isoweekday() % 7) in self.weekdays
        if self.day_star and self.weekday_star:
            return True
        if self.day_star:
            return dow
        if self.weekday_star:
            return dom
        return dom or dow


def parse_cron(expr: str) -> Schedule:
    """Parse a five-field cron expression (names, ranges, steps, lists, ``@daily``-style macros)."""
    if not isinstance(expr, str) or not expr.strip():
        raise ScheduleError("cron expression is empty")
    text = " ".join(expr.split())
    cron = _MACROS.get(text.lower(), text)
    parts = cron.split(" ")
    if len(parts) != 5:
        raise ScheduleError(f"cron {expr!r}: expected 5 fields (minute hour day month weekday), got {len(parts)}")
    (mi, _), (ho, hstar), (dm, dstar), (mo, _), (dw, wstar) = (_parse_field(p, i, expr) for i, p in enumerate(parts))
    sched = Schedule(text=text, cron=cron, minutes=mi, hours=ho, days=dm, months=mo, weekdays=dw,
                     day_star=dstar, weekday_star=wstar, hour_star=hstar)
    if _next_date(sched, date(2000, 1, 1), date(2000 + _HORIZON_YEARS, 1, 1)) is None:
        raise ScheduleError(f"cron {expr!r}: never matches a real date")
    return sched


_SIMPLE = re.compile(
    r"^(?:(?P<daily>daily|every day)|(?P<weekdays>weekdays)|weekly\s+(?P<dow>[a-z,\-]+)|monthly\s+(?P<dom>[0-9,\-]+))"
    r"\s+(?:at\s+)?(?P<h>\d{1,2}):(?P<m>\d{2})$"
)


def parse_every(text: str) -> Schedule:
    """Parse a simple form: ``daily 07:30``, ``weekdays 08:00``, ``weekly mon 08:00`` (or ``mon,thu``),
    ``monthly 1 09:00`` (day of month; a month without that day is skipped)."""
    t = " ".join(str(text).lower().split())
    m = _SIMPLE.match(t)
    if not m:
        raise ScheduleError(
            f"schedule {text!r}: expected 'daily HH:MM', 'weekdays HH:MM', 'weekly DAY HH:MM' or 'monthly DAY HH:MM'")
    h, mi = int(m["h"]), int(m["m"])
    if h > 23 or mi > 59:
        raise ScheduleError(f"schedule {text!r}: {m['h']}:{m['m']} is not a time of day")
    if m["daily"]:
        cron = f"{mi} {h} * * *"
    elif m["weekdays"]:
        cron = f"{mi} {h} * * 1-5"
    elif m["dow"]:
        cron = f"{mi} {h} * * {m['dow']}"
    else:
        cron = f"{mi} {h} {m['dom']} * *"
    try:
        sched = parse_cron(cron)
    except ScheduleError as e:
        raise ScheduleError(f"schedule {text!r}: {str(e).split(': ', 1)[-1]}") from None
    return Schedule(**{**sched.__dict__, "text": " ".join(str(text).split())})


def parse_schedule(text: str) -> Schedule:
    """A cron expression or a simple form, whichever ``text`` is."""
    t = " ".join(str(text).split()).lower()
    if re.match(r"^(daily|every day|weekdays|weekly|monthly)\b", t):
        return parse_every(text)
    return parse_cron(text)


def _next_date(s: Schedule, d: date, stop: date) -> date | None:
    while d < stop:
        if d.month not in s.months:
            # jump to the first day of the next month
            d = date(d.year + (d.month == 12), d.month % 12 + 1, 1)
            continue
        if s.matches_date(d):
            return d
        d += timedelta(days=1)
    return None


def _wall_times(s: Schedule, start: datetime):
    """Matching naive wall-clock times >= ``start`` (naive), in order."""
    stop = start.date().replace(year=start.year + _HORIZON_YEARS) if not (start.month == 2 and start.day == 29) \
        else date(start.year + _HORIZON_YEARS, 3, 1)
    hours = sorted(s.hours)
    minutes = sorted(s.minutes)
    d = _next_date(s, start.date(), stop)
    first = True
    while d is not None:
        for h in hours:
            for mi in minutes:
                w = datetime.combine(d, time(h, mi))
                if first and w < start:
                    continue
                yield w
        first = False
        d = _next_date(s, d + timedelta(days=1), stop)


def _instants(s: Schedule, wall: datetime, tz: ZoneInfo) -> list[datetime]:
    """The UTC instants a matching wall-clock time stands for in ``tz`` (see the module's DST rules)."""
    a0 = wall.replace(tzinfo=tz, fold=0)
    u0 = a0.astimezone(UTC)
    if u0.astimezone(tz).replace(tzinfo=None) != wall:
        # Nonexistent (in a gap): the first valid wall minute after it marks the end of the gap.
        w = wall
        for _ in range(24 * 60):
            w += timedelta(minutes=1)
            u = w.replace(tzinfo=tz, fold=0).astimezone(UTC)
            if u.astimezone(tz).replace(tzinfo=None) == w:
                return [u]
        raise ScheduleError(f"time zone {tz.key}: no valid time after {wall.isoformat()}")  # pragma: no cover
    u1 = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if u1 != u0 and s.hour_star:
        return sorted({u0, u1})
    return [u0]


def _offset_changes(zone: ZoneInfo, a: datetime, b: datetime) -> bool:
    return a.astimezone(zone).utcoffset() != b.astimezone(zone).utcoffset()


def next_after(s: Schedule, tz: ZoneInfo | str, after: datetime) -> datetime | None:
    """The first occurrence strictly after the aware instant ``after`` (UTC), or None if there is none."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    zone = get_zone(tz) if isinstance(tz, str) else tz
    after = after.astimezone(UTC)
    near = timedelta(hours=3)  # more than any DST shift in the tz database
    wall_after = after.astimezone(zone).replace(tzinfo=None).replace(second=0, microsecond=0)
    careful = _offset_changes(zone, after - near, after + near)
    # Around a fall-back, earlier wall times can be later instants: then start 3 hours of wall time early.
    start = wall_after - near if careful else wall_after
    best: datetime | None = None
    best_wall: datetime | None = None
    for wall in _wall_times(s, start):
        if best_wall is not None and (wall > best_wall + near or not careful):
            break
        for u in _instants(s, wall, zone):
            if u > after and (best is None or u < best):
                best, best_wall = u, wall
        if best is not None and not careful and _offset_changes(zone, best - near, best + near):
            careful = True  # a transition near the answer: look at the next few hours of wall time too
    return best


def occurrences(s: Schedule, tz: ZoneInfo | str, after: datetime, until: datetime, limit: int | None = None) -> list[datetime]:
    """Occurrences in the half-open window (after, until], oldest first (at most ``limit``, newest kept)."""
    out: list[datetime] = []
    t = after
    while True:
        n = next_after(s, tz, t)
        if n is None or n > until:
            break
        out.append(n)
        if limit is not None and len(out) > limit:
            out.pop(0)
        t = n
    return out


def last_in(s: Schedule, tz: ZoneInfo | str, after: datetime, until: datetime) -> datetime | None:
    """The newest occurrence in (after, until], found without walking the whole window
    (a per-minute schedule after a month of downtime is 40,000 occurrences)."""
    for width in (timedelta(hours=2), timedelta(days=2), timedelta(days=40), timedelta(days=400), None):
        lo = after if width is None or until - width <= after else until - width
        found = occurrences(s, tz, lo, until, limit=1)
        if found:
            return found[-1]
        if lo == after:
            return None
    return None  # pragma: no cover


def count_between(s: Schedule, tz: ZoneInfo | str, after: datetime, until: datetime, cap: int = 1000) -> int:
    """How many occurrences fall in (after, until), counting at most ``cap``."""
    n, t = 0, after
    while n < cap:
        following = next_after(s, tz, t)
        if following is None or following >= until:
            break
        n, t = n + 1, following
    return n


CATCH_UP_POLICIES = ("latest", "all", "none")
# An occurrence this close to the clock is "on time", even under catch-up "none".
DEFAULT_GRACE = timedelta(minutes=5)
# Under catch-up "all", never send more than this many stale occurrences in one go.
MAX_CATCH_UP = 100


@dataclass(frozen=True)
class DuePlan:
    """What to do for a schedule at ``now``: occurrences to run (oldest first), how many were
    passed over (counted up to 1000), and the newest occurrence <= now (the new "handled up to")."""

    run: list[datetime]
    missed: int
    cursor: datetime | None


def check_catch_up(policy: str) -> str:
    """``policy`` if it is a known catch-up policy, else a ScheduleError."""
    if policy not in CATCH_UP_POLICIES:
        raise ScheduleError(f"catch-up {policy!r}: expected one of {', '.join(CATCH_UP_POLICIES)}")
    return policy


def plan_due(s: Schedule, tz: ZoneInfo | str, handled_until: datetime, now: datetime, policy: str = "latest",
             *, grace: timedelta = DEFAULT_GRACE) -> DuePlan:
    """Which occurrences in (handled_until, now] to run under the catch-up ``policy``.

    * ``latest``: only the newest one (a worker back from downtime sends one digest, not a burst);
    * ``all``: every one, oldest first (the newest MAX_CATCH_UP at most);
    * ``none``: only an occurrence at most ``grace`` old; older ones are passed over.
    """
    check_catch_up(policy)
    latest = last_in(s, tz, handled_until, now)
    if latest is None:
        return DuePlan([], 0, None)
    if policy == "all":
        due = occurrences(s, tz, handled_until, now, limit=MAX_CATCH_UP)
        return DuePlan(due, count_between(s, tz, handled_until, due[0]), latest)
    earlier = count_between(s, tz, handled_until, latest)
    if policy == "latest" or now - latest <= grace:
        return DuePlan([latest], earlier, latest)
    return DuePlan([], earlier + 1, latest)


def parse_local_time(text: str, tz: ZoneInfo | str) -> datetime:
    """``2026-12-01 08:00`` (or ISO with an offset) read in ``tz`` → aware UTC; a nonexistent local
    time moves to the end of the gap, an ambiguous one means its first occurrence."""
    zone = get_zone(tz) if isinstance(tz, str) else tz
    try:
        dt = datetime.fromisoformat(str(text).strip())
    except ValueError:
        raise ScheduleError(f"time {text!r}: expected 'YYYY-MM-DD HH:MM' (or ISO 8601)") from None
    if dt.tzinfo is not None:
        return dt.astimezone(UTC)
    any_sched = parse_cron("* * * * *")
    naive = dt.replace(second=0, microsecond=0) if dt.second == 0 and dt.microsecond == 0 else dt
    inst = _instants(Schedule(**{**any_sched.__dict__, "hour_star": False}), naive, zone)[0]
    return inst


def parse_instant(text: str) -> datetime:
    """An ISO 8601 instant with an offset (``2026-12-07T08:00:05+01:00`` or ``...Z``) → aware UTC."""
    t = str(text).strip()
    try:
        dt = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    except ValueError:
        raise ScheduleError(f"time {text!r}: expected ISO 8601 with an offset, e.g. 2026-12-07T08:00:05+01:00") from None
    if dt.tzinfo is None:
        raise ScheduleError(f"time {text!r}: give an offset (+01:00 or Z) so the instant is unambiguous")
    return dt.astimezone(UTC)
