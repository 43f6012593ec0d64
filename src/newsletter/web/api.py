"""JSON API under /api, described by the OpenAPI schema at /api/openapi.json.

Same guard as the admin pages (local-only without auth; ``Authorization: Bearer TOKEN`` or a
logged-in session otherwise). Errors are ``{"error": "...", "status": N}``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import escape
from pydantic import BaseModel, Field

from . import campaign_calls as calls
from . import library
from .app import state
from .deps import require_api

router = APIRouter(prefix="/api", dependencies=[Depends(require_api)])


class Error(BaseModel):
    error: str
    status: int


ERRORS: dict[int | str, dict[str, Any]] = {code: {"model": Error} for code in (400, 401, 403, 404, 409, 413, 429, 503)}


class ListOut(BaseModel):
    id: int
    slug: str
    name: str
    description: str
    opt_in: str
    counts: dict[str, int]
    archive: bool = Field(True, description="its campaigns go in the public archive unless a campaign says otherwise")


class ListIn(BaseModel):
    slug: str = Field(max_length=64)
    name: str | None = Field(None, max_length=200)
    description: str = Field("", max_length=2000)
    opt_in: Literal["single", "double"] = "double"
    archive: bool | None = Field(None, description="its campaigns' default for the public archive (default: yes)")


class SubscriberOut(BaseModel):
    id: int
    email: str
    name: str
    attributes: dict[str, Any]
    lists: dict[str, str]
    created_at: datetime


class SubscriberPage(BaseModel):
    items: list[SubscriberOut]
    total: int
    offset: int
    limit: int


class SubscriberIn(BaseModel):
    email: str = Field(max_length=320)
    name: str | None = Field(None, max_length=200)
    list: str | None = Field(None, max_length=64, description="slug of the list to subscribe to")
    attributes: dict[str, str | int | float | bool | None] | None = None
    resubscribe: bool = Field(False, description="they gave fresh consent: re-add even if they left the list")


class AddOut(BaseModel):
    subscriber_id: int
    email: str
    outcome: str
    list_slug: str | None
    status: str | None


class Unsubscribed(BaseModel):
    email: str
    lists: list[str] = Field(description="lists whose subscription changed")


class Stats(BaseModel):
    subscribers: int
    lists: int
    subscriptions: dict[str, int]
    campaigns: dict[str, int]


class CampaignFeedback(BaseModel):
    copies: int = Field(description="copies a server gave a final answer to (sent + failed)")
    hard: int = Field(description="readers with a hard bounce for this campaign")
    soft: int = Field(description="readers with a soft bounce for this campaign")
    complaints: int = Field(description="readers who reported it as spam")
    hard_rate: float = Field(description="hard / copies (0.05 = 5 %)")
    soft_rate: float
    complaint_rate: float = Field(description="complaints / copies (0.003 = 0.3 %)")


class BucketOut(BaseModel):
    at: datetime = Field(description="when the bucket is due (UTC): the local time in its zones")
    offsets: list[str] = Field(description="the UTC offsets it serves, e.g. UTC+05:30")
    zones: list[str] = Field(description="IANA zones of its readers (the first 12)")
    kind: str = Field(description="on time, next day, or late (--past send)")
    copies: int
    sent: int
    failed: int
    skipped: int
    left: int = Field(description="copies still to be handed to a server")
    state: Literal["done", "due", "to come"]


class LocalTimeOut(BaseModel):
    time: str = Field(description="the local time of day, HH:MM")
    date: str
    window_minutes: int
    past: str = Field(description="send, skip or next-day")
    planned: bool = Field(description="buckets are planned when sending starts")
    done: int = Field(description="buckets with no copy left")
    to_come: int = Field(description="buckets with copies left (due or still to come)")
    skipped_past: int = Field(description="copies skipped because the local time had passed (--past skip)")
    buckets: list[BucketOut]


class CampaignStanding(BaseModel):
    workers_running: int = Field(description="`newsletter worker` processes alive now (heartbeat)")
    needs_worker: bool = Field(description="it can only move with a worker, and none is running")
    note: str = Field(description="what happens next, in one sentence")
    stall: str | None = Field(description="why workers could not send it (recorded by the worker), if so")
    stall_since: str | None
    resume: str | None = Field(description="what resuming would do, for a paused campaign")
    sending: int = Field(description="copies being handed to a server by a live sender")
    ambiguous: int = Field(description="copies whose sender died while handing them over")
    rate: float | None = Field(description="messages per second over the last minute, while running")
    eta_seconds: float | None
    duration_seconds: float | None = Field(description="started to finished, for a finished campaign")


class CampaignOut(BaseModel):
    id: int
    name: str
    subject: str
    status: str
    status_reason: str
    lists: list[str]
    created_at: datetime
    scheduled_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    counts: dict[str, int] = Field(description="deliveries per state; 'sending' ones are ambiguous (outcome unknown)")
    done: int
    total: int
    feedback: CampaignFeedback | None = Field(None, description="bounces and complaints over copies sent")
    local_time: LocalTimeOut | None = Field(None, description="a local-time campaign's buckets, done and to come")
    standing: CampaignStanding | None = Field(None, description="one campaign only: what happens next, why it is not moving")
    archive: ArchiveOut | None = Field(None, description="whether the public archive shows it, and why not")


class ArchiveOut(BaseModel):
    published: bool = Field(description="shown in the public archive now")
    archive: bool | None = Field(description="the campaign's own choice; null: its lists decide")
    reason: str = Field(description="why it is or is not published")


class CampaignPatch(BaseModel):
    archive: bool | None = Field(description="publish in the public archive once a copy was delivered; null: as its lists say")


class ScheduleIn(BaseModel):
    """At one moment (``at``), or at a time of day in each reader's own zone (``local_time``)."""

    at: datetime | None = Field(None, description="when to send; without an offset it is read in the configured time zone")
    local_time: str | None = Field(None, max_length=16, description="instead of at: the time of day (HH:MM, 24-hour) "
                                   "each reader gets it in their own zone (theirs, else their list's, else the configured one)")
    date: str | None = Field(None, max_length=16, description="with local_time: the day, YYYY-MM-DD (default: today in the configured zone)")
    window: str | None = Field(None, max_length=16, description="with local_time: how late a zone may still get it when "
                               "sending starts, e.g. 30m, 6h (default 1h, at most 24h)")
    past: Literal["send", "skip", "next-day"] | None = Field(
        None, description="with local_time: zones whose time passed more than the window ago are sent now, skipped, or "
                          "sent the next day (the default)")


