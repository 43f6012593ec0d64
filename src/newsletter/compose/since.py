"""``--since`` values: relative spans (``7d``, ``24h``, ``2w``) or absolute dates.

The parsing itself is ``newsletter.articles.dates.parse_since`` (sources' dates and ``--since``
follow one rule); this wrapper turns its ValueError into the SelectionError compose callers
expect and accepts an already-parsed datetime.
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo

from ..errors import SelectionError


def parse_since(value: str | datetime, now: datetime | None = None, tz: str | tzinfo | None = None) -> datetime:
    """The aware cut-off ``value`` names: ``7d``/``24h``/``2w`` before ``now``, a date
    (``2026-11-01``, midnight in ``tz``, UTC by default) or an ISO 8601 date-time.
    Raises SelectionError (one line) when ``value`` is neither."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    from ..articles.dates import parse_since as parse

    if now is not None and now.tzinfo is None:
        now = now.replace(tzinfo=timezone.utc)
    try:
        return parse(str(value), now=now, tz=tz)
    except ValueError as e:
        raise SelectionError(str(e)) from None
