"""Admin pages for recurring digests: create one, edit it, and run an occurrence now (pause,
resume and the next occurrence's preview are on the campaigns page and the preview page).

A thin shell over ``schedule.digests`` and ``schedule.occurrences``; a form that cannot be saved
comes back with the values entered and the reason in the page's words.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request

from ..errors import NewsletterError
from . import campaign_calls as calls
from .app import state, status_for
from .deps import check_csrf, require_admin
from .render import flash, page, redirect

router = APIRouter(prefix="/admin", include_in_schema=False, dependencies=[Depends(require_admin)])


def _spec(st, name: str, schedule: str, timezone: str, sources: list[str], lists: list[str], subject: str,
          max_articles: str, min_articles: str, *, category: str = "", tags: str = "", catch_up: str = "latest",
          base=None):
    """The submitted form as a DigestSpec (fields the form does not show, e.g. the template folder,
    keep ``base``'s values); ``tags`` comma-separated."""
    from dataclasses import replace

    from ..schedule.digests import DigestSpec

    def number(value: str, default: int | None) -> int | None:
        try:
            return int(value.strip()) if value.strip() else default
        except ValueError:
            return -1  # refused by the checks, with the field's name

    spec = base or DigestSpec(name="", schedule="")
    # Only sources the publisher configured (or the digest already had): the form cannot name other files.
    allowed = {*st.config.sources, *spec.sources}
    return replace(spec, name=name.strip()[:100], schedule=" ".join(schedule.split())[:200],
                   timezone=timezone.strip()[:64] or st.config.timezone, sources=[s for s in sources if s in allowed][:50],
                   lists=[x for x in lists if x][:100], subject=subject.strip()[:500],
                   max_articles=number(max_articles, None), min_articles=number(min_articles, 1) or 0,
                   category=category.strip()[:200] or None,
                   tags=[t.strip()[:100] for t in tags.split(",") if t.strip()][:50], catch_up=catch_up.strip()[:20])


def _form(request: Request, spec, *, editing: bool, error: str | None = None, status: int = 200):
    st = state(request)
    sources = list(dict.fromkeys([*st.config.sources, *spec.sources]))
    return page(request, "admin/digest_form.html", status=status, admin=True, active="campaigns",
                title=f"Edit recurring digest {spec.name}" if editing else "New recurring digest", spec=spec,
                editing=editing, sources=sources, lists=calls.all_lists(st), workers=calls.worker_summary(st),
                rich=calls.rich, flash=("error", error) if error else None)


@router.get("/digests/new")
def new_digest(request: Request):
    from ..schedule.digests import DigestSpec

    st = state(request)
    lists = calls.all_lists(st)
    spec = DigestSpec(name="", schedule="weekly mon 08:00", timezone=st.config.timezone, sources=list(st.config.sources),
                      lists=[lists[0].slug] if len(lists) == 1 else [])
    return _form(request, spec, editing=False)


@router.post("/digests/new")
def create_digest(request: Request, name: str = Form(""), schedule: str = Form(""), timezone: str = Form(""),
                  sources: list[str] = Form([]), lists: list[str] = Form([]), subject: str = Form(""),
                  max_articles: str = Form(""), min_articles: str = Form(""), category: str = Form(""),
                  tags: str = Form(""), catch_up: str = Form("latest"), csrf_token: str = Form("")):
    from ..schedule.digests import add_digest

    check_csrf(request, csrf_token)
    st = state(request)
    spec = _spec(st, name, schedule, timezone, sources, lists, subject, max_articles, min_articles,
                 category=category, tags=tags, catch_up=catch_up)
    try:
        info = add_digest(st.engine, st.config, spec)
    except NewsletterError as e:
        return _form(request, spec, editing=False, error=calls.publisher_words(str(e)), status=status_for(e))
    flash(request, "ok", f"Recurring digest {info.digest.name} created; next occurrence "
                         f"{calls.local_time(st, info.next_run) if info.next_run else 'none'}.")
    return redirect("/admin/campaigns#digests")


@router.get("/digests/{name}/edit")
def edit_digest(request: Request, name: str):
    from ..schedule.digests import show_digest, spec_of

    info = show_digest(state(request).engine, name)
    return _form(request, spec_of(info.digest, info.list_slugs), editing=True)


@router.post("/digests/{name}/edit")
def save_digest(request: Request, name: str, schedule: str = Form(""), timezone: str = Form(""),
                sources: list[str] = Form([]), lists: list[str] = Form([]), subject: str = Form(""),
                max_articles: str = Form(""), min_articles: str = Form(""), category: str = Form(""),
                tags: str = Form(""), catch_up: str = Form("latest"), csrf_token: str = Form("")):
    from ..schedule.digests import show_digest, spec_of, update_digest

    check_csrf(request, csrf_token)
    st = state(request)
    info = show_digest(st.engine, name)
    spec = _spec(st, name, schedule, timezone, sources, lists, subject, max_articles, min_articles,
                 category=category, tags=tags, catch_up=catch_up, base=spec_of(info.digest, info.list_slugs))
    try:
        update_digest(st.engine, st.config, spec)
    except NewsletterError as e:
        return _form(request, spec, editing=True, error=calls.publisher_words(str(e)), status=status_for(e))
    flash(request, "ok", f"Recurring digest {name} saved.")
    return redirect("/admin/campaigns#digests")


@router.post("/digests/{name}/run")
def run_digest(request: Request, name: str, csrf_token: str = Form("")):
    """One occurrence now, outside the schedule: its campaign is scheduled for now and a worker sends it."""
    from ..schedule.occurrences import run_digest_now

    check_csrf(request, csrf_token)
    st = state(request)
    result = run_digest_now(st.engine, st.config, name)
    if result.status == "created" and result.campaign_id is not None:
        worker = calls.worker_summary(st)
        tail = "a worker sends it now." if worker["running"] else "no worker is running: start one with newsletter worker to send it."
        flash(request, "ok" if worker["running"] else "warn",
              f"Recurring digest {name}: campaign {result.campaign_id} created with {result.article_count} "
              f"article{'s' if result.article_count != 1 else ''}; {tail}")
        return redirect(f"/admin/campaigns/{result.campaign_id}")
    flash(request, "warn", f"Recurring digest {name}: nothing created ({result.status}: {calls.publisher_words(result.reason)}).")
    return redirect("/admin/campaigns#digests")