class ABIn(BaseModel):
    """An A/B subject test: the campaign's subject is variant A; B (to D) are compared with it on a
    share of the readers, and the winner goes to the rest after the wait."""

    subject_b: str = Field(max_length=998, description="variant B's subject")
    subject_c: str | None = Field(None, max_length=998)
    subject_d: str | None = Field(None, max_length=998)
    intro_a: str | None = Field(None, max_length=2000, description="a body variant: an intro paragraph above A's content")
    intro_b: str | None = Field(None, max_length=2000)
    intro_c: str | None = Field(None, max_length=2000)
    intro_d: str | None = Field(None, max_length=2000)
    test_share: str = Field("20%", max_length=16, description="share of the readers in the test, more than 0 % and less than 100 %")
    test_wait: str = Field("4h", max_length=16, description="from the last test copy to the decision: 4h, 90m, 1d (at most 30 days)")
    winner_by: Literal["clicks", "opens"] = Field("clicks", description="people's clicks, or opens (which undercount "
                                                  "Apple Mail readers); the campaign must track it")
    min_sample: int = Field(50, ge=1, le=10**9, description="delivered test copies each variant needs for a decision on data (else A)")


class CampaignIn(BaseModel):
    """A draft composed from the configured sources, as the admin's new-campaign form makes it."""

    sources: list[str] = Field(min_length=1, max_length=100, description="configured sources to take articles from")
    since: str = Field(max_length=32, description="first day, YYYY-MM-DD (in the configured time zone)")
    until: str = Field("", max_length=32, description="last day, included (default: today)")
    limit: int = Field(10, ge=1, le=200, description="at most this many articles")
    intro: str = Field("", max_length=5000, description="the editor's note above the articles")
    subject: str = Field("", max_length=998, description="subject (A of an A/B test); empty: made from the articles")
    lists: list[str] = Field(min_length=1, max_length=100, description="slugs of the lists to send to")
    segment: str = Field("", max_length=200, description="a segment of the one list")
    track: Literal["", "off", "opens", "clicks", "opens,clicks"] = Field("", description="empty: the configured default")
    ab: ABIn | None = Field(None, description="make it an A/B subject test")
    archive: bool | None = Field(None, description="publish in the public archive once a copy was delivered; null: as its lists say")


