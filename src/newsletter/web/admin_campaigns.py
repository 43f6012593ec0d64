"""Admin pages for campaigns: the list, a new campaign composed from the preview (sources, date
range, article limit, editor's note, subject, lists, segment), editing a draft, the campaign page
with its standing (worker running? why not sending? what resume does), test send, send now,
schedule, pause, resume, cancel, duplicate, and the JSON its script polls for live progress.

A thin shell: each handler calls ``campaign_calls`` (which calls dispatch/store/schedule) and
renders. A form that cannot be carried out comes back with the values entered and the reason.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from ..errors import NewsletterError
from . import campaign_calls as calls
from . import library
from . import preview as pv
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import flash, page, redirect

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(require_admin)])

FRAME_CSP = ("default-src 'none'; img-src * data: blob:; style-src 'unsafe-inline' *; font-src * data:; "
             "frame-ancestors 'self'; form-action 'none'")


def _campaign_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise HTTPException(404, f"there is no campaign {value[:40]!r}")
    return int(value)


# --- the list ---------------------------------------------------------------------------------


@router.get("/campaigns")
def campaigns_page(request: Request):
    st = state(request)
    return page(request, "admin/campaigns.html", admin=True, active="campaigns", title="Campaigns",
                campaigns=library.recent_campaigns(st, limit=200), digests=library.recurring_digests(st),
                workers=calls.worker_summary(st), timezone=st.config.timezone, rich=calls.rich,
                local=lambda dt: calls.local_time(st, dt))


# --- new campaign and draft editing ------------------------------------------------------------


def _form_page(request: Request, req, *, campaign=None, error: str | None = None, status: int = 200, compose: bool = True):
    """The new-campaign (or edit-draft) form with ``req``'s values and, composed from them, the preview."""
    st = state(request)
    doc, key = calls.draft_preview(st, req) if compose else (None, None)
    frame = f"/admin/campaigns/composed/{key}/frame" if key else None
    editing = campaign.id if campaign else None
    return page(request, "admin/campaign_form.html", status=status, admin=True, active="campaigns",
                title=f"Edit campaign {campaign.id}" if campaign else "New campaign", req=req, c=campaign,
                choices=calls.form_choices(st), doc=doc, frame=frame, sample=lambda text: pv.sample(text, html=False),
                form_error=error, apple_warning=calls.apple_warning(), track_default=st.config.track,
                since_note=calls.since_note(st, req, editing), received=calls.already_received(st, req, doc, editing))


@router.get("/campaigns/new")
def new_campaign(request: Request):
    """The form with its defaults (since the last campaign to the list, else default_since; 10
    articles), and the digest they compose."""
    return _form_page(request, calls.default_request(state(request)))


@router.post("/campaigns/new")
def create_campaign(request: Request, sources: list[str] = Form([]), since: str = Form(""), until: str = Form(""),
                    limit: str = Form(""), intro: str = Form(""), subject: str = Form(""), lists: list[str] = Form([]),
                    segment: str = Form(""), do: str = Form("create"), csrf_token: str = Form(""),
                    ab: dict = Depends(calls.ab_form)):
    """``do=preview`` composes the choices again and shows them (nothing stored); else creates the draft."""
    check_csrf(request, csrf_token)
    st = state(request)
    req = calls.request_from(st, sources, since, until, limit, intro, subject, lists, segment, ab)
    if do == "preview":
        return _form_page(request, req)
    try:
        c = calls.create_draft(st, req)
    except NewsletterError as e:
        return _form_page(request, req, error=calls.publisher_words(str(e)), status=status_for(e))
    flash(request, "ok", f"Draft campaign {c.id} created. Send yourself a test, then send it now or schedule it.")
    return redirect(f"/admin/campaigns/{c.id}")


@router.get("/campaigns/composed/{key}/frame")
def composed_frame(request: Request, key: str):
    doc = calls.cached_preview(state(request), key)
    body = pv.for_frame(doc, "html", f"/admin/campaigns/composed/{key}")
    return Response(body, media_type="text/html; charset=utf-8",
                    headers={"Content-Security-Policy": FRAME_CSP, "Cache-Control": "no-store"})


