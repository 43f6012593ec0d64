"""Quiet hours per list ("22:00-07:00"): a local-time campaign never plans a copy for a reader of
such a list inside them, in the reader's zone; the copy moves to the end of the quiet period.

``lists create|update SLUG --quiet-hours 22:00-07:00`` records them; when a worker plans a
local-time ledger (:func:`schedule.localtime.plan_ledger`), :func:`move_out_of_quiet_hours` gives
each row of such a list whose due time falls inside them the end of that period (07:00 the next
morning, read with the cron walker's DST rules), so the plan in the ledger already respects them.
A row belongs to the list whose unsubscribe link its copy carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from sqlalchemy.engine import Connection

from ..errors import InvalidInput
from . import cron

_SPAN = re.compile(r"^(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})$")


@dataclass(frozen=True)
class QuietHours:
    """From ``start`` to ``end`` (minutes after midnight, local); ``start > end`` crosses midnight."""

    start: int
    end: int

    def __str__(self) -> str:
        return f"{self.start // 60:02d}:{self.start % 60:02d}-{self.end // 60:02d}:{self.end % 60:02d}"

    def end_after(self, at: datetime, zone: ZoneInfo) -> datetime | None:
        """The end of the quiet period ``at`` (an aware instant) falls in, in ``zone``, as UTC; None
        when ``at`` is outside quiet hours there."""
        local = at.astimezone(zone)
        minute = local.hour * 60 + local.minute
        if self.start < self.end:
            inside, day = self.start <= minute < self.end, local.date()
        else:
            inside = minute >= self.start or minute < self.end
            day = local.date() + timedelta(days=1) if minute >= self.start else local.date()
        if not inside:
            return None
        wall = datetime.combine(day, time(self.end // 60, self.end % 60))
        end = cron.parse_local_time(wall.isoformat(sep=" ", timespec="minutes"), zone)
        if end <= at:  # a wall time the autumn change makes happen twice: its second occurrence
            end = wall.replace(tzinfo=zone, fold=1).astimezone(timezone.utc)
        return end if end > at else at


def parse_quiet_hours(text: str) -> QuietHours:
    """``22:00-07:00`` (24-hour HH:MM-HH:MM, start and end differ), or InvalidInput naming ``--quiet-hours``."""
    m = _SPAN.match(str(text).strip())
    if not m or int(m[1]) > 23 or int(m[3]) > 23 or int(m[2]) > 59 or int(m[4]) > 59:
        raise InvalidInput(f"--quiet-hours {text!r}: expected HH:MM-HH:MM (24-hour), e.g. 22:00-07:00")
    q = QuietHours(int(m[1]) * 60 + int(m[2]), int(m[3]) * 60 + int(m[4]))
    if q.start == q.end:
        raise InvalidInput(f"--quiet-hours {text!r}: the start and the end are the same time")
    return q


def move_out_of_quiet_hours(conn: Connection, campaign_id: int, zone_of) -> set[datetime]:
    """Give every planned row of a local-time ledger whose list has quiet hours, and whose due time
    falls inside them in its reader's zone (``zone_of(reader_zone, list_zone)``), the end of that
    quiet period. Returns the new due instants (for the buckets' labels)."""
    from ..store.queries import quiet as qq

    moved: dict[datetime, list[int]] = {}
    ends: dict[tuple, datetime | None] = {}
    for row_id, due, reader, list_zone, quiet in qq.quiet_list_rows(conn, campaign_id):
        key = (due, reader, list_zone, quiet)
        if key not in ends:
            ends[key] = parse_quiet_hours(quiet).end_after(_aware(due), zone_of(reader or "", list_zone or ""))
        if ends[key] is not None:
            moved.setdefault(ends[key], []).append(row_id)  # type: ignore[arg-type]
    for due, ids in moved.items():
        qq.move_due(conn, campaign_id, ids, due)
    return set(moved)


def _aware(dt: datetime) -> datetime:
    from datetime import timezone

    return dt if dt.tzinfo is not None else dt.replace(tzinfo=timezone.utc)
