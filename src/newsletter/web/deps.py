"""FastAPI dependencies shared by the routers: the admin guard (local-only or logged in),
CSRF checks, the client address behind trusted proxies, and rate limiting."""

from __future__ import annotations

import ipaddress
from urllib.parse import quote, urlsplit
from typing import NoReturn

from fastapi import HTTPException, Request

from ..i18n import N_, Message
from .app import WebState, state
from .security import csrf_ok, is_loopback, token_matches

LOCAL_HOST_NAMES = {"localhost", "127.0.0.1", "[::1]", "::1"}


class LoginRequired(HTTPException):
    """Raised for admin pages when auth is configured and the visitor has not logged in."""


# Headers a reverse proxy adds (nginx, Apache, Caddy, Traefik, cloud load balancers). A browser on
# this machine never sends them, so with no auth configured a request carrying one is not local.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                      "x-forwarded-server", "x-real-ip", "via")


def peer_host(request: Request) -> str:
    """The TCP peer address (never a header)."""
    return request.client.host if request.client else ""


def came_through_proxy(request: Request) -> bool:
    return any(h in request.headers for h in FORWARDING_HEADERS)


def _ip(text: str):
    """An address from a peer or an X-Forwarded-For entry (``1.2.3.4``, ``1.2.3.4:80``, ``[::1]:80``,
    ``::ffff:1.2.3.4``), or None."""
    t = text.strip().strip('"')
    if t.startswith("["):
        t = t[1:].split("]", 1)[0]
    elif t.count(":") == 1:
        t = t.split(":", 1)[0]
    try:
        addr = ipaddress.ip_address(t.split("%", 1)[0])
    except ValueError:
        return None
    return addr.ipv4_mapped if addr.version == 6 and addr.ipv4_mapped else addr


def _trusted(addr, networks) -> bool:
    return addr is not None and any(addr in n for n in networks)


def client_host(request: Request) -> str:
    """The client's address, for rate limits: the TCP peer — unless the peer is one of the
    ``trusted_proxies``, then the right-most X-Forwarded-For entry that is not a trusted proxy
    (entries to its left were written by the client and prove nothing). Without trusted proxies
    X-Forwarded-For is ignored: anyone can send it."""
    peer = peer_host(request)
    networks = state(request).trusted_proxies
    if not networks or not _trusted(_ip(peer), networks):
        return peer
    chain = [e for value in request.headers.getlist("x-forwarded-for") for e in value.split(",") if e.strip()]
    for entry in reversed(chain):
        addr = _ip(entry)
        if addr is None:
            return peer  # the proxy wrote something that is not an address: keep the proxy's bucket
        if not _trusted(addr, networks):
            return str(addr)
    return str(_ip(chain[0])) if chain else peer  # every hop is a trusted proxy: the first one


def _host_is_local(request: Request) -> bool:
    host = request.headers.get("host", "")
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    return name.lower() in LOCAL_HOST_NAMES or is_loopback(name)


def bearer(request: Request) -> str | None:
    auth = request.headers.get("authorization", "")
    scheme, _, value = auth.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def admin_identity(request: Request) -> str | None:
    """How this request is allowed into the admin area ("local", "session", "token"), or None."""
    st: WebState = state(request)
    if not st.auth_configured:
        # No auth: only this machine, only under a local Host name (defeats DNS rebinding), and
        # not through a reverse proxy (behind nginx the peer and Host look local for everyone).
        if is_loopback(peer_host(request)) and _host_is_local(request) and not came_through_proxy(request):
            return "local"
        return None
    if token_matches(st.token_sha256, bearer(request)):
        return "token"
    if request.state.session.get("admin"):
        return "session"
    return None


def _refuse(request: Request, api: bool) -> NoReturn:
    st = state(request)
    if not st.auth_configured:
        if came_through_proxy(request):
            raise HTTPException(
                403,
                "the admin pages and API do not answer requests that came through a proxy while no auth is "
                "configured; set NEWSLETTER_ADMIN_PASSWORD or NEWSLETTER_ADMIN_TOKEN",
            )
        raise HTTPException(
            403,
            "the admin pages and API only answer requests from this machine; "
            "set NEWSLETTER_ADMIN_PASSWORD or NEWSLETTER_ADMIN_TOKEN to allow others",
        )
    if api:
        raise HTTPException(401, "authentication required: send Authorization: Bearer TOKEN or log in", headers={"WWW-Authenticate": "Bearer"})
    raise LoginRequired(303, "log in first", headers={"Location": "/admin/login?next=" + quote(str(request.url.path))})


