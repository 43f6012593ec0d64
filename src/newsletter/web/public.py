"""Public pages: subscribe, confirm, unsubscribe (incl. RFC 8058 one-click), the archive, and
(included from web/preferences.py) each reader's preference centre.

No page reveals whether an address is known, not even by its timing: a signup only queues its
work (store/signup.py holds the rule; web/mailer.py the queue); confirmation and unsubscription happen only on
POST (mail scanners prefetch GET links); every error is a short page with the right status.
Confirm and unsubscribe rest on their signed token alone (the token is the capability: no
cookie, no CSRF token), so they work in browsers that block cookies; the signup form takes the
session's CSRF token or, without a cookie, an Origin/Referer of an allowed site.
"""

from __future__ import annotations

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.background import BackgroundTask

from . import library, preferences
from ..errors import InvalidToken
from ..i18n import N_
from .app import state
from .deps import check_signup_form, client_host, rate_limit
from .render import language, page

router = APIRouter(include_in_schema=False)
router.include_router(preferences.router)

MAX_NAME = 200


@router.get("/")
def home():
    return RedirectResponse("/archive/", status_code=307)


@router.get("/healthz")
def healthz():
    return {"ok": True}


# --- subscribe -------------------------------------------------------------------------------


@router.get("/subscribe/{slug}")
def subscribe_form(request: Request, slug: str):
    lst = library.public_list(state(request), slug)
    return page(request, "public/subscribe.html", lst=lst)


@router.post("/subscribe/{slug}")
def subscribe(
    request: Request,
    slug: str,
    email: str = Form(""),
    name: str = Form(""),
    website: str = Form(""),
    csrf_token: str = Form(""),
    timezone: str = Form(""),
):
    st = state(request)
    lst = library.public_list(st, slug)
    request.state.lang = language(request, lst)  # refusals below speak the list's language too
    check_signup_form(request, csrf_token)
    rate_limit(request, "subscribe_ip", client_host(request))
    email, name = email.strip(), " ".join(name.split())[:MAX_NAME]
    if website:  # the hidden honeypot field: a bot filled it; answer as usual, store nothing
        return page(request, "public/subscribed.html", lst=lst, email=email, double=lst.opt_in == "double")
    try:
        address = library.normalize_address(email)
    except library.InvalidInput as e:
        return page(request, "public/subscribe.html", status=400, lst=lst, email=email, name=name, error=e, field="email")
    try:
        library.check_name(name)
        zone = library.check_signup_timezone(timezone)  # the browser's zone (signup.js); empty without JavaScript
    except library.InvalidInput as e:
        return page(request, "public/subscribe.html", status=400, lst=lst, email=email, name=name, error=e, field="name")
    rate_limit(request, "subscribe_address", address.lower())
    answer = page(request, "public/subscribed.html", lst=lst, email=address, double=lst.opt_in == "double")
    # Queued once the answer has gone out, so even the queue's work cannot slow the answer down.
    answer.background = BackgroundTask(library.subscribe, st, lst, address, name, zone)
    return answer


# --- confirm -----------------------------------------------------------------------------------


@router.get("/confirm/{token}")
def confirm_page(request: Request, token: str):
    st = state(request)
    rate_limit(request, "token_ip", client_host(request))
    info = _friendly(library.peek_confirm, st, token, what="confirmation")
    return page(request, "public/confirm.html", token=token, lst=_named(info.list_slug, info.list_name),
                email=info.email, done=False)


@router.post("/confirm/{token}")
def confirm(request: Request, token: str):
    """The page's button. No cookie or CSRF token: only the person holding the emailed link can
    send it, and a forged or foreign token is refused by its signature."""
    st = state(request)
    rate_limit(request, "token_ip", client_host(request))
    from ..engagement.classify import ip_class

    info = _friendly(library.confirm, st, token, ip_class(client_host(request)), what="confirmation")
    return page(request, "public/confirm.html", token=token, lst=_named(info.list_slug, info.list_name),
                email=info.email, done=True)


# --- unsubscribe -------------------------------------------------------------------------------


@router.get("/unsubscribe/{token}")
def unsubscribe_page(request: Request, token: str):
    st = state(request)
    info, others = _friendly(library.peek_unsubscribe, st, token, what="unsubscribe")  # not rate limited
    return page(request, "public/unsubscribe.html", token=token, lst=_named(info.list_slug, info.list_name, info.list_id),
                email=info.email, others=others, done=None)


@router.post("/unsubscribe/{token}")
async def unsubscribe(request: Request, token: str):
    """Either the RFC 8058 one-click POST (body ``List-Unsubscribe=One-Click``, sent by the mail
    provider without cookies: 200 and no redirect), or the page's form (may choose several of the
    person's lists). Both rest on the signed token alone — no cookie, no CSRF token — so leaving
    works in browsers that block cookies. Never rate limited: one-click requests come in bulk from
    a few mail-provider addresses, and leaving must always work."""
    st = state(request)
    form = await request.form()
    if form.get("List-Unsubscribe") == "One-Click":
        info = _friendly(library.unsubscribe_one_click, st, token, what="unsubscribe")
        return page(request, "public/unsubscribe.html", token=token, lst=_named(info.list_slug, info.list_name),
                    email=info.email, done=[info.list_name], others=[])
    chosen = [str(v) for v in form.getlist("list")]
    info, left = _friendly(library.unsubscribe_chosen, st, token, chosen, what="unsubscribe")
    return page(request, "public/unsubscribe.html", token=token, lst=_named(info.list_slug, info.list_name),
                email=info.email, done=left, others=[])


