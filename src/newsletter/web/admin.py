"""Admin pages: login, preview (with test send), campaigns, subscribers and lists.

Local-only unless an admin password or token is configured (see ``deps.require_admin``);
every form carries a CSRF token. Each handler calls one library function and renders the result.
"""

from __future__ import annotations

import hashlib
import secrets
from email.utils import parseaddr
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import JSONResponse, Response

from . import admin_import, admin_lists, admin_segments, admin_settings, admin_subscribers, campaign_calls, library
from . import preview as pv
from .app import state
from .deps import check_csrf, client_host, rate_limit, require_admin
from .render import flash, page, redirect
from .security import token_matches

router = APIRouter(prefix="/admin", include_in_schema=False)
guarded = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])


# --- login -----------------------------------------------------------------------------------


@router.get("/login")
def login_form(request: Request, next: str = "/admin/"):
    st = state(request)
    if not st.auth_configured:
        return redirect("/admin/")
    return page(request, "admin/login.html", title="Log in", next=_safe_next(next), admin=False)


@router.post("/login")
def login(request: Request, password: str = Form(""), csrf_token: str = Form(""), next: str = Form("/admin/")):
    st = state(request)
    check_csrf(request, csrf_token)
    if not st.auth_configured:
        return redirect("/admin/")
    rate_limit(request, "login_ip", client_host(request))
    ok = (st.password is not None and st.password.matches(password)) or token_matches(st.token_sha256, password)
    if not ok:
        return page(request, "admin/login.html", status=403, title="Log in", next=_safe_next(next),
                    flash=("error", "Wrong password."))
    session = request.state.session
    session["admin"] = True
    session["csrf"] = secrets.token_urlsafe(24)  # new session, new CSRF nonce
    session["dirty"] = True
    return redirect(_safe_next(next))