def require_admin(request: Request) -> str:
    """Guard for the admin HTML pages."""
    who = admin_identity(request)
    if who is None:
        _refuse(request, api=False)
    return who


def require_api(request: Request) -> str:
    """Guard for /api: like the admin pages, plus a CSRF header on changes made with a session cookie
    (a cross-site page can send a cookie but not a custom header)."""
    who = admin_identity(request)
    if who is None:
        _refuse(request, api=True)
    if request.method not in ("GET", "HEAD", "OPTIONS") and who != "token":
        origin = request.headers.get("origin")
        header = request.headers.get("x-csrf-token")
        if header is not None or who == "session":
            if not csrf_ok(request.state.session, header):
                raise HTTPException(403, "missing or wrong X-CSRF-Token header")
        elif origin is not None and not _same_origin(request, origin):
            raise HTTPException(403, f"cross-site request from {origin} refused")
    return who


def _same_origin(request: Request, origin: str) -> bool:
    return origin.split("://", 1)[-1].lower() == request.headers.get("host", "").lower()


def check_csrf(request: Request, token: str | None) -> None:
    """Every form carries the session's CSRF token; a missing or wrong one is a 403 and changes nothing."""
    if not csrf_ok(request.state.session, token):
        raise HTTPException(403, STALE_FORM)


def origin_of(url: str | None) -> str | None:
    """``scheme://host[:port]`` of an http(s) URL, lower-cased, without a default port; None otherwise."""
    if not url:
        return None
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    scheme = parts.scheme.lower()
    host = parts.hostname.lower()
    if ":" in host:
        host = f"[{host}]"
    default = 443 if scheme == "https" else 80
    return f"{scheme}://{host}" + (f":{port}" if port is not None and port != default else "")


def request_origin(request: Request) -> str | None:
    """The origin of the page that sent this request: its ``Origin`` header, else its ``Referer``'s.
    ``Origin: null`` (sandboxed frames, privacy settings, file: pages) counts as unknown."""
    origin = request.headers.get("origin")
    if origin is not None:
        return None if origin.strip().lower() == "null" else origin_of(origin)
    return origin_of(request.headers.get("referer"))


def check_signup_form(request: Request, token: str | None) -> None:
    """The public signup form: the session's CSRF token, or — without our cookie (browsers that
    block cookies, in-app browsers, a form embedded on the publisher's own site) — an ``Origin``
    (else ``Referer``) that is one of the allowed sites (``base_url``, ``site_url``, ``signup_origins``).
    A cross-site page cannot forge either, so it cannot sign someone up; anything else is a 403."""
    if csrf_ok(request.state.session, token):
        return
    origin = request_origin(request)
    if origin is not None and origin in state(request).form_origins:
        return
    if origin is None and not token:
        raise HTTPException(403, N_("this form must be sent from its page; open the signup page and try again"))
    if origin is not None:
        raise HTTPException(403, N_("sign-ups are not accepted from forms on %(origin)s", origin=origin))
    raise HTTPException(403, STALE_FORM)


STALE_FORM = N_("the form's security token is missing or out of date; reload the page and try again")

# What a refusal by each limiter says, whole sentences so that each language can word them its own way
RATE_LIMITED = {
    "subscribe_ip": N_("too many sign-ups from your connection; try again in %(seconds)d seconds"),
    "subscribe_address": N_("too many sign-ups for this address; try again in %(seconds)d seconds"),
    "token_ip": N_("too many link checks from your connection; try again in %(seconds)d seconds"),
    # not for readers: English only (not marked for the catalogues)
    "login_ip": Message("too many login attempts; try again in %(seconds)d seconds"),
    "webhook_ip": Message("too many webhook requests from your address; try again in %(seconds)d seconds"),
}


def rate_limit(request: Request, limiter: str, key: str) -> None:
    """Count one request against ``limiter`` for ``key``; a 429 saying when to come back once over."""
    lim = state(request).limiters[limiter]
    if not lim.hit(key):
        wait = lim.retry_after(key)
        raise HTTPException(429, Message(RATE_LIMITED[limiter].msgid, {"seconds": wait}), headers={"Retry-After": str(wait)})


def csrf_token(request: Request) -> str:
    return request.state.session["csrf"]
