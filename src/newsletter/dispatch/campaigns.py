"""Campaigns: snapshot a composed digest, list and show them, and move them between statuses.

Every status change goes through :func:`transition`, which checks the move with
``store.lifecycle.campaign_transition`` (draft → scheduled → running → paused/finished/cancelled
...) and records who paused a campaign (``PauseKind``). Changes made by another
process (``campaigns pause`` while ``send`` runs) are compare-and-set updates, so a sender sees
them on its next batch.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Iterable

from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from ..compose.headers import check_header_name
from ..config import Config
from ..errors import InvalidInput, NotFound, StateError
from ..store import queries as q
from ..store.bounces import campaign_rates
from ..store.campaign_models import CAMPAIGN_STATUSES, Campaign
from ..store.lifecycle import RESUMABLE, CampaignStatus, PauseKind, campaign_transition
from ..store.db import require_current_schema, transaction
from ..store.models import MailingList, utcnow
from .personalize import check_header_value, find_tags, format_address, unknown_tags

lists_t = q.table_of(MailingList)


def transition(conn, campaign_id: int, to: str, *, reason: str | None = None, allow_from: Iterable[str] | None = None,
               now: datetime | None = None, pause_kind: PauseKind | None = None) -> str:
    """Move a campaign to status ``to`` (checked by ``lifecycle.campaign_transition``), setting
    the matching timestamps; a move to ``paused`` records ``pause_kind`` (default: a user's).
    Returns the previous status. Raises StateError when the move is not allowed or another
    process changed the status at the same moment."""
    now = now or utcnow()
    current = q.campaign_status(conn, campaign_id)
    if current is None:
        raise NotFound(f"campaign {campaign_id} does not exist")
    if current == to:
        return current
    if allow_from is not None and current not in allow_from:
        raise StateError(f"campaign {campaign_id} is {current}: cannot make it {to}")
    target = campaign_transition(current, to, campaign_id)
    times: dict[str, Any] = {}
    if target is CampaignStatus.RUNNING:
        if q.campaign_started_at(conn, campaign_id) is None:
            times["started_at"] = now
        times["finished_at"] = None
    elif target in (CampaignStatus.FINISHED, CampaignStatus.CANCELLED):
        times["finished_at"] = now
    elif target is CampaignStatus.DRAFT:
        times["scheduled_at"] = None
    if not q.set_campaign_status(conn, campaign_id, [current], target, now=now, reason=reason or "",
                                 pause_kind=pause_kind, **times):
        if q.campaign_status(conn, campaign_id) == to:  # another process made the same move first
            return current
        raise StateError(f"campaign {campaign_id} changed status while we were changing it; try again")
    return current


def check_resumable(c: Campaign) -> None:
    """The one rule of ``campaigns resume`` (CLI, web page and API): only a paused or running
    campaign can be resumed (a draft would be sent whole by a mistyped id); StateError with the
    command that does what was probably meant."""
    if c.status in RESUMABLE:
        return
    hint = {CampaignStatus.DRAFT: f"; start it with `newsletter send {c.id}`",
            CampaignStatus.SCHEDULED: f"; a worker starts it at its time (`newsletter send {c.id} --now` sends it now)",
            CampaignStatus.FINISHED: f"; `newsletter send {c.id} --resend-ambiguous` resends copies a crash left ambiguous"}
    raise StateError(f"campaign {c.id} is {c.status}: only a paused or running campaign can be resumed"
                     + hint.get(CampaignStatus(c.status), ""))


@dataclass
class CampaignInfo:
    """A campaign as shown by ``campaigns list/show`` (JSON-ready via ``as_dict``)."""

    id: int
    name: str
    subject: str
    status: str
    status_reason: str
    from_address: str
    reply_to: str | None
    lists: list[str]
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] = field(default_factory=dict)
    audience: int | None = None
    preheader: str = ""
    html_size: int = 0
    images: int = 0
    meta: dict = field(default_factory=dict)
    # Bounces and complaints over copies sent (``store.bounces.CampaignRates.as_dict``).
    feedback: dict = field(default_factory=dict)
    ab: dict | None = None  # an A/B test (``abtest.ABStatus.as_dict``), shown in detail only
    # A local-time campaign's buckets, done and to come (``dispatch.buckets.bucket_progress``); else None.
    buckets: dict | None = None
    # In the public archive? ``archive.ArchiveStatus.as_dict``: published, the campaign's own flag, why.
    archive: dict = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def as_dict(self) -> dict:
        d = asdict(self)
        for k in ("created_at", "scheduled_at", "started_at", "finished_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["total"] = self.total
        return d


def _check_headers(subject: str, from_address: str, reply_to: str | None, headers: dict[str, str] | None) -> None:
    check_header_value("Subject", subject)
    if not subject.strip():
        raise InvalidInput("campaign subject is empty")
    format_address(from_address, "From")
    if reply_to:
        format_address(reply_to, "Reply-To")
    for k, v in (headers or {}).items():
        check_header_name(k)
        check_header_value(k, v)


_TITLE = re.compile(r"<title>[^<]*</title>", re.I)


def titled(html: str, subject: str) -> str:
    """``html`` whose ``<title>`` is ``subject``: a copy's title must be the subject it is sent with
    (a campaign's own subject, a digest's subject template), or filters flag the mismatch
    (SpamAssassin's HTML_TITLE_SUBJ_DIFF). Merge tags in the subject are filled like the body's."""
    escaped = _html.escape(subject, quote=False)
    return _TITLE.sub(lambda _m: f"<title>{escaped}</title>", html, count=1)


@dataclass
class Prepared:
    """A digest's content checked and made ready to store as a campaign (see :func:`prepare_content`)."""

    subject: str
    from_address: str
    reply_to: str | None
    html: str
    text: str
    preheader: str
    images: list
    meta: dict


def prepare_content(engine: Engine, digest, list_slugs: list[str], config: Config, *, subject: str | None = None,
                    from_address: str | None = None, reply_to: str | None = None, headers: dict[str, str] | None = None,
                    meta: dict | None = None, track=None) -> Prepared:
    """Every check and default of :func:`create_campaign` before anything is written (also used to
    replace a draft's content): header values, the unsubscribe link, unknown merge tags, tracking."""
    require_current_schema(engine)
    if getattr(digest, "assets", None):
        from ..compose import embed_relative_assets

        digest = embed_relative_assets(digest)
    if not list_slugs:
        raise InvalidInput("a campaign needs at least one list (--list SLUG)")
    subject = subject if subject is not None else digest.subject
    # The flag, else the config now (file → NEWSLETTER_FROM): the digest only recorded what the
    # config said when it was composed, perhaps elsewhere, so it is the last fallback.
    from_address = str(from_address or config.from_address or getattr(digest, "from_address", "") or "")
    reply_to = reply_to if reply_to is not None else (config.reply_to or getattr(digest, "reply_to", None))
    _check_headers(subject, from_address, reply_to, headers)
    html = titled(digest.html, subject)
    tags = find_tags(html)
    if not any(t.upper() in ("*|UNSUBSCRIBE_URL|*", "*|UNSUB|*") or "UNSUBSCRIBE_URL" in t.upper() for t in tags):
        raise InvalidInput("the digest HTML has no *|UNSUBSCRIBE_URL|* link: every newsletter must let readers leave")
    unknown = unknown_tags(subject, html, digest.text)
    if unknown:  # it would reach readers as written
        raise InvalidInput(f"unknown merge tag{'s' if len(unknown) > 1 else ''} {', '.join(unknown[:5])}: it would be sent "
                           "as written; use *|NAME|*, *|FNAME|*, *|LNAME|*, *|EMAIL|*, *|ATTR:key|* or remove it")
    images = list(getattr(digest, "images", []) or [])
    for img in images:
        for what, v in (("cid", img.cid), ("filename", img.filename), ("content type", img.content_type)):
            check_header_value(f"image {what}", v)
    meta = dict(meta or {})
    from ..engagement.campaign import tracking_for_new_campaign

    tracking = tracking_for_new_campaign(config, list_slugs, track)
    if tracking:
        meta["track"] = tracking
    try:
        meta.setdefault("article_keys", list(digest.article_keys))
    except Exception:
        pass
    # When the articles were chosen: the next digest to these lists starts there (dispatch.previous).
    composed = getattr(digest, "date", None)
    meta["composed_at"] = (composed if isinstance(composed, datetime) else utcnow()).isoformat()
    return Prepared(subject=subject, from_address=from_address, reply_to=reply_to, html=html, text=digest.text or "",
                    preheader=getattr(digest, "preheader", "") or "", images=images, meta=meta)


def create_campaign(
    engine: Engine,
    digest,
    list_slugs: list[str],
    config: Config,
    *,
    subject: str | None = None,
    from_address: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    name: str | None = None,
    meta: dict | None = None,
    conn=None,
    segment: str | None = None,
    track=None,
    archive: bool | None = None,
) -> Campaign:
    """Freeze a composed digest (``newsletter.compose.Digest``) into a draft campaign for the lists.

    From is ``from_address``, else ``config.from_address`` (env NEWSLETTER_FROM), never the
    address the digest was composed with; Reply-To likewise prefers the config's.
    Subject, From, Reply-To and extra header values are checked here: a CR or LF anywhere is
    refused (header injection), as is an unknown list or a body without an unsubscribe link.
    Images the digest links by a relative path (``assets/...``) are frozen as CID parts, since a
    mail client cannot resolve them. Nothing is written unless everything checks out. With
    ``conn`` the rows are written in the caller's transaction (e.g. a scheduler's). With
    ``segment`` (a segment of the one target list) the campaign records the segment's name and
    filter text in ``meta["segment"]``; the ledger applies it when sending starts. ``track``
    (``"opens,clicks"``, a list, or ``"off"``; default from config ``track``/``track_lists``) is
    recorded in ``meta["track"]``. ``archive`` (None: as the lists say) is whether the public
    archive shows it once a copy was delivered (dispatch/archive.py)."""
    p = prepare_content(engine, digest, list_slugs, config, subject=subject, from_address=from_address,
                        reply_to=reply_to, headers=headers, meta=meta, track=track)
    subject, from_address, reply_to, html, images, meta = p.subject, p.from_address, p.reply_to, p.html, p.images, p.meta
    now = utcnow()

    def write(conn):
        list_ids = list_ids_of(conn, list_slugs)
        if segment:
            from ..store.segments import segment_for_campaign

            meta["segment"] = segment_for_campaign(conn, segment, list_ids)
        res = conn.execute(q.campaigns.insert().values(
            name=name or subject, subject=subject, from_address=from_address, reply_to=reply_to,
            preheader=p.preheader, html=html, text=p.text,
            headers=dict(headers or {}), meta=meta, status="draft", status_reason="",
            created_at=now, updated_at=now, archive=archive,
        ))
        cid = res.inserted_primary_key[0]
        conn.execute(q.campaign_lists.insert(), [{"campaign_id": cid, "list_id": lid} for lid in list_ids])
        if images:
            conn.execute(q.campaign_images.insert(), [
                {"campaign_id": cid, "cid": i.cid, "filename": i.filename, "content_type": i.content_type, "data": i.data}
                for i in images
            ])
        return conn.execute(select(q.campaigns).where(q.campaigns.c.id == cid)).mappings().one()

    if conn is not None:
        row = write(conn)
    else:
        with transaction(engine) as c:
            row = write(c)
    return Campaign(**row)


def list_ids_of(conn, list_slugs: list[str]) -> list[int]:
    """The ids of the lists named by ``list_slugs`` (each once, in order); NotFound for an unknown one."""
    list_ids = []
    for slug in dict.fromkeys(list_slugs):
        lid = conn.execute(select(lists_t.c.id).where(lists_t.c.slug == slug)).scalar()
        if lid is None:
            raise NotFound(f"list {slug!r} does not exist")
        list_ids.append(lid)
    return list_ids


def resolve_campaign_id(ref: str | int) -> int:
    """A campaign reference from the command line (its id)."""
    try:
        cid = int(str(ref).strip().lstrip("#"))
    except ValueError:
        raise InvalidInput(f"campaign {ref!r}: expected a campaign id (a number; see `newsletter campaigns list`)") from None
    if cid <= 0:
        raise InvalidInput(f"campaign {ref!r}: expected a positive id")
    return cid


# The statuses of a campaign that told readers something (it started and was not cancelled); the
# public archive adds its own conditions (dispatch/archive.py: the flag and a delivered copy).
ARCHIVED = (CampaignStatus.RUNNING, CampaignStatus.PAUSED, CampaignStatus.FINISHED)


def in_archive(conn, campaign_id: int) -> bool:
    """Whether a campaign is in the public archive: its flag (its own, else its lists') says so and
    at least one copy was delivered; the rule and its reasons are in dispatch/archive.py."""
    from .archive import is_published

    return is_published(conn, campaign_id)


def stored_id(c: Campaign) -> int:
    """The id of a campaign read from the database (the model allows None only before insert)."""
    if c.id is None:
        raise StateError("campaign has not been stored yet")
    return c.id


def get_campaign(engine: Engine, campaign_id: int | str) -> Campaign:
    """The campaign with this id, or NotFound."""
    require_current_schema(engine)
    cid = resolve_campaign_id(campaign_id)
    with transaction(engine) as conn:
        row = conn.execute(select(q.campaigns).where(q.campaigns.c.id == cid)).mappings().first()
    if row is None:
        raise NotFound(f"campaign {cid} does not exist")
    return Campaign(**row)


def _info(conn, row, *, detail: bool) -> CampaignInfo:
    slugs = [r[0] for r in conn.execute(
        select(lists_t.c.slug).select_from(q.campaign_lists.join(lists_t, lists_t.c.id == q.campaign_lists.c.list_id))
        .where(q.campaign_lists.c.campaign_id == row["id"]).order_by(lists_t.c.slug))]
    counts = q.counts_by_state(conn, row["id"])
    info = CampaignInfo(
        id=row["id"], name=row["name"], subject=row["subject"], status=row["status"], status_reason=row["status_reason"],
        from_address=row["from_address"], reply_to=row["reply_to"], lists=slugs, created_at=row["created_at"],
        scheduled_at=row["scheduled_at"], started_at=row["started_at"], finished_at=row["finished_at"], counts=counts,
        preheader=row["preheader"], meta=row["meta"] or {},
        feedback=campaign_rates(conn, row["id"], counts).as_dict(),
    )
    from .archive import archive_status

    info.archive = archive_status(conn, row["id"]).as_dict()
    if (row["meta"] or {}).get("local_time"):
        from .buckets import bucket_progress

        info.buckets = bucket_progress(conn, row["id"], row["meta"])
    if detail:
        info.html_size = len(row["html"].encode("utf-8"))
        info.images = conn.execute(select(func.count()).select_from(q.campaign_images)
                                   .where(q.campaign_images.c.campaign_id == row["id"])).scalar_one()
        if row["ledger_created_at"] is None:
            info.audience = q.active_recipients_count(conn, row["id"])
        else:
            info.audience = sum(counts.values())
    return info


def list_campaigns(engine: Engine, *, status: str | None = None, limit: int | None = None) -> list[CampaignInfo]:
    """Campaigns, newest first, with their ledger counts."""
    require_current_schema(engine)
    cols = [c for c in q.campaigns.c if c.name not in ("html", "text")]
    stmt = select(*cols).order_by(q.campaigns.c.id.desc())
    if status:
        if status not in CAMPAIGN_STATUSES:
            raise InvalidInput(f"status {status!r}: expected one of {', '.join(CAMPAIGN_STATUSES)}")
        stmt = stmt.where(q.campaigns.c.status == status)
    if limit:
        stmt = stmt.limit(limit)
    with transaction(engine) as conn:
        return [_info(conn, r, detail=False) for r in conn.execute(stmt).mappings()]


def campaign_info(engine: Engine, campaign_id: int | str) -> CampaignInfo:
    """One campaign with counts, audience size, HTML size, image count and its A/B test, if any."""
    from .abtest import ab_status

    c = get_campaign(engine, campaign_id)
    with transaction(engine) as conn:
        row = conn.execute(select(q.campaigns).where(q.campaigns.c.id == c.id)).mappings().one()
        info = _info(conn, row, detail=True)
    ab = ab_status(engine, stored_id(c))
    info.ab = ab.as_dict() if ab is not None else None
    return info


def campaign_lists(engine: Engine, campaign_id: int) -> dict[int, str]:
    """{list_id: slug} of the campaign's target lists."""
    with transaction(engine) as conn:
        return {lid: slug for lid, slug in conn.execute(
            select(lists_t.c.id, lists_t.c.slug).select_from(
                q.campaign_lists.join(lists_t, lists_t.c.id == q.campaign_lists.c.list_id))
            .where(q.campaign_lists.c.campaign_id == campaign_id))}


def pause_campaign(engine: Engine, campaign_id: int | str, reason: str = "paused by the user") -> Campaign:
    """Stop sending after the messages in flight; ``resume`` (or ``send``) continues."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    with transaction(engine) as conn:
        if transition(conn, cid, CampaignStatus.PAUSED, reason=reason, pause_kind=PauseKind.USER) == CampaignStatus.PAUSED:
            # Already paused by something else (e.g. warm-up): the user's pause replaces it, so nothing resumes it by itself.
            q.set_campaign_status(conn, cid, [CampaignStatus.PAUSED], CampaignStatus.PAUSED, reason=reason,
                                  pause_kind=PauseKind.USER)
    return get_campaign(engine, cid)


def resume_campaign(engine: Engine, campaign_id: int | str) -> Campaign:
    """Mark a paused campaign running again (a sender or worker then carries on) — or, when it
    was paused while scheduled, before it started, scheduled again for its time."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    from ..feedback.record import RATE_PAUSE_OVERRIDE

    check_resumable(c)
    back_to = CampaignStatus.SCHEDULED if c.started_at is None and c.scheduled_at is not None else CampaignStatus.RUNNING
    with transaction(engine) as conn:
        transition(conn, cid, back_to, reason="", allow_from=(CampaignStatus.PAUSED,))
        if c.status == CampaignStatus.PAUSED and c.pause_kind == PauseKind.BOUNCE_GUARD:
            # A person looked at the rates and chose to go on: the bounce guard stays off for it.
            meta = dict(c.meta or {}, **{RATE_PAUSE_OVERRIDE: {"at": utcnow().isoformat(), "reason": c.status_reason}})
            q.set_campaign_meta(conn, cid, meta)
    return get_campaign(engine, cid)


def start_scheduled_now(engine: Engine, campaign_id: int | str, on_start=None) -> Campaign:
    """A scheduled campaign starts now, ahead of its time (``send --now``); any other is left as it
    is. ``on_start(conn, id)`` runs in the same transaction (a local-time campaign's plan)."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    if c.status == CampaignStatus.SCHEDULED:
        with transaction(engine) as conn:
            transition(conn, cid, CampaignStatus.RUNNING, reason="", allow_from=(CampaignStatus.SCHEDULED,))
            if on_start is not None:
                on_start(conn, cid)
    return get_campaign(engine, cid)


def cancel_campaign(engine: Engine, campaign_id: int | str, reason: str = "cancelled by the user") -> Campaign:
    """Cancel for good: copies not yet handed to a server are marked skipped and never go out."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    now = utcnow()
    with transaction(engine) as conn:
        transition(conn, cid, CampaignStatus.CANCELLED, reason=reason, now=now)
        q.skip_cancelled(conn, cid, now)
    return get_campaign(engine, cid)


def schedule_campaign(engine: Engine, campaign_id: int | str, when: datetime, *, local_time: dict | None = None) -> Campaign:
    """Mark a draft campaign to be sent at ``when`` (a worker starts it then). ``local_time`` (see
    schedule/localtime.py) makes it a local-time campaign; without it, it is an ordinary one."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    if when.tzinfo is None:
        raise InvalidInput("schedule time must carry a time zone")
    with transaction(engine) as conn:
        transition(conn, cid, CampaignStatus.SCHEDULED, allow_from=(CampaignStatus.DRAFT, CampaignStatus.SCHEDULED))
        q.set_scheduled_at(conn, cid, when)
        meta = {k: v for k, v in (c.meta or {}).items() if k != "local_time"}
        if local_time is not None:
            meta["local_time"] = local_time
        if meta != (c.meta or {}):
            q.set_campaign_meta(conn, cid, meta)
    return get_campaign(engine, cid)


def due_campaigns(engine: Engine, now: datetime | None = None) -> list[int]:
    """Ids of scheduled campaigns whose time has come, and running ones (for workers)."""
    now = now or utcnow()
    with transaction(engine) as conn:
        return q.due_campaign_ids(conn, now)


def campaign_images(engine: Engine, campaign_id: int) -> list:
    """The campaign's inline CID images (``compose.model.InlineImage``), in the order they were frozen."""
    from ..compose.model import InlineImage

    with transaction(engine) as conn:
        return [InlineImage(r.cid, r.filename, r.content_type, r.data) for r in conn.execute(
            select(q.campaign_images).where(q.campaign_images.c.campaign_id == campaign_id).order_by(q.campaign_images.c.id))]


def campaign_content(engine: Engine, campaign_id: int | str):
    """Everything needed to build a copy of the campaign (``personalize.CampaignContent``), for
    senders, previews and the archive."""
    from .personalize import CampaignContent

    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    return CampaignContent(
        campaign_id=cid, subject=c.subject, from_address=c.from_address, html=c.html, text=c.text,
        reply_to=c.reply_to, headers=c.headers or {}, images=campaign_images(engine, cid),
        lists=campaign_lists(engine, cid),
    )
