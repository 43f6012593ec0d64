"""Drafts made in the admin: compose a digest from chosen sources, date range and article limit
with an editor's note, freeze it as a draft campaign, edit a draft (compose it again), duplicate
any campaign as a new draft, and start one now (a worker sends it).

The choices are kept in the campaign's ``meta["compose"]`` so that editing starts from them. A
draft may be an A/B subject test (``ab``): the form's fields go through ``abtest.ab_spec`` and
``abtest.check_ab``, the very checks of ``campaigns create --subject-b``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import InvalidInput, StateError
from ..store import abtests as ab_store
from ..store import queries as q
from ..store.campaign_models import Campaign
from ..store.db import transaction
from ..store.lifecycle import CampaignStatus
from ..store.models import utcnow
from .campaigns import (create_campaign, get_campaign, list_ids_of, prepare_content, start_scheduled_now, stored_id,
                        transition)

MAX_ARTICLES = 200
MAX_INTRO = 5000


@dataclass
class DraftRequest:
    """What the publisher chose on the new-campaign page. ``since``/``until`` are dates
    (``2026-11-26``) in the configured time zone, ``until`` included."""

    sources: list[str] = field(default_factory=list)
    since: str = ""
    until: str = ""
    limit: int | None = None
    intro: str = ""
    subject: str = ""
    lists: list[str] = field(default_factory=list)
    segment: str = ""
    track: str = ""  # "": the configured default; off, opens, clicks or opens,clicks
    # An A/B subject test (``ab``): subjects B to D (``subject`` is A), an intro per variant (a body
    # variant), the test share, the wait, the metric and the sample, as typed (checked by ab_spec).
    ab: bool = False
    subject_b: str = ""
    subject_c: str = ""
    subject_d: str = ""
    ab_intro_a: str = ""
    ab_intro_b: str = ""
    ab_intro_c: str = ""
    ab_intro_d: str = ""
    test_share: str = ""
    test_wait: str = ""
    winner_by: str = ""
    min_sample: str = ""
    archive: bool | None = None  # the public-archive choice (None: as its lists say), set in the same transaction

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_meta(cls, meta: dict | None) -> "DraftRequest | None":
        d = (meta or {}).get("compose")
        if not isinstance(d, dict):
            return None
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def check_request(req: DraftRequest, *, lists_needed: bool = True) -> None:
    """InvalidInput, in the publisher's words, for a choice that cannot make a campaign."""
    if not req.sources:
        raise InvalidInput("choose at least one source of articles")
    if not req.since:
        raise InvalidInput("choose the first day of the date range (a campaign never takes the whole archive)")
    if req.limit is None or not 1 <= req.limit <= MAX_ARTICLES:
        raise InvalidInput(f"the number of articles must be between 1 and {MAX_ARTICLES}")
    if len(req.intro) > MAX_INTRO:
        raise InvalidInput(f"the editor's note is {len(req.intro)} characters long; keep it under {MAX_INTRO}")
    if lists_needed and not req.lists:
        raise InvalidInput("choose at least one list to send to")
    if req.segment and len(req.lists) != 1:
        raise InvalidInput(f"segment {req.segment!r} narrows one list: choose only its list")


def ab_spec_of(req: DraftRequest):
    """The A/B test the choices ask for (``abtest.ABSpec``, checked as the CLI's flags are), or
    None when the test is off; InvalidInput naming the field otherwise."""
    from .abtest import DEFAULT_SHARE, DEFAULT_WAIT, ab_spec

    if not req.ab:
        return None
    sample = req.min_sample.strip()
    if sample and not sample.isdigit():
        raise InvalidInput(f"--min-sample {sample!r}: expected a whole number of copies, e.g. 50")
    spec = ab_spec(req.subject.strip() or None, [req.subject_b or None, req.subject_c or None, req.subject_d or None],
                   test_share=req.test_share or DEFAULT_SHARE, test_wait=req.test_wait or DEFAULT_WAIT,
                   winner_by=req.winner_by or None, min_sample=int(sample) if sample else None,
                   intros=[req.ab_intro_a or None, req.ab_intro_b or None, req.ab_intro_c or None, req.ab_intro_d or None])
    assert spec is not None  # a test share was given: ab_spec answers with a test or an error
    return spec