# The library's messages name the CLI's flags; the API's say its fields.
_API_WORDS = {"--subject-b": "ab.subject_b", "--subject-c": "ab.subject_c", "--subject-d": "ab.subject_d",
              "--subject": "subject", "--intro-b": "ab.intro_b", "--intro-c": "ab.intro_c", "--intro-d": "ab.intro_d",
              "--intro": "ab.intro_a", "--test-share": "ab.test_share", "--test-wait": "ab.test_wait",
              "--winner-by": "ab.winner_by", "--min-sample": "ab.min_sample", "--track": "track",
              "--local-time": "local_time", "--date": "date", "--window": "window", "--past": "past", "--at": "at"}


def _api_error(e):
    """``e`` (a NewsletterError) again, its flags named as the API's fields."""
    import re

    message = re.sub(r"--[a-z]+(?:-[a-z]+)*", lambda m: _API_WORDS.get(m[0], m[0]), str(e))
    if message == str(e):
        return e
    try:
        return type(e)(message)
    except TypeError:  # an error made of parts (SourceError): as it was
        return e


def _campaign_out(c, st=None) -> CampaignOut:
    """A campaign as JSON; with ``st``, its standing too (one campaign: it asks about workers and senders)."""
    p = library.progress(c)
    return CampaignOut(id=c.id, name=c.name, subject=c.subject, status=c.status, status_reason=c.status_reason or "",
                       lists=list(c.lists), created_at=c.created_at, scheduled_at=c.scheduled_at, started_at=c.started_at,
                       finished_at=c.finished_at, counts=p["counts"], done=p["done"], total=p["total"],
                       feedback=CampaignFeedback(**c.feedback) if getattr(c, "feedback", None) else None,
                       local_time=_local_time_out(getattr(c, "buckets", None)),
                       archive=ArchiveOut(**c.archive) if getattr(c, "archive", None) else None,
                       standing=CampaignStanding(**calls.standing(st, c).as_dict()) if st is not None else None)


def _local_time_out(b: dict | None) -> LocalTimeOut | None:
    if b is None:
        return None
    return LocalTimeOut(**{k: b[k] for k in ("time", "date", "window_minutes", "past", "planned", "done", "to_come",
                                             "skipped_past")},
                        buckets=[BucketOut(**{k: x[k] for k in BucketOut.model_fields}) for x in b["buckets"]])


def _list_out(s) -> ListOut:
    return ListOut(id=s.id, slug=s.slug, name=s.name, description=s.description or "", opt_in=s.opt_in, counts=s.counts,
                   archive=s.archive)


def _subscriber_out(r) -> SubscriberOut:
    return SubscriberOut(id=r.id, email=r.email, name=r.name or "", attributes=r.attributes or {}, lists=r.lists, created_at=r.created_at)