@router.post("/logout")
def logout(request: Request, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    request.state.session["admin"] = False
    request.state.session["dirty"] = True
    return redirect("/admin/login" if state(request).auth_configured else "/admin/")


def _safe_next(url: str) -> str:
    """Only redirect to a path on this site after login (no open redirect)."""
    return url if url.startswith("/") and not url.startswith("//") and "\\" not in url else "/admin/"


# --- dashboard ---------------------------------------------------------------------------------


@guarded.get("/")
def dashboard(request: Request):
    from ..engagement.report import list_growth, recent_reports

    st = state(request)
    growth = list_growth(st.engine)
    return page(request, "admin/dashboard.html", admin=True, active="", title="Overview",
                stats=library.stats(st), campaigns=library.recent_campaigns(st, limit=5),
                growth=growth, growth_json=[g.__dict__ for g in growth], reports=recent_reports(st.engine),
                workers=campaign_calls.worker_summary(st), rich=campaign_calls.rich)


# --- preview -------------------------------------------------------------------------------
# A previewed digest is named by a key: "sources" (composed from config.sources), a campaign id, or
# "digest-ID" (a stored recurring digest's next occurrence, from its own sources and template).
# Its frame lives at /admin/preview/{key}/frame so relative "assets/..." links resolve beside it.
DIGEST_KEY = "digest-"


def _doc(request: Request, key: str, *, refresh: bool = False) -> pv.PreviewDoc:
    st = state(request)
    if key.startswith(DIGEST_KEY):
        digest_id = key[len(DIGEST_KEY):]
        if not digest_id.isdigit() or len(digest_id) > 18:
            raise HTTPException(404, f"there is no recurring digest {key!r}")
        return library.digest_preview(st, library.find_digest(st, digest_id=int(digest_id)), refresh=refresh)
    if key != "sources":
        if not key.isdigit() or len(key) > 18:
            raise HTTPException(404, f"there is no campaign {key!r}")
        return library.campaign_preview(st, int(key))
    cache = st.preview_cache.setdefault("sources", pv.PreviewCache())
    return cache.get(st.config, st.watch, refresh=refresh)


@guarded.get("/preview")
def preview_page(request: Request, campaign: str | None = None, digest: str | None = None, view: str = "email",
                 refresh: bool = False):
    st = state(request)
    if view not in ("email", "text", "dark"):
        view = "email"
    if digest:
        key, campaign = f"{DIGEST_KEY}{library.find_digest(st, name=digest).digest.id}", None
    else:
        key = campaign or "sources"
    doc = _doc(request, key, refresh=refresh and not key.isdigit())
    campaigns = library.recent_campaigns(st)
    query = {"digest": digest} if digest else {"campaign": campaign} if campaign else {}
    version = _version(doc)
    raw = f"/admin/preview/{key}/frame?" + urlencode({"v": version})
    name, addr = parseaddr(doc.from_address or st.config.from_address)
    return page(
        request, "admin/preview.html", admin=True, active="preview", title="Preview",
        doc=doc, view=view, raw=raw, query_base=urlencode(query) + ("&" if query else ""),
        text=pv.sample(doc.text, html=False),
        budget=pv.HTML_BUDGET_BYTES, dark_styles=pv.has_dark_styles(doc.html),
        sender_name=name or addr or st.config.newsletter_name,
        campaigns=campaigns, campaign_id=campaign or "", key=key, digest_name=digest or "",
        digests=[i.digest.name for i in library.recurring_digests(st)], refresh_query=urlencode({**query, "refresh": 1}),
        watching=[str(p) for p in st.watch], version=version,
        workers=campaign_calls.worker_summary(st) if digest else None, rich=campaign_calls.rich,
    )


def _version(doc: pv.PreviewDoc) -> str:
    return hashlib.sha1((doc.html + doc.text + (doc.error or "")).encode()).hexdigest()[:12]


@guarded.get("/preview/{key}/frame")
def preview_frame(request: Request, key: str, variant: str = "html"):
    doc = _doc(request, key)
    if doc.error:
        raise HTTPException(409, doc.error)
    if variant == "text":
        return Response(pv.sample(doc.text, html=False), media_type="text/plain; charset=utf-8")
    if variant not in ("html", "dark"):
        raise HTTPException(400, f"unknown variant {variant!r} (html, dark or text)")
    body = pv.for_frame(doc, variant, f"/admin/preview/{key}")
    return Response(body, media_type="text/html; charset=utf-8", headers={
        # The email is shown, never run: no scripts, no forms, framed only by this site.
        "Content-Security-Policy": "default-src 'none'; img-src * data: blob:; style-src 'unsafe-inline' *; "
        "font-src * data:; frame-ancestors 'self'; form-action 'none'",
        "Cache-Control": "no-store",
    })


@guarded.get("/preview/{key}/cid/{cid:path}")
def preview_cid(request: Request, key: str, cid: str):
    doc = _doc(request, key)
    if cid not in doc.images:
        raise HTTPException(404, f"no inline image {cid!r} in this digest")
    content_type, data = doc.images[cid]
    return Response(data, media_type=content_type, headers={"Cache-Control": "no-store"})


@guarded.get("/preview/{key}/assets/{name:path}")
def preview_asset(request: Request, key: str, name: str):
    """Thumbnails the digest refers to as ``assets/NAME`` (relative to the frame's URL)."""
    doc = _doc(request, key)
    found = doc.assets.get("assets/" + name)
    if found is None:
        raise HTTPException(404, f"no asset {name!r} in this digest")
    return Response(found[1], media_type=found[0], headers={"Cache-Control": "no-store"})


@guarded.get("/preview/{key}/state")
def preview_state(request: Request, key: str):
    """What the --watch script polls: a version that changes with the composed digest."""
    doc = _doc(request, key)
    return JSONResponse({"version": _version(doc), "error": doc.error})


@guarded.post("/preview/test-send")
def preview_test_send(request: Request, to: str = Form(""), campaign: str = Form(""), digest: str = Form(""),
                      csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    st = state(request)
    if digest:
        doc = _doc(request, f"{DIGEST_KEY}{library.find_digest(st, name=digest).digest.id}")
        campaign = ""
    else:
        doc = _doc(request, campaign or "sources")
    if doc.error:
        raise HTTPException(409, doc.error)
    address = library.test_send(st, doc, to, int(campaign) if campaign.isdigit() else None)
    flash(request, "ok", f"Test message sent to {address}.")
    query = urlencode({"digest": digest}) if digest else urlencode({"campaign": campaign}) if campaign else ""
    return redirect("/admin/preview" + (f"?{query}" if query else ""))




# --- subscribers, import, lists, segments, suppressions, settings: admin_subscribers.py and beside it ---


# --- campaigns: see admin_campaigns.py ---------------------------------------------------------


@guarded.post("/digests/{name}/{action}")
def digest_action(request: Request, name: str, action: str, csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    info = library.digest_action(state(request), name, action)
    flash(request, "ok", f"Recurring digest {info.digest.name} is now {'paused' if info.digest.paused else 'active'}.")
    return redirect("/admin/campaigns")


router.include_router(guarded)
for _people in (admin_subscribers, admin_import, admin_lists, admin_segments, admin_settings):
    router.include_router(_people.router)
