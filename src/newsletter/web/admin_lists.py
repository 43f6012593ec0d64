"""Admin pages for lists (create, edit) and the suppression list (view, add, remove after a
confirm step); a thin shell over store/lists.py and store/suppressions.py. A form that fails is
shown again with what was typed and the reason."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request

from ..errors import NewsletterError
from . import library
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import flash, page, redirect

router = APIRouter(include_in_schema=False, dependencies=[Depends(require_admin)])  # under admin.router's /admin


def _lists_page(request: Request, *, http_status: int = 200, error: str | None = None, form: dict | None = None):
    return page(request, "admin/lists.html", status=http_status, admin=True, active="lists", title="Lists",
                lists=library.all_lists(state(request)), statuses=library.STATUSES, form=form or {},
                flash=("error", error) if error else None)


@router.get("/lists")
def lists_page(request: Request):
    return _lists_page(request)


@router.post("/lists")
def list_create(request: Request, slug: str = Form(""), name: str = Form(""), description: str = Form(""),
                opt_in: str = Form("double"), csrf_token: str = Form("")):
    check_csrf(request, csrf_token)
    try:
        lst = library.create_list(state(request), slug.strip(), name.strip() or None, description.strip(), opt_in)
    except NewsletterError as e:
        return _lists_page(request, http_status=status_for(e), error=f"List not created: {e}",
                           form={"slug": slug, "name": name, "description": description, "opt_in": opt_in})
    flash(request, "ok", f"List {lst.slug} created; its signup page is /subscribe/{lst.slug}.")
    return redirect("/admin/lists")


def _edit_page(request: Request, slug: str, *, http_status: int = 200, error: str | None = None, form: dict | None = None):
    lst = next((x for x in library.all_lists(state(request)) if x.slug == slug), None)
    if lst is None:
        raise library.NotFound(f"there is no list {slug[:64]!r}")
    return page(request, "admin/list_edit.html", status=http_status, admin=True, active="lists", title=f"Edit {slug}",
                lst=lst, statuses=library.STATUSES, flash=("error", error) if error else None,
                form=form or {"name": lst.name, "description": lst.description, "opt_in": lst.opt_in,
                              "language": lst.language or "", "archive": lst.archive})


@router.get("/lists/{slug}")
def list_edit_form(request: Request, slug: str):
    return _edit_page(request, slug)


@router.post("/lists/{slug}")
def list_edit(request: Request, slug: str, name: str = Form(""), description: str = Form(""), opt_in: str = Form(""),
              language: str = Form(""), archive: str = Form(""), archive_shown: str = Form(""), csrf_token: str = Form("")):
    from ..store.lists import update_list

    check_csrf(request, csrf_token)
    try:
        update_list(state(request).engine, slug, name=name.strip() or None, description=description, opt_in=opt_in or None,
                    language=language.strip() or "default", archive=(archive == "on") if archive_shown else None)
    except NewsletterError as e:
        return _edit_page(request, slug, http_status=status_for(e), error=f"Not saved: {e}",
                          form={"name": name, "description": description, "opt_in": opt_in, "language": language,
                                "archive": archive == "on"})
    flash(request, "ok", f"List {slug} saved.")
    return redirect("/admin/lists")


# --- suppression list ---------------------------------------------------------------------------

SUPPRESSIONS_SHOWN = 1000  # newest first; `newsletter suppress list` shows them all


def _suppressions_page(request: Request, *, http_status: int = 200, error: str | None = None, form: dict | None = None):
    rows = library.suppressions(state(request))
    return page(request, "admin/suppressions.html", status=http_status, admin=True, active="suppressions",
                title="Suppression list", rows=rows[:SUPPRESSIONS_SHOWN], total=len(rows), shown=SUPPRESSIONS_SHOWN,
                form=form or {}, flash=("error", error) if error else None)


@router.get("/suppressions")
def suppressions_page(request: Request):
    return _suppressions_page(request)


@router.post("/suppressions")
def suppression_add(request: Request, value: str = Form(""), reason: str = Form(""), csrf_token: str = Form("")):
    from ..store.suppressions import suppress

    check_csrf(request, csrf_token)
    try:
        entry, created = suppress(state(request).engine, value, reason=reason.strip() or "added by hand in the admin")
    except NewsletterError as e:
        return _suppressions_page(request, http_status=status_for(e), error=f"Not added: {e}",
                                  form={"value": value, "reason": reason})
    flash(request, "ok", f"{entry.value} is suppressed." if created else f"{entry.value} was already suppressed.")
    return redirect("/admin/suppressions")


@router.get("/suppressions/remove")
def suppression_remove_form(request: Request, value: str = ""):
    entry = next((r for r in library.suppressions(state(request)) if r.value == value.strip().lower()), None)
    if entry is None:
        raise library.NotFound(f"{value.strip()[:320]!r} is not on the suppression list")
    return page(request, "admin/suppression_remove.html", admin=True, active="suppressions", title="Remove suppression",
                entry=entry)


@router.post("/suppressions/remove")
def suppression_remove(request: Request, value: str = Form(""), csrf_token: str = Form("")):
    from ..store.suppressions import unsuppress

    check_csrf(request, csrf_token)
    removed = unsuppress(state(request).engine, value)
    flash(request, "ok" if removed else "warn",
          f"{value} is no longer suppressed (their subscriptions keep their status)." if removed else f"{value} was not suppressed.")
    return redirect("/admin/suppressions")