@router.get("/docs", include_in_schema=False)
def docs_page(request: Request) -> HTMLResponse:
    """The API's documentation page: Swagger UI from the app's own static files, so it works
    offline and under the page's Content-Security-Policy (no CDN, no inline script)."""
    title = escape(f"{state(request).config.newsletter_name} — API")
    return HTMLResponse(
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<link rel="icon" href="/static/favicon.svg" type="image/svg+xml">'
        '<link rel="stylesheet" href="/static/vendor/swagger-ui/swagger-ui.css">'
        '<link rel="stylesheet" href="/static/api-docs.css"></head>'
        '<body><main id="swagger-ui" data-schema="/api/openapi.json"></main>'
        '<script src="/static/vendor/swagger-ui/swagger-ui-bundle.js"></script>'
        '<script src="/static/api-docs.js"></script></body></html>')


@router.get("/stats", response_model=Stats, responses=ERRORS, summary="Counts of subscribers, subscriptions and campaigns")
def stats(request: Request) -> Stats:
    return Stats(**library.stats(state(request)))


@router.get("/lists", response_model=list[ListOut], responses=ERRORS, summary="Every list with subscription counts per status")
def get_lists(request: Request):
    return [_list_out(s) for s in library.all_lists(state(request))]


@router.post("/lists", response_model=ListOut, status_code=201, responses=ERRORS, summary="Create a list")
def post_list(request: Request, body: ListIn):
    st = state(request)
    lst = library.create_list(st, body.slug, body.name, body.description, body.opt_in, archive=body.archive)
    return next(_list_out(s) for s in library.all_lists(st) if s.slug == lst.slug)


@router.get("/subscribers", response_model=SubscriberPage, responses=ERRORS, summary="Search subscribers (paginated)")
def get_subscribers(
    request: Request,
    q: str = Query("", max_length=200, description="part of the address or name"),
    list: str = Query("", max_length=64, description="list slug"),
    status: Literal["", "unconfirmed", "active", "unsubscribed", "bounced", "complained"] = "",
    offset: int = Query(0, ge=0, le=10**9),
    limit: int = Query(50, ge=1, le=500),
):
    page = library.search_subscribers(state(request), q=q, list_slug=list, status=status, offset=offset, limit=limit)
    return SubscriberPage(items=[_subscriber_out(r) for r in page.items], total=page.total, offset=page.offset, limit=page.limit)


@router.post("/subscribers", response_model=AddOut, status_code=201, responses=ERRORS, summary="Add a subscriber (and subscribe them to a list)")
def post_subscriber(request: Request, body: SubscriberIn):
    r = library.admin_add_subscriber(state(request), body.email, body.name or "", body.list or "", body.resubscribe,
                                     attributes=body.attributes)
    return AddOut(subscriber_id=r.subscriber_id, email=r.email, outcome=r.outcome, list_slug=r.list_slug, status=r.status)


@router.get("/subscribers/{email}", response_model=SubscriberOut, responses=ERRORS, summary="One subscriber with their lists")
def get_subscriber(request: Request, email: str):
    return _subscriber_out(library.get_subscriber(state(request), email))


@router.post("/subscribers/{email}/unsubscribe", response_model=Unsubscribed, responses=ERRORS, summary="Unsubscribe from one list or all")
def post_unsubscribe(request: Request, email: str, list: str | None = Query(None, max_length=64, description="list slug; all lists when absent")):
    return Unsubscribed(email=email, lists=library.admin_unsubscribe(state(request), email, list or None))


@router.delete("/subscribers/{email}", response_model=SubscriberOut, responses=ERRORS, summary="Erase a subscriber and their subscriptions")
def delete_subscriber(request: Request, email: str, suppress: bool = Query(False, description="keep the address on the suppression list")):
    return _subscriber_out(library.admin_erase(state(request), email, suppress))


