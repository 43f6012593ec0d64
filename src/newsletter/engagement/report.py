"""A campaign's report: who got it, who opened and clicked (people apart from machines), who
left, what bounced — the same data for the CLI, the API and the admin page."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta

from ..store.db import transaction
from . import events as ev
from .classify import Agent
from .links import CANARY


@dataclass
class Counts:
    """Events and distinct readers of one kind, per agent."""

    events: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Agent})
    readers: dict[str, int] = field(default_factory=lambda: {a.value: 0 for a in Agent})


@dataclass
class LinkRow:
    """Clicks on one tracked link: by people (events, readers) and by machines (events)."""

    idx: int
    url: str
    human_clicks: int = 0
    human_readers: int = 0
    machine_clicks: int = 0


@dataclass
class Report:
    """What ``campaigns report`` shows. Rates are over copies delivered; click-to-open is
    human clickers over human openers."""

    campaign_id: int
    subject: str
    status: str
    tracking: list[str]
    sent_at: datetime | None
    delivered: int
    failed: int
    opens: Counts
    clicks: Counts
    unsubscribes: int
    bounces: dict[str, int]
    complaints: int
    links: list[LinkRow] = field(default_factory=list)
    timeline: list[dict] = field(default_factory=list)
    # An A/B campaign's test: settings, phase, decision and numbers per variant (``dispatch.abtest.ABStatus``).
    ab: dict | None = None

    @property
    def human_open_rate(self) -> float | None:
        return self.opens.readers["human"] / self.delivered if self.delivered else None

    @property
    def human_click_rate(self) -> float | None:
        return self.clicks.readers["human"] / self.delivered if self.delivered else None

    @property
    def click_to_open(self) -> float | None:
        o = self.opens.readers["human"]
        return self.clicks.readers["human"] / o if o else None

    def as_dict(self) -> dict:
        d = asdict(self)
        d["sent_at"] = self.sent_at.isoformat() if self.sent_at else None
        d["human_open_rate"], d["human_click_rate"] = self.human_open_rate, self.human_click_rate
        d["click_to_open"] = self.click_to_open
        return d


def _buckets(times: list[tuple[datetime, str]], start: datetime | None) -> list[dict]:
    """Events per hour for the first 48 hours after ``start``, then per day: [{at, human, machine}]."""
    if not times:
        return []
    start = start or times[0][0]
    out: dict[datetime, dict] = {}
    for t, agent in times:
        since = t - start
        if since < timedelta(hours=48):
            at = start + timedelta(hours=max(0, int(since.total_seconds() // 3600)))
        else:
            at = datetime.combine(t.date(), datetime.min.time(), tzinfo=t.tzinfo)
        b = out.setdefault(at, {"at": at.isoformat(), "human": 0, "machine": 0})
        b["human" if agent == "human" else "machine"] += 1
    return [out[k] for k in sorted(out)]


def campaign_report(engine, campaign_id: int | str, *, links: bool = True, timeline: bool = False) -> Report:
    """The report of one campaign (NotFound for an unknown id)."""
    from ..dispatch.campaigns import get_campaign
    from .campaign import tracking_of

    c = get_campaign(engine, campaign_id)
    cid = c.id
    assert cid is not None  # a campaign read from the database has its id
    with transaction(engine) as conn:
        states = ev.delivery_totals(conn, cid)
        opens, clicks = Counts(), Counts()
        for kind, agent, n, readers in ev.event_totals(conn, cid):
            target = opens if kind == "open" else clicks
            target.events[agent] = n
            target.readers[agent] = readers
        rows: dict[int, LinkRow] = {}
        if links:
            for idx, url, agent, n, readers in ev.link_totals(conn, cid):
                row = rows.setdefault(idx, LinkRow(idx, url))
                if agent == "human":
                    row.human_clicks, row.human_readers = n, readers
                else:
                    row.machine_clicks += n
            for idx, url in ev.links_of(conn, cid).items():
                if idx != CANARY:
                    rows.setdefault(idx, LinkRow(idx, url))
        start = c.started_at
        unsub = ev.unsubscribes_after(conn, cid, start, None) if start else 0
        bounces = ev.bounce_totals(conn, cid)
        series = []
        if timeline:
            for kind in ("open", "click"):
                series.append({"kind": kind, "points": _buckets(ev.event_times(conn, cid, kind), start)})
    return Report(
        campaign_id=cid, subject=c.subject, status=str(c.status), tracking=sorted(t.value for t in tracking_of(c)),
        sent_at=start, delivered=states.get("sent", 0), failed=states.get("failed", 0), opens=opens, clicks=clicks,
        unsubscribes=unsub, bounces={k: v for k, v in bounces.items() if k in ("hard", "soft")},
        complaints=bounces.get("complaint", 0),
        links=sorted(rows.values(), key=lambda r: (-r.human_clicks, r.idx)), timeline=series, ab=_ab(engine, cid))


def _ab(engine, campaign_id: int) -> dict | None:
    """The campaign's A/B test as plain data, or None."""
    from ..dispatch.abtest import ab_status

    status = ab_status(engine, campaign_id)
    return status.as_dict() if status is not None else None


def purge(engine, config, *, now: datetime | None = None) -> int:
    """Delete events older than ``tracking_retention_days``; returns how many went."""
    from ..store.models import utcnow

    cutoff = (now or utcnow()) - timedelta(days=config.tracking_retention_days)
    with transaction(engine) as conn:
        return ev.purge_events(conn, cutoff)


@dataclass
class WeekGrowth:
    """One week (starting Monday, UTC) of a list's growth."""

    week: str  # ISO date of the Monday
    subscribed: int = 0
    unsubscribed: int = 0
    bounced: int = 0


def list_growth(engine, *, weeks: int = 12, now: datetime | None = None) -> list[WeekGrowth]:
    """Subscriptions made, unsubscribes and bounces per week over the last ``weeks`` weeks, oldest
    first (every week present, zeros included), for the dashboard."""
    from ..store.models import utcnow

    now = now or utcnow()
    monday = (now - timedelta(days=now.weekday())).date()
    first = datetime.combine(monday - timedelta(weeks=weeks - 1), datetime.min.time(), tzinfo=now.tzinfo)
    out = {(monday - timedelta(weeks=i)).isoformat(): WeekGrowth((monday - timedelta(weeks=i)).isoformat())
           for i in range(weeks - 1, -1, -1)}

    def week_of(t: datetime) -> str:
        d = t.date()
        return (d - timedelta(days=d.weekday())).isoformat()

    with transaction(engine) as conn:
        for field_name, times in (("subscribed", ev.times_since(conn, "subscribed", first)),
                                  ("unsubscribed", ev.times_since(conn, "unsubscribed", first)),
                                  ("bounced", ev.times_since(conn, "bounced", first))):
            for t in times:
                w = out.get(week_of(t))
                if w is not None:
                    setattr(w, field_name, getattr(w, field_name) + 1)
    return list(out.values())


def recent_reports(engine, limit: int = 5) -> list[Report]:
    """The reports of the last ``limit`` campaigns that sent something, newest first."""
    with transaction(engine) as conn:
        ids = ev.recent_sent_campaigns(conn, limit)
    return [campaign_report(engine, cid, links=False) for cid in ids]
