"""The public archive: which campaigns it shows, and why a campaign is not in it.

The rule lives here once, as SQL conditions that both the index query and a single campaign's
verdict use. A campaign is published when all of these hold:

- its status is running, paused or finished (a draft, scheduled or cancelled one is not; a
  cancelled one is published only when the campaign itself was set to ``archive``, since
  cancelling usually means something was wrong);
- its flag says so: ``campaigns.archive`` when set, else every one of its lists has
  ``lists.archive`` (a campaign to a public and a members-only list is not published by default);
- at least one copy was delivered: a delivery in state ``sent`` with no hard bounce reported for
  it. A campaign whose every copy failed or bounced is never published.

Readers of an unpublished campaign keep their web version: it is ``/view/TOKEN``, a signed
per-copy token (dispatch/webview.py), never ``/archive/ID``, so publishing only decides what
strangers can read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import and_, exists, func, not_, or_, select
from sqlalchemy.engine import Engine

from ..errors import NotFound
from ..i18n import N_
from ..store import queries as q
from ..store.bounce_models import BounceEvent
from ..store.db import table_of, transaction
from ..store.lifecycle import CampaignStatus, DeliveryState
from ..store.models import MailingList

lists_t = table_of(MailingList)
bounces_t = table_of(BounceEvent)
c_t = q.campaigns
SENT_STATES = (CampaignStatus.RUNNING.value, CampaignStatus.PAUSED.value, CampaignStatus.FINISHED.value)
PAGE_SIZE = 20


def _status_ok():
    return or_(c_t.c.status.in_(SENT_STATES),
               and_(c_t.c.status == CampaignStatus.CANCELLED.value, c_t.c.archive.is_(True)))


def _lists_agree():
    """The campaign still has a target list, and every one of them archives its issues. A campaign
    whose lists were all deleted is not published by default: a deleted private list must not
    make its issues public."""
    cl = q.campaign_lists
    return and_(exists().where(cl.c.campaign_id == c_t.c.id),
                not_(exists().where(cl.c.campaign_id == c_t.c.id, cl.c.list_id == lists_t.c.id,
                                    lists_t.c.archive.is_(False))))


def _flag_on():
    return or_(c_t.c.archive.is_(True), and_(c_t.c.archive.is_(None), _lists_agree()))


def _delivered():
    """At least one copy went out and no hard bounce came back for it."""
    d = q.deliveries
    bounced = exists().where(bounces_t.c.campaign_id == d.c.campaign_id, bounces_t.c.subscriber_id == d.c.subscriber_id,
                             bounces_t.c.kind == "hard")
    return exists().where(d.c.campaign_id == c_t.c.id, d.c.state == DeliveryState.SENT.value, not_(bounced))


def published_condition():
    """The whole rule as one SQL condition on ``campaigns``."""
    return and_(c_t.c.started_at.is_not(None), _status_ok(), _flag_on(), _delivered())


@dataclass
class ArchiveStatus:
    """Whether a campaign is in the public archive and, when not, why (for `campaigns show` and the admin)."""

    published: bool
    archive: bool | None  # the campaign's own flag (None: its lists decide)
    reason: str

    def as_dict(self) -> dict:
        return {"published": self.published, "archive": self.archive, "reason": self.reason}


def archive_status(conn, campaign_id: int) -> ArchiveStatus:
    """The archive verdict of one campaign, the first unmet condition in words; NotFound if none."""
    row = conn.execute(select(c_t.c.status, c_t.c.archive, c_t.c.started_at,
                              _status_ok().label("status_ok"), _flag_on().label("flag"),
                              _delivered().label("delivered"),
                              exists().where(q.campaign_lists.c.campaign_id == c_t.c.id).label("has_lists"))
                       .where(c_t.c.id == campaign_id)).first()
    if row is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    own = None if row.archive is None else bool(row.archive)
    if not row.flag:
        why = ("not published: set off for this campaign" if own is False else
               "not published: its lists were deleted (`campaigns update ID --archive` publishes it)" if not row.has_lists else
               "not published: one of its lists keeps its issues out of the archive (`campaigns update ID --archive` publishes it)")
    elif not row.status_ok or row.started_at is None:
        why = ("not published: it was cancelled (`campaigns update ID --archive` publishes the copies it sent)"
               if row.status == CampaignStatus.CANCELLED.value else f"not published yet: it is {row.status}")
    elif not row.delivered:
        why = "not published: no copy has been delivered (none sent, or every one failed or bounced)"
    else:
        src = "set for this campaign" if own else "its lists' default"
        return ArchiveStatus(True, own, f"published ({src})")
    return ArchiveStatus(False, own, why)


def is_published(conn, campaign_id: int) -> bool:
    """Whether the campaign is in the public archive (the rule above, in one query)."""
    return conn.execute(select(c_t.c.id).where(c_t.c.id == campaign_id, published_condition())).first() is not None


def set_archive(engine: Engine, campaign_id: int, archive: bool | None) -> ArchiveStatus:
    """Set a campaign's own archive flag (None: back to its lists' default), whatever its status;
    NotFound (nothing changed) for an unknown id. Returns the new verdict."""
    from ..store.models import utcnow

    with transaction(engine) as conn:
        n = conn.execute(c_t.update().where(c_t.c.id == campaign_id).values(archive=archive, updated_at=utcnow())).rowcount
        if not n:
            raise NotFound(f"campaign {campaign_id} does not exist")
        return archive_status(conn, campaign_id)


_TAG = re.compile(r"\*\|[^|]{1,80}\|\*")


@dataclass
class Issue:
    """One entry of the archive index."""

    id: int
    subject: str
    date: date
    summary: str


def _summary(preheader: str, text: str) -> str:
    """The preheader (the digest's "N stories: titles" line or the editor's own), else the start of
    the text part; merge tags dropped (the archive is nobody's copy)."""
    s = " ".join(_TAG.sub("", preheader or "").split())
    if not s:
        s = " ".join(_TAG.sub("", text or "").split())
    return s if len(s) <= 200 else s[:199].rsplit(" ", 1)[0] + "…"


def local_day(t: datetime, zone: str | None) -> date:
    """The day ``t`` falls on in ``zone`` (UTC for an unknown or empty zone)."""
    try:
        tz = ZoneInfo(zone) if zone else None
    except Exception:
        tz = None
    return t.astimezone(tz).date() if tz else t.date()


def archive_index(engine: Engine, *, page: int = 1, timezone: str | None = None,
                  per_page: int = PAGE_SIZE) -> tuple[list[Issue], int]:
    """One page of published issues, newest first (by when sending started, as a day in
    ``timezone``), and how many pages there are (at least 1)."""
    with transaction(engine) as conn:
        total = conn.execute(select(func.count()).select_from(c_t).where(published_condition())).scalar_one()
        rows = conn.execute(select(c_t.c.id, c_t.c.subject, c_t.c.started_at, c_t.c.preheader, c_t.c.text)
                            .where(published_condition()).order_by(c_t.c.started_at.desc(), c_t.c.id.desc())
                            .limit(per_page).offset((max(page, 1) - 1) * per_page)).all()
    issues = [Issue(r.id, r.subject, local_day(r.started_at, timezone), _summary(r.preheader, r.text)) for r in rows]
    return issues, max(1, -(-total // per_page))


def published_campaign(engine: Engine, campaign_id: int):
    """The campaign if it is in the public archive; otherwise the same NotFound as a missing id
    (an unpublished campaign cannot be told apart from one that does not exist)."""
    from .campaigns import get_campaign

    with transaction(engine) as conn:
        ok = is_published(conn, campaign_id)
    if not ok:
        raise NotFound(N_("there is no issue %(issue)s in the archive", issue=campaign_id))
    return get_campaign(engine, campaign_id)


def archive_lists(engine: Engine, campaign_id: int | None = None) -> list:
    """The public lists a visitor of the archive may join: the campaign's public lists on an issue
    page (else every public list that archives its issues), by name."""
    cols = (lists_t.c.slug, lists_t.c.name, lists_t.c.opt_in, lists_t.c.description)
    query = select(*cols).where(lists_t.c.public.is_(True))
    if campaign_id is not None:
        cl = q.campaign_lists
        query = query.where(lists_t.c.id.in_(select(cl.c.list_id).where(cl.c.campaign_id == campaign_id)))
    else:
        query = query.where(lists_t.c.archive.is_(True))
    with transaction(engine) as conn:
        return list(conn.execute(query.order_by(lists_t.c.name, lists_t.c.slug)).mappings())


__all__ = ["ArchiveStatus", "Issue", "archive_index", "archive_lists", "archive_status", "is_published", "local_day",
           "published_campaign", "published_condition", "set_archive"]
