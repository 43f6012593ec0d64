"""One-off scheduled campaigns: "send campaign 12 on 1 December at 08:00 Paris time"."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy.engine import Engine

from ..errors import InvalidInput
from . import cron

UTC = timezone.utc


def schedule_campaign_at(engine: Engine, campaign: int | str, at: str, tz: str, *, now: datetime | None = None):
    """Schedule a draft (or re-schedule a scheduled) campaign for the local time ``at`` in ``tz``
    (DST rules as for digests). A time that is not in the future is refused. Returns the campaign."""
    from ..dispatch.campaigns import get_campaign, schedule_campaign

    zone = cron.get_zone(tz)
    when = cron.parse_local_time(at, zone)
    now = (now or datetime.now(UTC)).astimezone(UTC)
    if when <= now:
        raise InvalidInput(
            f"--at {at!r} ({when.astimezone(zone):%Y-%m-%d %H:%M %Z}) is in the past; give a future time")
    get_campaign(engine, campaign)  # NotFound first, before anything else is said
    return schedule_campaign(engine, campaign, when)
