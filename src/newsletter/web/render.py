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


def page(request: Request, template: str, *, status: int = 200, admin: bool = False, **ctx) -> HTMLResponse:
    st = state(request)
    session = request.state.session
    shown = session.pop("flash", None)
    if shown:
        session["dirty"] = True
    html = st.templates.get_template(template).render(
        request=request,
        config=st.config,
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
