"""Dates from sources and from the command line, always timezone-aware.

A date without a time zone (``2026-11-01``, ``2026-11-01 09:30``) is taken in the
configured zone (``config.timezone``, UTC by default); a bare date means midnight there.
"""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_FORMATS = (
    "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d", "%Y/%m/%d %H:%M",
    "%d %B %Y", "%d %b %Y", "%B %d, %Y", "%b %d, %Y", "%B %d %Y", "%b %d %Y",
    "%d.%m.%Y", "%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%Y%m%d", "%m/%d/%Y", "%m/%d/%Y %H:%M", "%m/%d/%Y - %H:%M",
)
# "Sex, 03 Jan 2025 ..." (a weekday in another language): the weekday adds nothing, drop it.
_WEEKDAY = re.compile(r"^[^\W\d]{2,12}\.?,\s*")
_SINCE_RE = re.compile(r"^\s*(\d+)\s*(h|hours?|d|days?|w|weeks?)\s*$", re.IGNORECASE)


def zone(name: str | None) -> tzinfo:
    """The tzinfo for an IANA name ("UTC" and empty mean UTC); ValueError for an unknown zone."""
    if not name or name.upper() == "UTC":
        return timezone.utc
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}") from None


def aware(value: datetime, tz: str | tzinfo | None = None) -> datetime:
    """``value`` with a time zone: naive values are taken in ``tz`` (UTC by default)."""
    if value.tzinfo is not None and value.tzinfo.utcoffset(value) is not None:
        return value
    z = tz if isinstance(tz, tzinfo) else zone(tz)
    return value.replace(tzinfo=z)


def parse_date(value: object, tz: str | tzinfo | None = None) -> datetime:
    """A timezone-aware datetime from a YAML date/datetime or a string (ISO 8601, RFC 2822,
    "30 October 2024", "October 30, 2024", ...). Raises ValueError when it cannot tell."""
    if isinstance(value, datetime):
        return aware(value, tz)
    if isinstance(value, date):
        return aware(datetime.combine(value, time()), tz)
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 10_000_000:
        return datetime.fromtimestamp(value, timezone.utc)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"cannot parse date {value!r}")
    text = " ".join(value.split())
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        return aware(datetime.fromisoformat(iso), tz)
    except ValueError:
        pass
    try:
        return aware(parsedate_to_datetime(text), tz)
    except (TypeError, ValueError, IndexError):
        pass
    for candidate in (text, _WEEKDAY.sub("", text)):
        for fmt in _FORMATS:
            try:
                return aware(datetime.strptime(candidate, fmt), tz)
            except ValueError:
                continue
    stripped = _WEEKDAY.sub("", text)
    if stripped != text:
        try:
            return aware(parsedate_to_datetime("Mon, " + stripped), tz)
        except (TypeError, ValueError, IndexError):
            pass
    raise ValueError(f"cannot parse date {value!r} (use YYYY-MM-DD or ISO 8601)")


def parse_span(value: str) -> timedelta:
    """A span back from now as ``--since`` writes it (``12h``, ``7d``, ``2w``); ValueError otherwise
    (a date is not a span: ``default_since`` must move with the clock)."""
    m = _SINCE_RE.match(value or "")
    if not m or int(m.group(1)) < 1:
        raise ValueError(f"{value!r} is not a span like 7d, 24h or 2w")
    n, unit = int(m.group(1)), m.group(2).lower()[0]
    return {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]


def parse_since(value: str, now: datetime | None = None, tz: str | tzinfo | None = None) -> datetime:
    """The cut-off for ``--since``: a duration back from ``now`` (``12h``, ``7d``, ``2w``) or a
    date/datetime (``2026-11-01``, taken in ``tz`` when it has no zone). ValueError when malformed."""
    now = now or datetime.now(timezone.utc)
    m = _SINCE_RE.match(value or "")
    if m:
        n, unit = int(m.group(1)), m.group(2).lower()[0]
        delta = {"h": timedelta(hours=n), "d": timedelta(days=n), "w": timedelta(weeks=n)}[unit]
        return now - delta
    try:
        return parse_date(value, tz)
    except ValueError:
        raise ValueError(f"--since {value!r}: expected a duration like 7d, 12h, 2w or a date like 2026-11-01") from None