def with_stored_test(engine: Engine, campaign_id: int, req: DraftRequest) -> DraftRequest:
    """``req`` with the A/B fields of the campaign's stored test (made here, by the CLI or the API),
    so that editing a draft starts from the test it has; unchanged for a campaign without one."""
    from ..store.abtests import test_of

    with transaction(engine) as conn:
        test = test_of(conn, campaign_id)
    if test is None:
        return req
    v = test.variants
    fields: dict[str, Any] = {f"subject_{x}": (v[i]["subject"] if i < len(v) else "") for i, x in enumerate("abcd") if i}
    fields.update({f"ab_intro_{x}": (v[i].get("intro") or "" if i < len(v) else "") for i, x in enumerate("abcd")})
    hours, rest = divmod(test.wait_seconds, 3600)
    wait = (f"{hours}h" if hours else "") + (f"{rest // 60}m" if rest // 60 else "") + (f"{rest % 60}s" if rest % 60 else "")
    return replace(req, ab=True, test_share=f"{test.test_share / 100:g}%", test_wait=wait, winner_by=test.winner_by,
                   min_sample=str(test.min_sample), **fields)


def compose_draft(engine: Engine, config: Config, req: DraftRequest):
    """The digest the choices make (``compose.Digest``), in the lists' common language."""
    from ..compose import ComposeOptions, compose
    from ..store.lists import common_language

    check_request(req, lists_needed=False)
    options = ComposeOptions(since=req.since, until=req.until or None, limit=req.limit, intro=req.intro or None,
                             subject=None, language=common_language(engine, list(req.lists)) if req.lists else None)
    return compose(list(req.sources), config, options)


def _meta(req: DraftRequest, old: dict | None = None) -> dict:
    keep = {k: v for k, v in (old or {}).items() if k not in ("compose", "article_keys", "segment", "track", "source")}
    choices = {k: v for k, v in req.as_dict().items() if k != "archive"}  # the archive flag lives on the campaign
    return {**keep, "compose": choices, "source": "admin: " + ", ".join(req.sources)}


def create_draft(engine: Engine, config: Config, req: DraftRequest) -> Campaign:
    """Compose and freeze a new draft campaign from the publisher's choices."""
    check_request(req)
    spec = ab_spec_of(req)
    digest = compose_draft(engine, config, req)
    if spec is not None:
        from .abtest import create_ab_campaign

        return create_ab_campaign(engine, digest, list(req.lists), config, spec, meta=_meta(req),
                                  segment=req.segment or None, track=req.track or None, archive=req.archive)
    return create_campaign(engine, digest, list(req.lists), config, subject=req.subject.strip() or None,
                           meta=_meta(req), segment=req.segment or None, track=req.track or None,
                           archive=req.archive)


def update_draft(engine: Engine, config: Config, campaign_id: int, req: DraftRequest) -> Campaign:
    """Compose a draft again from new choices and replace its content, lists and segment; only a
    draft can change (StateError otherwise, also when it left draft while this ran)."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    if c.status != CampaignStatus.DRAFT:
        raise StateError(f"campaign {cid} is {c.status}: only a draft can be edited (duplicate it to make a new draft)")
    check_request(req)
    spec = ab_spec_of(req)
    digest = compose_draft(engine, config, req)
    track = req.track or (c.meta or {}).get("track") or None
    subject = req.subject.strip() or None
    if spec is not None:
        from .abtest import check_ab

        spec = check_ab(digest, list(req.lists), config, spec, track)
        subject = spec.subjects[0]
    p = prepare_content(engine, digest, list(req.lists), config, subject=subject,
                        from_address=c.from_address, reply_to=c.reply_to, headers=c.headers, meta=_meta(req, c.meta),
                        track=track)
    with transaction(engine) as conn:
        list_ids = list_ids_of(conn, list(req.lists))
        if req.segment:
            from ..store.segments import segment_for_campaign

            p.meta["segment"] = segment_for_campaign(conn, req.segment, list_ids)
        changed = conn.execute(update(q.campaigns).where(q.campaigns.c.id == cid, q.campaigns.c.status == CampaignStatus.DRAFT)
                               .values(name=p.subject, subject=p.subject, preheader=p.preheader, html=p.html, text=p.text,
                                       meta=p.meta, updated_at=utcnow())).rowcount
        if not changed:
            raise StateError(f"campaign {cid} left draft while it was being edited; nothing was changed")
        conn.execute(delete(q.campaign_lists).where(q.campaign_lists.c.campaign_id == cid))
        conn.execute(q.campaign_lists.insert(), [{"campaign_id": cid, "list_id": lid} for lid in list_ids])
        conn.execute(delete(q.campaign_images).where(q.campaign_images.c.campaign_id == cid))
        ab_store.delete_test(conn, cid)
        if spec is not None:
            ab_store.insert_test(conn, cid, variants=spec.variants, test_share=spec.test_share,
                                 wait_seconds=spec.wait_seconds, winner_by=spec.winner_by, min_sample=spec.min_sample)
        if p.images:
            conn.execute(q.campaign_images.insert(), [
                {"campaign_id": cid, "cid": i.cid, "filename": i.filename, "content_type": i.content_type, "data": i.data}
                for i in p.images])
    return get_campaign(engine, cid)


def duplicate_campaign(engine: Engine, campaign_id: int) -> Campaign:
    """A new draft with the campaign's content, lists, segment, images, A/B test settings and archive
    choice (any status may be copied)."""
    from ..feedback.record import RATE_PAUSE_OVERRIDE

    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    now = utcnow()
    meta = {k: v for k, v in (c.meta or {}).items() if k not in (RATE_PAUSE_OVERRIDE, "local_time")}  # a new schedule is chosen anew
    meta["copied_from"] = cid
    with transaction(engine) as conn:
        res = conn.execute(q.campaigns.insert().values(
            name=c.name, subject=c.subject, from_address=c.from_address, reply_to=c.reply_to, preheader=c.preheader,
            html=c.html, text=c.text, headers=dict(c.headers or {}), meta=meta, status=CampaignStatus.DRAFT.value,
            status_reason="", created_at=now, updated_at=now, archive=c.archive))
        key = res.inserted_primary_key
        assert key is not None
        new = int(key[0])
        lists = [r[0] for r in conn.execute(select(q.campaign_lists.c.list_id).where(q.campaign_lists.c.campaign_id == cid))]
        if lists:
            conn.execute(q.campaign_lists.insert(), [{"campaign_id": new, "list_id": lid} for lid in lists])
        images = conn.execute(select(q.campaign_images).where(q.campaign_images.c.campaign_id == cid)
                              .order_by(q.campaign_images.c.id)).mappings().all()
        if images:
            conn.execute(q.campaign_images.insert(), [
                {"campaign_id": new, "cid": i["cid"], "filename": i["filename"], "content_type": i["content_type"],
                 "data": i["data"]} for i in images])
        test = ab_store.test_of(conn, cid)
        if test is not None:  # the same test, without the original's results
            ab_store.insert_test(conn, new, variants=test.variants, test_share=test.test_share,
                                 wait_seconds=test.wait_seconds, winner_by=test.winner_by, min_sample=test.min_sample)
    return get_campaign(engine, new)


def send_now(engine: Engine, campaign_id: int) -> Campaign:
    """Mark a draft (or a scheduled campaign, ahead of its time) running: a worker sends it.
    A campaign with nobody to send to is refused before it changes."""
    c = get_campaign(engine, campaign_id)
    cid = stored_id(c)
    if c.status == CampaignStatus.SCHEDULED:
        return start_scheduled_now(engine, cid)
    if c.status != CampaignStatus.DRAFT:
        raise StateError(f"campaign {cid} is {c.status}: only a draft or a scheduled campaign can be started")
    with transaction(engine) as conn:
        if c.ledger_created_at is None and not q.active_recipients_count(conn, cid):
            raise InvalidInput(f"campaign {cid} has nobody to send to: its lists have no active subscriber")
        transition(conn, cid, CampaignStatus.RUNNING, allow_from=(CampaignStatus.DRAFT,))
    return get_campaign(engine, cid)