@router.get("/campaigns", response_model=list[CampaignOut], responses=ERRORS, summary="Campaigns, newest first, with delivery counts")
def get_campaigns(request: Request, limit: int = Query(100, ge=1, le=1000)):
    return [_campaign_out(c) for c in library.recent_campaigns(state(request), limit=limit)]


@router.get("/campaigns/{campaign_id}", response_model=CampaignOut, responses=ERRORS, summary="One campaign and its progress")
def get_campaign(request: Request, campaign_id: int = Path(ge=1, le=2**62)):
    st = state(request)
    return _campaign_out(library.campaign(st, campaign_id), st)


@router.patch("/campaigns/{campaign_id}", response_model=CampaignOut, responses=ERRORS,
              summary="Change a campaign's public-archive choice (any status)")
def patch_campaign(request: Request, body: CampaignPatch, campaign_id: int = Path(ge=1, le=2**62)):
    st = state(request)
    library.set_campaign_archive(st, campaign_id, body.archive)
    return _campaign_out(library.campaign(st, campaign_id), st)


@router.post("/campaigns", response_model=CampaignOut, status_code=201, responses=ERRORS,
             summary="Compose a draft campaign from the sources (optionally an A/B subject test)")
def post_campaign(request: Request, body: CampaignIn):
    from ..errors import InvalidInput, NewsletterError

    st = state(request)
    unknown = [x for x in body.sources if x not in st.config.sources]
    if unknown:
        raise InvalidInput(f"source {unknown[0]!r}: not one of the configured sources")
    ab = body.ab.model_dump() if body.ab else {}
    fields = {"ab": body.ab is not None, "track": body.track, "subject_b": ab.get("subject_b") or "",
              "subject_c": ab.get("subject_c") or "", "subject_d": ab.get("subject_d") or "",
              **{f"ab_intro_{x}": ab.get(f"intro_{x}") or "" for x in "abcd"},
              "test_share": ab.get("test_share", ""), "test_wait": ab.get("test_wait", ""),
              "winner_by": ab.get("winner_by", ""), "min_sample": str(ab.get("min_sample", ""))}
    req = calls.request_from(st, body.sources, body.since, body.until, str(body.limit), body.intro, body.subject,
                             body.lists, body.segment, fields)
    req.archive = body.archive  # stored with the draft, in its transaction
    try:
        c = calls.create_draft(st, req)
    except NewsletterError as e:
        raise _api_error(e) from None
    return _campaign_out(library.campaign(st, c.id), st)


@router.post("/campaigns/{campaign_id}/schedule", response_model=CampaignOut, responses=ERRORS,
             summary="Schedule a draft campaign at a time, or at a time of day in each reader's zone")
def post_schedule(request: Request, body: ScheduleIn, campaign_id: int = Path(ge=1, le=2**62)):
    from ..errors import InvalidInput, NewsletterError

    st = state(request)
    if (body.at is None) == (body.local_time is None):
        raise InvalidInput("give at (a moment) or local_time (HH:MM in each reader's zone), not both or neither")
    if body.at is not None and (body.date or body.window or body.past):
        raise InvalidInput("date, window and past only go with local_time")
    form = {"mode": "local", "local_time": body.local_time, "local_date": body.date, "window": body.window,
            "past": body.past} if body.local_time is not None else {"mode": "at", "when": body.at.isoformat() if body.at else ""}
    try:
        calls.schedule(st, campaign_id, form)
    except NewsletterError as e:
        raise _api_error(e) from None
    return _campaign_out(library.campaign(st, campaign_id), st)


@router.post("/campaigns/{campaign_id}/{action}", response_model=CampaignOut, responses=ERRORS, summary="Pause, resume or cancel a campaign")
def post_campaign_action(request: Request, action: Literal["pause", "resume", "cancel"], campaign_id: int = Path(ge=1, le=2**62)):
    st = state(request)
    library.campaign_action(st, campaign_id, action)
    return _campaign_out(library.campaign(st, campaign_id), st)