_TOKEN_REASONS = {
    ("confirmation", True): N_("This confirmation link has expired. Sign up again to get a fresh one."),
    ("unsubscribe", True): N_("This unsubscribe link has expired. Sign up again to get a fresh one."),
    ("confirmation", False): N_("This confirmation link is not valid: it may have been cut short or mistyped. "
                                "Copy the whole link from the email and try again."),
    ("unsubscribe", False): N_("This unsubscribe link is not valid: it may have been cut short or mistyped. "
                               "Copy the whole link from the email and try again."),
}


def _friendly(fn, *args, what: str):
    """Run a token call; a bad token becomes a 400 page a reader understands (the precise reason
    is technical and stays in the library's message)."""
    try:
        return fn(*args)
    except InvalidToken as e:
        raise HTTPException(400, _TOKEN_REASONS[what, getattr(e, "reason", "") == "expired"]) from None


def _named(slug: str, name: str, id: int | None = None):
    return {"slug": slug, "name": name, "id": id}


# --- archive -----------------------------------------------------------------------------------


@router.get("/archive/")
def archive(request: Request, page_no: str = Query("1", alias="page", max_length=12)):
    """The index of published issues, newest first, with a subscribe form for the public lists."""
    st = state(request)
    n = int(page_no) if page_no.isdigit() else 0
    if n < 1:
        raise HTTPException(404, N_("there is no page %(page)s in the archive", page=page_no[:12]))
    issues, pages = library.archive_page(st, n)
    if n > pages:
        raise HTTPException(404, N_("there is no page %(page)s in the archive", page=page_no[:12]))
    return page(request, "public/archive.html", issues=issues, page_no=n, pages=pages, join=library.archive_lists(st))


@router.get("/archive")
def archive_slash():
    return RedirectResponse("/archive/", status_code=308)


def _issue_id(campaign_id: str) -> int:
    """A published issue's id from the URL; anything else is the one 404 a missing issue gets."""
    if not campaign_id.isdigit() or len(campaign_id) > 18:
        raise HTTPException(404, N_("there is no issue %(issue)s in the archive", issue=campaign_id[:24]))
    return int(campaign_id)


@router.get("/archive/{campaign_id}/cid/{cid:path}")
def archive_image(request: Request, campaign_id: str, cid: str):
    content_type, data = library.archive_image(state(request), _issue_id(campaign_id), cid)
    return Response(data, media_type=content_type, headers={"Cache-Control": "public, max-age=86400"})


_ISSUE_CSP = "default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src * data:; frame-ancestors 'none'"
# The issue's own HTML inside its archive page: framed by this site only, and sandboxed (no scripts,
# no forms; links may open the whole window) whether it is framed or opened directly.
_FRAMED_CSP = ("default-src 'none'; img-src * data:; style-src 'unsafe-inline' *; font-src * data:; frame-ancestors 'self'; "
               "sandbox allow-same-origin allow-popups allow-popups-to-escape-sandbox allow-top-navigation-by-user-activation")


@router.get("/archive/{campaign_id}")
def archive_issue(request: Request, campaign_id: str):
    """A published issue: its subject and day, the issue itself in a sandboxed frame (its HTML is
    the email's, styled for mail clients), and the subscribe form of its public lists. An
    unpublished or missing campaign is the same 404 (readers of an unpublished one have /view/TOKEN)."""
    st = state(request)
    issue = library.archive_issue(st, _issue_id(campaign_id))
    return page(request, "public/archive_issue.html", issue=issue, join=library.archive_lists(st, issue["id"]))


@router.get("/archive/{campaign_id}/issue")
def archive_issue_html(request: Request, campaign_id: str):
    cid = _issue_id(campaign_id)
    st = state(request)
    html = library.archive_html(st, cid, f"{st.config.base_url.rstrip('/')}/archive/{cid}")
    return HTMLResponse(html, headers={"Content-Security-Policy": _FRAMED_CSP, "X-Frame-Options": "SAMEORIGIN"})


# --- a reader's own web version ------------------------------------------------------------------


@router.get("/view/{token}")
def reader_view(request: Request, token: str):
    """The "view in browser" link of one email: that reader's copy, their merge tags filled, no
    tracking, the archive's strict CSP. Any bad token, or a reader who was erased, is a 404."""
    from ..dispatch.webview import reader_copy

    st = state(request)  # not rate limited, like the archive: readers behind one address open their copies
    copy = reader_copy(st.engine, st.config, token, page_url=str(request.url))
    return HTMLResponse(copy.html, headers={"Content-Security-Policy": _ISSUE_CSP, "Cache-Control": "private, no-store",
                                            "Referrer-Policy": "no-referrer", "X-Robots-Tag": "noindex"})


@router.get("/view/{token}/cid/{cid:path}")
def reader_view_image(request: Request, token: str, cid: str):
    from ..dispatch.webview import reader_image

    st = state(request)
    content_type, data = reader_image(st.engine, st.config, token, cid)
    return Response(data, media_type=content_type, headers={"Cache-Control": "private, max-age=86400"})
