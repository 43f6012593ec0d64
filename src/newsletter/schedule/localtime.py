"""Local-time delivery: "each reader gets campaign 12 at 08:00 their time on 1 November".

``campaigns schedule ID --local-time 08:00 [--date D] [--window 1h] [--past next-day]`` records
the wish in the campaign's meta (``local_time``) and schedules the campaign for the first instant
any zone reaches 08:00 on that day: UTC+14. When a worker starts it, :func:`plan_ledger` makes
the ledger as for any campaign and gives every row a due time, ``deliveries.due_at``: 08:00 on
that day in the reader's zone (their preference-centre or signup ``timezone``, else their list's
default zone, else config ``timezone``), read with zoneinfo and the cron walker's DST rules. Rows
of one UTC offset share one instant: the buckets. A zone whose 08:00 passed more than ``--window``
before the start is handled by ``--past``: ``send`` (now), ``skip`` (the rows are skipped) or
``next-day`` (08:00 the next day). Senders claim only rows whose bucket is due, so the plan lives
in the ledger: pause, resume, a worker restart keep it, and the ledger's unique key stays the
once-per-reader guarantee. A list's quiet hours (schedule/quiet.py) move its readers' copies that
would fall inside them to their end.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import Callable
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection, Engine

from ..config import Config
from ..errors import ScheduleError
from . import cron

UTC = timezone.utc
PAST_CHOICES = ("send", "skip", "next-day")
DEFAULT_PAST = "next-day"
DEFAULT_WINDOW = timedelta(hours=1)
MAX_WINDOW = timedelta(hours=24)
# The first zone to reach a local time (Kiribati's Line Islands) and the last (UTC-12).
FIRST_OFFSET, LAST_OFFSET = timedelta(hours=14), timedelta(hours=-12)
META_KEY = "local_time"

_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_WINDOW = re.compile(r"^(?:(\d{1,3})h)?(?:(\d{1,4})m)?$")


def parse_clock(text: str) -> str:
    """``08:00`` (24-hour HH:MM) as written canonically, or a ScheduleError naming ``--local-time``."""
    m = _CLOCK.match(str(text).strip())
    if not m or int(m[1]) > 23 or int(m[2]) > 59:
        raise ScheduleError(f"--local-time {text!r}: expected a time of day HH:MM (24-hour), e.g. 08:00")
    return f"{int(m[1]):02d}:{m[2]}"


def parse_window(text: str) -> timedelta:
    """``30m``, ``6h`` or ``1h30m`` (more than 0, at most 24h), or a ScheduleError naming ``--window``."""
    t = str(text).strip().lower()
    m = _WINDOW.match(t)
    if not t or not m or not (m[1] or m[2]):
        raise ScheduleError(f"--window {text!r}: expected a duration such as 30m, 6h or 1h30m")
    w = timedelta(hours=int(m[1] or 0), minutes=int(m[2] or 0))
    if not timedelta(0) < w <= MAX_WINDOW:
        raise ScheduleError(f"--window {text!r}: must be more than 0 and at most 24h")
    return w


def check_past(text: str) -> str:
    """``text`` if it is a ``--past`` choice, else a ScheduleError listing them."""
    if text not in PAST_CHOICES:
        raise ScheduleError(f"--past {text!r}: expected one of {', '.join(PAST_CHOICES)}")
    return text


def parse_day(text: str) -> date:
    """``2026-11-01``, or a ScheduleError naming ``--date``."""
    try:
        d = date.fromisoformat(str(text).strip())
    except ValueError:
        raise ScheduleError(f"--date {text!r}: expected a day YYYY-MM-DD") from None
    if d.year > 9000:  # the instants around it (UTC-12, the window, the next day) must exist
        raise ScheduleError(f"--date {text!r}: too far in the future")
    return d


def offset_label(delta: timedelta | None) -> str:
    """``UTC+05:30`` for a UTC offset."""
    minutes = int((delta or timedelta(0)).total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


@dataclass(frozen=True)
class LocalTime:
    """A local-time schedule: the wall-clock ``time`` on ``day`` in each reader's zone."""

    time: str
    day: date
    window: timedelta = DEFAULT_WINDOW
    past: str = DEFAULT_PAST

    def as_meta(self) -> dict:
        return {"time": self.time, "date": self.day.isoformat(), "window_minutes": int(self.window.total_seconds() // 60),
                "past": self.past}

    @classmethod
    def from_meta(cls, d: dict) -> "LocalTime":
        return cls(d["time"], date.fromisoformat(d["date"]), timedelta(minutes=int(d["window_minutes"])), d["past"])

    def _wall(self, day: date) -> datetime:
        h, m = map(int, self.time.split(":"))
        return datetime.combine(day, time(h, m))

    def first_instant(self) -> datetime:
        """When the first zone (UTC+14) reaches the time: the campaign's ``scheduled_at``."""
        return (self._wall(self.day) - FIRST_OFFSET).replace(tzinfo=UTC)

    def last_instant(self) -> datetime:
        """When the last zone (UTC-12) reaches it."""
        return (self._wall(self.day) - LAST_OFFSET).replace(tzinfo=UTC)

    def due_in(self, zone: ZoneInfo, day: date | None = None) -> datetime:
        """The instant (UTC) the time comes on ``day`` (default: the schedule's) in ``zone``: a time
        in a spring-forward gap moves to the end of the gap, one that happens twice means its
        first occurrence (the cron walker's rules)."""
        return cron.parse_local_time(self._wall(day or self.day).isoformat(sep=" ", timespec="minutes"), zone)


def local_time_of(meta: dict | None) -> LocalTime | None:
    """The campaign's local-time schedule (from its meta), or None for an ordinary campaign."""
    d = (meta or {}).get(META_KEY)
    return LocalTime.from_meta(d) if d else None


def schedule_local_time(engine: Engine, campaign: int | str, local_time: str, *, tz: str, day: str | None = None,
                        window: str | None = None, past: str | None = None, now: datetime | None = None):
    """Schedule a draft (or move a scheduled) campaign for ``local_time`` in each reader's zone on
    ``day`` (default: today in ``tz``). Every option is checked before anything is stored; a day
    whose time (plus the window) has passed in every zone is refused. Returns the campaign."""
    from ..dispatch.campaigns import get_campaign, schedule_campaign, stored_id

    clock = parse_clock(local_time)
    w = parse_window(window) if window is not None else DEFAULT_WINDOW
    p = check_past(past if past is not None else DEFAULT_PAST)
    zone = cron.get_zone(tz)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    d = parse_day(day) if day is not None else now.astimezone(zone).date()
    spec = LocalTime(clock, d, w, p)
    if spec.last_instant() + w <= now:
        raise ScheduleError(f"--local-time {clock} on {d.isoformat()}: that time has passed in every time zone; "
                            "give a later --date")
    c = get_campaign(engine, campaign)  # NotFound first, before anything else is said
    from ..store.abtests import test_of
    from ..store.db import transaction

    with transaction(engine) as conn:
        ab = test_of(conn, stored_id(c))
    if ab is not None:  # the test share and the winner's wait are one moment for everyone
        raise ScheduleError(f"campaign {c.id}: an A/B test cannot go out at each reader's local time; "
                            "schedule it with --at instead")
    return schedule_campaign(engine, campaign, max(spec.first_instant(), now), local_time=spec.as_meta())


def reader_zone(reader: str, list_default: str, fallback: str) -> ZoneInfo:
    """The zone a reader gets a local-time campaign in: theirs, else their list's default, else
    the config's (each skipped when it is not a zone zoneinfo knows); UTC as the last resort."""
    for name in (reader, list_default, fallback):
        if name:
            try:
                return cron.get_zone(name)
            except ScheduleError:
                continue
    return ZoneInfo("UTC")


def plan_ledger(conn: Connection, campaign_id: int, config: Config, now: datetime, meta: dict) -> dict:
    """Create a local-time campaign's ledger with each row's bucket (see the module), in the
    caller's transaction, which also makes the campaign running. Records the plan (its buckets,
    what ``--past`` did) in the campaign's meta and returns it."""
    from ..store import queries as q

    spec = LocalTime.from_meta(meta[META_KEY])
    info: dict[str, tuple[datetime | None, str, str]] = {}  # zone -> (due, kind, UTC offset)

    def due(zone: ZoneInfo) -> datetime | None:
        if zone.key not in info:
            at: datetime | None = spec.due_in(zone)
            kind = "on time"
            if at is not None and at + spec.window <= now:
                if spec.past == "skip":
                    at, kind = None, "skipped"
                elif spec.past == "send":
                    at, kind = now, "late (--past send)"
                else:
                    at, kind = spec.due_in(zone, spec.day + timedelta(days=1)), "next day"
            info[zone.key] = (at, kind, offset_label((at or spec.due_in(zone)).astimezone(zone).utcoffset()))
        return info[zone.key][0]

    readers, defaults = q.audience_zones(conn, campaign_id)
    fallback = reader_zone("", "", config.timezone)
    times = q.DueTimes(by_reader_zone={name: due(reader_zone(name, "", "")) for name in readers if _known(name)},
                       by_list_zone={name: due(reader_zone(name, "", "")) for name in defaults if _known(name)},
                       default=due(fallback))
    q.create_ledger(conn, campaign_id, now, due=times)
    skipped = q.skip_unplanned(conn, campaign_id, now)
    from .quiet import move_out_of_quiet_hours  # a list's quiet hours, in the reader's zone

    after_quiet = move_out_of_quiet_hours(conn, campaign_id, lambda r, d: reader_zone(r, d, config.timezone))
    q.mark_ledger_created(conn, campaign_id, now)
    copies: dict[datetime, int] = {}
    zones: dict[datetime, set[str]] = {}
    skipped_zones: set[str] = set()
    for at, reader, list_default, n in q.ledger_zones(conn, campaign_id):
        zone = reader_zone(reader or "", list_default or "", config.timezone).key
        if at is None:
            skipped_zones.add(zone)
            continue
        copies[at] = copies.get(at, 0) + int(n)
        zones.setdefault(at, set()).add(zone)
    buckets = []
    for at in sorted(copies):
        names = sorted(zones[at])
        kind = info[names[0]][1]
        if _aware(at) in after_quiet:
            on_time = any(info[z][0] is not None and info[z][0] == _aware(at) for z in names)
            kind = f"{kind}, and after quiet hours" if on_time else "after quiet hours"
        buckets.append({"at": at.isoformat(), "kind": kind,
                        "offsets": sorted({info[z][2] for z in names}, reverse=True), "zones": names[:12],
                        "copies": copies[at]})
    plan = dict(meta[META_KEY], planned_at=now.isoformat(), buckets=buckets, skipped=skipped,
                skipped_zones=sorted(skipped_zones))
    q.set_campaign_meta(conn, campaign_id, dict(meta, **{META_KEY: plan}))
    return plan


def _aware(dt: datetime) -> datetime:
    return dt if dt.tzinfo is not None else dt.replace(tzinfo=UTC)


def _known(name: str) -> bool:
    try:
        cron.get_zone(name)
    except ScheduleError:
        return False
    return True


def planner(config: Config, clock: Callable[[], datetime] | None = None) -> Callable[[Connection, int], None]:
    """A hook for the moment a scheduled campaign goes running (the worker's start, ``send --now``):
    it plans a local-time campaign's ledger at ``clock()`` and leaves any other campaign alone."""
    from sqlalchemy import select

    from ..store import queries as q

    def plan(conn: Connection, campaign_id: int) -> None:
        meta, created = conn.execute(select(q.campaigns.c.meta, q.campaigns.c.ledger_created_at)
                                     .where(q.campaigns.c.id == campaign_id)).one()
        if local_time_of(meta) is not None and created is None:
            plan_ledger(conn, campaign_id, config, (clock() if clock else datetime.now(UTC)).astimezone(UTC), meta)

    return plan