# --- deliverability: the `newsletter domain check` report ---


class DomainCheckOut(BaseModel):
    name: str
    ok: bool
    summary: str
    fix: str | None = Field(description="the record to publish (or setting to change) when the check fails")
    required: bool = Field(description="Gmail, Yahoo or Microsoft require it of bulk senders")
    dns_error: bool = Field(description="DNS did not answer: neither proven nor disproven")


class DomainReportOut(BaseModel):
    domain: str
    envelope_domain: str
    dkim_domain: str | None
    resolver: str
    ok: bool
    failed_required: list[str]
    checks: list[DomainCheckOut]


@router.get("/domain", response_model=DomainReportOut, responses=ERRORS,
            summary="SPF, DKIM, DMARC, alignment, bounce MX and https checks of the From domain (asks DNS)")
def get_domain_check(request: Request):
    from ..dispatch.domain import check_domain

    return DomainReportOut(**check_domain(state(request).config).as_dict())


class AgentCounts(BaseModel):
    human: int = 0
    apple_mpp: int = Field(0, alias="apple-mpp")
    proxy: int = 0
    scanner: int = 0

    model_config = {"populate_by_name": True}


class EventCountsOut(BaseModel):
    events: AgentCounts
    readers: AgentCounts


class LinkOut(BaseModel):
    idx: int
    url: str
    human_clicks: int
    human_readers: int
    machine_clicks: int


class VariantOut(BaseModel):
    """One variant of an A/B test: test copies delivered, people who clicked and opened, and the deciding rate."""

    variant: int
    letter: str
    subject: str
    test_copies: int
    test_delivered: int
    test_clickers: int = Field(description="people (human clicks) among the test copies")
    test_openers: int = Field(description="people's opens (human or image proxy) among the test copies")
    rest_copies: int = Field(description="copies of the rest sent this variant (the winner's)")
    delivered: int
    clickers: int
    openers: int
    rate: float | None = Field(description="the winner_by measure over test copies delivered")
    intro: str | None = Field(None, description="a body variant's intro paragraph")


class ABOut(BaseModel):
    """An A/B subject test: settings, phase (not started, testing, waiting, decided), decision and variants."""

    test_share: float = Field(description="percent of the audience in the test")
    wait_seconds: int
    winner_by: Literal["clicks", "opens"]
    min_sample: int
    phase: str
    held: int = Field(description="readers waiting for the winner")
    tested_at: datetime | None
    decide_after: datetime | None
    decided_at: datetime | None
    winner: int | None
    winner_letter: str | None
    decision: dict[str, Any] | None = Field(description="the winner, the reason and the numbers it was chosen on")
    variants: list[VariantOut]


class ReportOut(BaseModel):
    """A campaign's report: people (``human``) apart from Apple Mail Privacy Protection, image proxies and link scanners."""

    campaign_id: int
    subject: str
    status: str
    tracking: list[str]
    sent_at: datetime | None
    delivered: int
    failed: int
    opens: EventCountsOut
    clicks: EventCountsOut
    unsubscribes: int
    bounces: dict[str, int]
    complaints: int
    human_open_rate: float | None
    human_click_rate: float | None
    click_to_open: float | None
    links: list[LinkOut]
    timeline: list[dict[str, Any]]
    ab: ABOut | None = None


@router.get("/campaigns/{campaign_id}/report", response_model=ReportOut, responses=ERRORS,
            summary="Delivered, opens, clicks (people apart from machines), unsubscribes, bounces, clicks per link")
def get_campaign_report(request: Request, campaign_id: int = Path(ge=1, le=2**62)):
    from ..engagement.report import campaign_report

    r = campaign_report(state(request).engine, campaign_id, links=True, timeline=True)
    d = r.as_dict()
    d["sent_at"] = r.sent_at
    return d
