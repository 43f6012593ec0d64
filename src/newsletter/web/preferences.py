"""The reader's preference centre: ``/preferences/<token>``, a signed link in every email's footer.

A thin shell over store/preferences.py, which holds the rules and the log. The page works
without JavaScript: each change is a small form posting to the same URL with an ``action``.
A POST needs the link's token and the public forms' CSRF protection (the session's token, or
an Origin of an allowed site); GET and POST are rate limited like the other token pages. A bad,
revoked or erased reader's link is a 404 page.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Form, HTTPException, Request

from ..errors import InvalidInput, InvalidToken, NewsletterError, NotFound, StateError
from ..i18n import N_
from ..store import preferences as prefs
from .app import state
from .deps import check_signup_form, client_host, rate_limit
from .render import page

log = logging.getLogger("newsletter.web")

router = APIRouter(include_in_schema=False)

STATUS_TEXT = {"active": "Subscribed", "unconfirmed": "Waiting for your confirmation", "unsubscribed": "Left",
               "bounced": "Stopped: your mail server refused it", "complained": "Stopped: marked as spam", None: "Not subscribed"}
ACTIONS = ("name", "pause", "resume", "timezone", "tracking", "join", "leave", "leave_all")


def _secret(request: Request) -> bytes:
    from ..store.secret import secret_key

    return secret_key(state(request).config)


def _not_found() -> HTTPException:
    return HTTPException(404, N_("This preferences link is not valid: it may have been cut short, or replaced by a newer "
                                 "one. Use the link in the latest email you received."))


def _show(request: Request, token: str, *, status: int = 200, notice: str = "", error: str | Exception = ""):
    try:
        p = prefs.show(state(request).engine, _secret(request), token)
    except InvalidToken:
        raise _not_found() from None
    return page(request, "public/preferences.html", status=status, token=token, p=p, notice=notice, error=error,
                status_text=STATUS_TEXT, months=prefs.PAUSE_MONTHS, zones=prefs.time_zones())


@router.get("/preferences/{token}")
def preferences_page(request: Request, token: str):
    rate_limit(request, "token_ip", client_host(request))
    return _show(request, token)


def _list_id(value: str) -> int:
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput(N_("choose a list from the page"))
    return int(value)


@router.post("/preferences/{token}")
def preferences_change(
    request: Request,
    token: str,
    action: str = Form(""),
    csrf_token: str = Form(""),
    name: str = Form(""),
    months: str = Form(""),
    timezone: str = Form(""),
    no_tracking: str = Form(""),
    list_id: str = Form("", alias="list"),
):
    """One change from the page (``action``), applied and logged by the library; the page again with
    what happened (400 with the reason when the library refuses it; 404 for a bad link)."""
    st = state(request)
    rate_limit(request, "token_ip", client_host(request))
    check_signup_form(request, csrf_token)
    if action not in ACTIONS:
        raise HTTPException(400, N_("unknown change: reload the page and try again"))
    from ..engagement.classify import ip_class
    from ..i18n import format_day, gettext
    from .render import language

    lang = language(request)

    def _(message: str, **variables: str) -> str:
        return gettext(lang, message, **variables)

    engine, secret = st.engine, _secret(request)
    where = ip_class(client_host(request))
    try:
        if action == "name":
            prefs.set_name(engine, secret, token, name, ip_class=where)
            notice = _("Your name is saved.")
        elif action == "pause":
            until = prefs.pause(engine, secret, token, int(months) if months in ("1", "2", "3") else -1, ip_class=where)
            notice = _("Mail is paused until %(until)s.", until=format_day(until, lang)) if until else ""
        elif action == "resume":
            prefs.pause(engine, secret, token, 0, ip_class=where)
            notice = _("Mail is no longer paused.")
        elif action == "timezone":
            prefs.set_timezone(engine, secret, token, timezone, ip_class=where)
            notice = _("Your time zone is %(zone)s.", zone=timezone) if timezone else _("Your time zone is cleared.")
        elif action == "tracking":
            prefs.set_tracking(engine, secret, token, not no_tracking, ip_class=where)
            notice = _("Opens and clicks are no longer tracked.") if no_tracking else _("Opens and clicks may be tracked.")
        elif action == "join":
            joined = prefs.join(engine, secret, token, _list_id(list_id), ip_class=where)
            if joined.invitation is not None:
                _queue_confirmation(st, joined.invitation)
            notice = (_("Almost done: we sent you an email to confirm %(list)s.", list=joined.list_name)
                      if joined.status == "unconfirmed" else _("You are subscribed to %(list)s.", list=joined.list_name))
        elif action == "leave":
            left = prefs.leave(engine, secret, token, [_list_id(list_id)], ip_class=where)
            notice = _("You left %(lists)s.", lists=", ".join(left)) if left else _("Nothing changed.")
        else:
            left = prefs.leave_everything(engine, secret, token, ip_class=where)
            notice = _("You left every list.") + (f" ({', '.join(left)})" if left else "")
    except InvalidToken:
        raise _not_found() from None
    except (InvalidInput, StateError, NotFound) as e:
        return _show(request, token, status=400, error=e)
    return _show(request, token, notice=notice)


def _queue_confirmation(st, invitation) -> None:
    """The confirmation email of a double-opt-in list goes out on the app's mail queue (the
    answer does not wait for the mail server), through optin.mail_confirmation like every other."""
    from ..store.optin import mail_confirmation
    from .library import _confirmation_sender

    def job() -> None:
        try:
            mail_confirmation(st.engine, st.config, _confirmation_sender(st), invitation)
        except NewsletterError as e:  # the mail server refused it, or the confirm template is broken: one line
            log.error("confirmation email for list #%s not sent: %s", invitation.list_id, e)

    st.mailer.submit(job, f"confirmation for list #{invitation.list_id}")
