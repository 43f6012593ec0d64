"""Admin pages for people: the subscriber listing (search, filters, export, bulk actions), one
person's page (lists, consent evidence, history; edit, add to or remove from lists, unsubscribe
and erase, each behind a confirm step) and sending confirmation emails.

A thin shell over store/subscribers.py, profile.py, bulk.py, leaving.py, export.py and optin.py.
A form that fails is shown again with what was typed and the reason, inside the admin.
"""

from __future__ import annotations

import tempfile
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import StreamingResponse

from ..errors import NewsletterError
from . import library
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import flash, page, redirect

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])  # under admin.router's /admin

PER_PAGE = 50


def _filters(q: str, list_slug: str, status: str) -> dict[str, str]:
    return {k: v for k, v in {"q": q.strip()[:200], "list": list_slug, "status": status}.items() if v}


def _listing(request: Request, q: str, list_slug: str, status: str, page_no: int, *, http_status: int = 200,
             error: str | None = None, form: dict | None = None):
    st = state(request)
    page_no = max(1, page_no)
    result = library.search_subscribers(st, q=q, list_slug=list_slug, status=status, offset=(page_no - 1) * PER_PAGE, limit=PER_PAGE)
    qs = urlencode(_filters(q, list_slug, status))
    return page(
        request, "admin/subscribers.html", status=http_status, admin=True, active="subscribers", title="Subscribers",
        result=result, lists=library.all_lists(st), statuses=library.STATUSES, q=q, list_slug=list_slug, status_filter=status,
        page_no=page_no, pages=max(1, -(-result.total // PER_PAGE)), qs=qs, flash=("error", error) if error else None,
        form=form or {},
    )


@router.get("/subscribers")
def subscribers(request: Request, q: str = "", list: str = "", status: str = "", page: int = Query(1, ge=1, le=10**6)):
    if status and status not in library.STATUSES:
        status = ""
    try:
        return _listing(request, q.strip()[:200], list, status, page)
    except NewsletterError as e:  # an unknown list in the filter: the page, with the reason
        return _listing(request, q.strip()[:200], "", status, 1, http_status=status_for(e), error=str(e))


@router.post("/subscribers/add")
def subscriber_add(request: Request, email: str = Form(""), name: str = Form(""), list: str = Form(""),
                   resubscribe: str = Form(""), csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    try:
        result = library.admin_add_subscriber(state(request), email, name, list, bool(resubscribe))
    except NewsletterError as e:
        return _listing(request, "", "", "", 1, http_status=status_for(e), error=f"Not added: {e}",
                        form={"email": email, "name": name, "list": list, "resubscribe": bool(resubscribe)})
    flash(request, "ok", f"{result.email}: {result.outcome}" + (f" to {result.list_slug} ({result.status})" if result.list_slug else ""))
    return redirect("/admin/subscribers?" + urlencode({"q": result.email}))


@router.get("/subscribers/export")
def subscribers_export(request: Request, q: str = "", list: str = "", status: str = ""):
    """The people matching the current filters as CSV (export.py's format: safe in a
    spreadsheet, re-imports exactly), streamed from a temporary file."""
    from ..store.export import export_csv

    st = state(request)
    spool = tempfile.SpooledTemporaryFile(max_size=8 << 20, mode="w+", encoding="utf-8", newline="")
    try:
        export_csv(st.engine, spool, list_slug=list or None, status=status or None, search=q.strip()[:200] or None)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)

    def chunks():
        with spool:
            while block := spool.read(1 << 16):
                yield block.encode("utf-8")

    name = "subscribers" + (f"-{list}" if list else "") + (f"-{status}" if status else "") + ".csv"
    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": f'attachment; filename="{name}"', "Cache-Control": "no-store"})


# --- one person ---------------------------------------------------------------------------------


def _person(request: Request, email: str, *, http_status: int = 200, error: str | None = None, edit: dict | None = None):
    from ..feedback.record import list_bounces
    from ..store.profile import format_attributes, profile

    st = state(request)
    p = profile(st.engine, email)
    events = list_bounces(st.engine, email=p.email, limit=100)
    on = set(p.lists)
    return page(request, "admin/subscriber.html", status=http_status, admin=True, active="subscribers", title=p.email,
                p=p, row=p, events=events, flash=("error", error) if error else None,
                edit=edit or {"name": p.name, "attributes": format_attributes(p.attributes)},
                other_lists=[lst for lst in library.all_lists(st) if lst.slug not in on], all_lists=library.all_lists(st))


@router.get("/subscribers/person")
def subscriber_page(request: Request, email: str = ""):
    return _person(request, email)


def _back_to(email: str) -> str:
    return "/admin/subscribers/person?" + urlencode({"email": email})


@router.post("/subscribers/person/edit")
def subscriber_edit(request: Request, email: str = Form(""), name: str = Form(""), attributes: str = Form(""),
                    csrf_token: str = Form("")):
    from ..store.profile import edit_subscriber, parse_attributes

    check_csrf(request, csrf_token)
    try:
        changed = edit_subscriber(state(request).engine, email, name=name, attributes=parse_attributes(attributes))
    except NewsletterError as e:
        return _person(request, email, http_status=status_for(e), error=f"Not saved: {e}",
                       edit={"name": name, "attributes": attributes})
    flash(request, "ok", "Saved." if changed else "Nothing to save: the name and attributes were already these.")
    return redirect(_back_to(email))


@router.post("/subscribers/person/lists")
def subscriber_lists(request: Request, email: str = Form(""), action: str = Form(""), list: str = Form(""),
                     resubscribe: str = Form(""), csrf_token: str = Form("")):
    """Add this person to a list (the consent rule applies: someone who left comes back only with
    fresh consent), or remove them from one as if never added."""
    from ..store.bulk import Selection, run_bulk

    check_csrf(request, csrf_token)
    st = state(request)
    try:
        if action == "add":
            r = library.admin_add_subscriber(st, email, "", list, bool(resubscribe))
            message = f"{r.email} is on {r.list_slug} ({r.status})." if r.outcome != "already" else f"{r.email} was already on {r.list_slug}."
        elif action == "remove":
            row = library.get_subscriber(st, email)
            res = run_bulk(st.engine, "remove", Selection(ids=[row.id]), list_slug=list)
            message = (f"{row.email} was removed from {list}." if res.changed else
                       f"{row.email} is not active or awaiting confirmation on {list}: nothing removed "
                       "(someone who left stays recorded as having left).")
        else:
            raise library.InvalidInput(f"unknown action {action[:20]!r} (add or remove)")
    except NewsletterError as e:
        return _person(request, email, http_status=status_for(e), error=f"Lists not changed: {e}")
    flash(request, "ok", message)
    return redirect(_back_to(email))


@router.get("/subscribers/unsubscribe")
def subscriber_unsubscribe_form(request: Request, email: str = "", list: str = ""):
    """The confirm step before unsubscribing someone (from one list, or every list)."""
    row = library.get_subscriber(state(request), email)
    return page(request, "admin/unsubscribe.html", admin=True, active="subscribers", title="Unsubscribe",
                row=row, list_slug=list)


@router.post("/subscribers/unsubscribe")
def subscriber_unsubscribe(request: Request, email: str = Form(""), list: str = Form(""), csrf_token: str = Form(""),
                           back: str = Form("")):
    check_csrf(request, csrf_token)
    changed = library.admin_unsubscribe(state(request), email, list or None)
    flash(request, "ok", f"{email} unsubscribed from {', '.join(changed)}." if changed else f"{email} was not subscribed to anything to leave.")
    return redirect(_back_to(email) if back == "person" else "/admin/subscribers?" + urlencode({"q": email}))


@router.get("/subscribers/erase")
def subscriber_erase_form(request: Request, email: str = ""):
    row = library.get_subscriber(state(request), email)
    return page(request, "admin/erase.html", admin=True, active="subscribers", title="Erase", row=row)


@router.post("/subscribers/erase")
def subscriber_erase(request: Request, email: str = Form(""), suppress: str = Form(""), csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    row = library.admin_erase(state(request), email, bool(suppress))
    flash(request, "ok", f"{row.email} and their subscriptions were erased.")
    return redirect("/admin/subscribers")


# --- bulk actions --------------------------------------------------------------------------------

BULK_LABELS = {"add": "Add to list", "remove": "Remove from list", "unsubscribe": "Unsubscribe",
               "confirm": "Send confirmation emails"}


@router.post("/subscribers/bulk")
async def subscribers_bulk(request: Request):
    """A bulk action on the ticked people or on everyone matching the filter: first a page that
    says what will happen to how many people, then (``confirm``) the action and its counts."""
    from starlette.concurrency import run_in_threadpool

    form = await request.form()
    check_csrf(request, str(form.get("csrf_token", "")))
    action = str(form.get("action", ""))
    scope = str(form.get("scope", "selected"))
    q, list_slug, status = (str(form.get(k, "")) for k in ("q", "list", "status"))
    target = str(form.get("target", ""))
    raw_ids = [str(v) for v in form.getlist("id")]
    return await run_in_threadpool(_bulk, request, action, scope, q, list_slug, status, target, raw_ids,
                                   bool(form.get("confirm")))


def _bulk(request: Request, action: str, scope: str, q: str, list_slug: str, status: str, target: str,
          raw_ids: list[str], confirmed: bool):
    from ..store.bulk import Selection, run_bulk, send_confirmations_to

    st = state(request)
    try:
        if action not in BULK_LABELS:
            raise library.InvalidInput("choose what to do with the selected people")
        if scope == "filter":
            sel = Selection(None, list_slug or None, status or None, q.strip()[:200] or None)
            count = library.search_subscribers(st, q=q, list_slug=list_slug, status=status, limit=1).total
        else:
            ids = [int(i) for i in raw_ids if i.isdigit() and len(i) < 19]
            if not ids:
                raise library.InvalidInput("tick at least one person, or choose 'everyone matching the filter'")
            sel, count = Selection(ids=ids), len(ids)
        if action in ("add", "remove") and not target:
            raise library.InvalidInput(f"choose the list to {'add them to' if action == 'add' else 'remove them from'}")
        if not confirmed:
            return page(request, "admin/bulk_confirm.html", admin=True, active="subscribers", title="Confirm",
                        action=action, label=BULK_LABELS[action], scope=scope, count=count, ids=sel.ids or [],
                        q=q, list_slug=list_slug, status_filter=status, target=target)
        if action == "confirm":
            result = send_confirmations_to(st.engine, st.config, sel, _confirmation_sender(st), list_slug=target or None)
        else:
            result = run_bulk(st.engine, action, sel, list_slug=target or None, source="admin")
    except NewsletterError as e:
        return _listing(request, q, list_slug if list_slug in {x.slug for x in library.all_lists(st)} else "", status, 1,
                        http_status=status_for(e), error=f"Nothing changed: {e}")
    flash(request, "warn" if result.failed else "ok", _bulk_summary(result, target))
    return redirect("/admin/subscribers" + (("?" + urlencode(_filters(q, list_slug, status))) if _filters(q, list_slug, status) else ""))


def _bulk_summary(r, target: str) -> str:
    what = {"add": f"added to {target}", "remove": f"removed from {target}",
            "unsubscribe": "unsubscribed" + (f" from {target}" if target else ""), "confirm": "sent a confirmation email"}[r.action]
    parts = [f"{r.changed} of {r.selected} {what}"]
    if r.unchanged:
        parts.append(f"{r.unchanged} unchanged" + (" (already mailed)" if r.action == "confirm" else ""))
    if r.skipped_left:
        parts.append(f"{r.skipped_left} skipped: they left that list (only fresh consent brings them back)")
    if r.skipped_suppressed:
        parts.append(f"{r.skipped_suppressed} skipped: suppressed")
    if r.failed:
        parts.append(f"{r.failed} failed ({'; '.join(f'{a}: {why}' for a, why in r.failures[:3])})")
    return "; ".join(parts) + "."


# --- confirmation emails ------------------------------------------------------------------------


def _confirmation_sender(st):
    """Confirmation emails as `subscribers send-confirmations` sends them, after the same check:
    over SMTP the links must point at a public base_url (dispatch.preflight)."""
    from ..dispatch.oneoff import send_one
    from ..dispatch.preflight import check_public_links, make_transports

    check_public_links(st.config, make_transports(st.config), links="confirmation links")
    return lambda to, subject, html, text: send_one(st.config, to, subject, html, text, headers={"Auto-Submitted": "auto-generated"})


@router.post("/subscribers/send-confirmations")
def send_confirmations(request: Request, list: str = Form(""), csrf_token: str = Form("")):
    """Mail the confirmation link to everyone unconfirmed on a double-opt-in list never mailed it
    (after an import): store.optin.send_confirmations, as the CLI command."""
    from ..store.optin import send_confirmations as store_send

    check_csrf(request, csrf_token)
    st = state(request)
    try:
        run = store_send(st.engine, st.config, list, _confirmation_sender(st))
    except NewsletterError as e:
        flash(request, "error", f"No confirmation email sent: {e}")
        return redirect("/admin/subscribers?" + urlencode({"list": list, "status": "unconfirmed"}))
    message = (f"Confirmation emails for {list}: {run.sent} sent, {run.failed} failed, "
               f"{run.skipped_mailed} already mailed, {run.skipped_suppressed} suppressed.")
    if run.failures:
        message += " " + "; ".join(f"{a}: {why}" for a, why in run.failures[:3])
    flash(request, "warn" if run.failed else "ok", message)
    return redirect("/admin/subscribers?" + urlencode({"list": list, "status": "unconfirmed"}))