@router.get("/campaigns/composed/{key}/cid/{cid:path}")
def composed_cid(request: Request, key: str, cid: str):
    doc = calls.cached_preview(state(request), key)
    if cid not in doc.images:
        raise HTTPException(404, f"no inline image {cid!r} in this digest")
    content_type, data = doc.images[cid]
    return Response(data, media_type=content_type, headers={"Cache-Control": "no-store"})


@router.get("/campaigns/composed/{key}/assets/{name:path}")
def composed_asset(request: Request, key: str, name: str):
    found = calls.cached_preview(state(request), key).assets.get("assets/" + name)
    if found is None:
        raise HTTPException(404, f"no picture {name!r} in this digest")
    return Response(found[1], media_type=found[0], headers={"Cache-Control": "no-store"})


@router.get("/campaigns/{campaign_id}/edit")
def edit_campaign(request: Request, campaign_id: str):
    st = state(request)
    info = library.campaign(st, _campaign_id(campaign_id))
    req = calls.request_of_campaign(st, info)
    if info.status != "draft":
        return _form_page(request, req, campaign=info, status=409, compose=False,
                          error=f"Campaign {info.id} is {info.status}: only a draft can be edited. Duplicate it to make a new draft.")
    return _form_page(request, req, campaign=info)


@router.post("/campaigns/{campaign_id}/edit")
def save_campaign(request: Request, campaign_id: str, sources: list[str] = Form([]), since: str = Form(""),
                  until: str = Form(""), limit: str = Form(""), intro: str = Form(""), subject: str = Form(""),
                  lists: list[str] = Form([]), segment: str = Form(""), do: str = Form("save"), csrf_token: str = Form(""),
                  ab: dict = Depends(calls.ab_form)):
    check_csrf(request, csrf_token)
    st = state(request)
    cid = _campaign_id(campaign_id)
    req = calls.request_from(st, sources, since, until, limit, intro, subject, lists, segment, ab)
    if do == "preview":
        return _form_page(request, req, campaign=library.campaign(st, cid))
    try:
        calls.update_draft(st, cid, req)
    except NewsletterError as e:
        return _form_page(request, req, campaign=library.campaign(st, cid), error=calls.publisher_words(str(e)),
                          status=status_for(e))
    flash(request, "ok", f"Draft campaign {cid} saved.")
    return redirect(f"/admin/campaigns/{cid}")


# --- one campaign -------------------------------------------------------------------------------


def _campaign_page(request: Request, cid: int, *, error: str | None = None, status: int = 200, when: str = "",
                   test_to: str = "", sched: dict | None = None, schedule_error: str | None = None):
    from ..engagement.report import campaign_report

    st = state(request)
    info = library.campaign(st, cid)
    report = campaign_report(st.engine, info.id, timeline=True)
    standing = calls.standing(st, info)
    return page(request, "admin/campaign.html", status=status, admin=True, active="campaigns", title=f"Campaign {info.id}",
                c=info, timezone=st.config.timezone, report=report, report_json=report.as_dict(), s=standing,
                sending=standing.sending, ambiguous=standing.ambiguous, live=calls.live_numbers(info, standing),
                when=when, test_to=test_to, min_when=calls.local_now_input(st), flash=("error", error) if error else None,
                local=lambda dt: calls.local_time(st, dt), duration=calls.duration_text, rich=calls.rich,
                local_input=lambda dt: calls.local_input(st, dt),
                send_problem=calls.send_problem(st) if info.status in ("draft", "scheduled") else None,
                sched=sched or {}, schedule_error=schedule_error, lt=calls.local_time_plan(st, info),
                **library.progress(info))


@router.get("/campaigns/{campaign_id}")
def campaign_page(request: Request, campaign_id: str):
    return _campaign_page(request, _campaign_id(campaign_id))


@router.get("/campaigns/{campaign_id}/progress")
def campaign_progress(request: Request, campaign_id: str):
    """What the campaign page's script polls: counts, rate, time to go, and the standing sentence."""
    st = state(request)
    info = library.campaign(st, _campaign_id(campaign_id))
    return JSONResponse(calls.live_numbers(info, calls.standing(st, info)), headers={"Cache-Control": "no-store"})


