"""Rendering helpers shared by the routers: a page with the common context, flash messages
carried across a redirect in the signed session cookie."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse

from .app import state


def flash(request: Request, kind: str, message: str) -> None:
    """Show ``message`` on the next page this visitor sees (kind: ok, error, warn)."""
    request.state.session["flash"] = [kind, message]
    request.state.session["dirty"] = True


def language(request: Request, lst=None) -> str:
    """The language of a public page: the list's when the page is about one (``lst`` a list or a
    dict with its slug), else the browser's Accept-Language among the shipped ones, else config."""
    from ..i18n import choose

    st = state(request)
    list_language = None
    if isinstance(lst, dict):
        list_language = lst.get("language")
        if list_language is None and lst.get("slug"):
            from ..store.lists import common_language

            list_language = common_language(st.engine, [lst["slug"]])
    elif lst is not None:
        list_language = getattr(lst, "language", None)
    return choose(list_language, request.headers.get("accept-language"), st.config.language)


def page(request: Request, template: str, *, status: int = 200, admin: bool = False, **ctx) -> HTMLResponse:
    st = state(request)
    if "lang" not in ctx:
        ctx["lang"] = "en" if admin else language(request, ctx.get("lst"))
    session = request.state.session
    shown = session.pop("flash", None)
    if shown:
        session["dirty"] = True
    html = st.templates.get_template(template).render(
        request=request,
        config=ctx.pop("config", st.config),  # /privacy passes it too: one value, not a TypeError
        csrf_token=session["csrf"],
        admin=admin,
        logged_in=admin and bool(session.get("admin")),
        flash=ctx.pop("flash", None) or shown,
        **ctx,
    )
    return HTMLResponse(html, status_code=status)


def redirect(url: str) -> RedirectResponse:
    """After a successful POST: 303 See Other, so reloading does not resubmit."""
    return RedirectResponse(url, status_code=303)