@router.post("/campaigns/{campaign_id}/schedule")
def campaign_schedule(request: Request, campaign_id: str, csrf_token: str = Form(""),
                      form: dict = Depends(calls.schedule_form)):
    """At a time in the publisher's zone, or at a time of day in each reader's zone (``mode``)."""
    check_csrf(request, csrf_token)
    cid = _campaign_id(campaign_id)
    st = state(request)
    try:
        c = calls.schedule(st, cid, form)
    except NewsletterError as e:
        return _campaign_page(request, cid, schedule_error=calls.publisher_words(str(e)), status=status_for(e),
                              when=form["when"], sched=form)
    lt = (c.meta or {}).get("local_time")
    flash(request, "ok", f"Campaign {cid} scheduled for {lt['time']} on {lt['date']} in each reader's time zone; "
                         f"the first zone starts at {calls.local_time(st, c.scheduled_at)}." if lt else
                         f"Campaign {cid} scheduled for {calls.local_time(st, c.scheduled_at)}.")
    return redirect(f"/admin/campaigns/{cid}")


@router.post("/campaigns/{campaign_id}/test-send")
def campaign_test_send(request: Request, campaign_id: str, to: str = Form(""), csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    cid = _campaign_id(campaign_id)
    st = state(request)
    try:
        address, variants = library.test_send_campaign(st, cid, to.strip())
    except NewsletterError as e:
        return _campaign_page(request, cid, error=f"The test was not sent: {calls.publisher_words(str(e))}",
                              status=status_for(e), test_to=to[:320])
    flash(request, "ok", f"Test messages for variants {', '.join(variants)} sent to {address}." if variants
          else f"Test message sent to {address}.")
    return redirect(f"/admin/campaigns/{cid}")


@router.post("/campaigns/{campaign_id}/send-now")
def campaign_send_now(request: Request, campaign_id: str, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    cid = _campaign_id(campaign_id)
    st = state(request)
    try:
        calls.send_now(st, cid)
    except NewsletterError as e:
        return _campaign_page(request, cid, error=calls.publisher_words(str(e)), status=status_for(e))
    s = calls.standing(st, library.campaign(st, cid))
    flash(request, "warn" if s.needs_worker else "ok", f"Campaign {cid} is sending. {s.note}".replace("`", ""))
    return redirect(f"/admin/campaigns/{cid}")


@router.post("/campaigns/{campaign_id}/duplicate")
def campaign_duplicate(request: Request, campaign_id: str, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    c = calls.duplicate(state(request), _campaign_id(campaign_id))
    flash(request, "ok", f"Campaign {c.id} is a new draft copied from campaign {campaign_id}.")
    return redirect(f"/admin/campaigns/{c.id}")


@router.post("/campaigns/{campaign_id}/archive")
def campaign_archive(request: Request, campaign_id: str, archive: str = Form(""), csrf_token: str = Form("")):
    """The campaign's public-archive choice: ``default`` (as its lists say), ``on`` or ``off``; any status."""
    check_csrf(request, csrf_token)
    cid = _campaign_id(campaign_id)
    choice = {"default": None, "on": True, "off": False}
    if archive not in choice:
        return _campaign_page(request, cid, error=f"Unknown archive choice {archive[:20]!r}: default, on or off.", status=400)
    status = library.set_campaign_archive(state(request), cid, choice[archive])
    flash(request, "ok", f"Campaign {cid}: {status.reason}.".replace("`", ""))
    return redirect(f"/admin/campaigns/{cid}")


@router.post("/campaigns/{campaign_id}/{action}")
def campaign_action(request: Request, campaign_id: str, action: str, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    cid = _campaign_id(campaign_id)
    st = state(request)
    try:
        c = library.campaign_action(st, cid, action)
    except NewsletterError as e:
        return _campaign_page(request, cid, error=calls.publisher_words(str(e)), status=status_for(e))
    s = calls.standing(st, library.campaign(st, cid))
    flash(request, "warn" if s.needs_worker else "ok", f"Campaign {cid} is now {c.status}. {s.note}".replace("`", "").strip())
    return redirect(f"/admin/campaigns/{cid}")

