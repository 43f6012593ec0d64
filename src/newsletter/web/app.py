"""The app factory: builds the FastAPI app that serves the admin pages, the JSON API and the
public pages (subscribe, confirm, unsubscribe, archive).

The app is a thin shell: every route calls a library function and formats what it returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from jinja2 import select_autoescape
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..config import Config
from ..i18n import N_, Message
from ..errors import (
    ConfigError,
    DispatchError,
    InvalidInput,
    InvalidToken,
    NewsletterError,
    NotFound,
    ScheduleError,
    SelectionError,
    StateError,
    StoreError,
)
from .mailer import Mailer
from .security import SESSION_COOKIE, PasswordHash, RateLimiter, Sessions

log = logging.getLogger("newsletter.web")

HERE = Path(__file__).parent
MAX_BODY = 256 * 1024  # forms and JSON
MAX_UPLOAD = 20 * 1024 * 1024  # CSV import
UPLOAD_PATHS = ("/admin/subscribers/import", "/api/subscribers/import")
MAX_WEBHOOK = 4 * 1024 * 1024  # provider webhooks (SendGrid posts batches of up to ~1 MB; SES/Postmark may include content)
WEBHOOK_PATHS = ("/webhooks/",)
# The app's own pages: scripts only from /static (no inline script), frames only from this site.
# Email frames and archive pages set a stricter policy of their own.
PAGE_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; "
            "frame-ancestors 'none'; form-action 'self'; base-uri 'none'; object-src 'none'")


@dataclass
class Limits:
    """Rate limits (hits per window seconds); tests shrink them."""

    subscribe_per_ip: tuple[int, float] = (20, 600.0)
    subscribe_per_address: tuple[int, float] = (3, 3600.0)
    login_per_ip: tuple[int, float] = (10, 600.0)
    token_per_ip: tuple[int, float] = (60, 600.0)
    webhook_per_ip: tuple[int, float] = (600, 60.0)  # provider webhooks (SendGrid, SES... post often)


@dataclass
class WebState:
    """What the routes share: config, engine (created on first use), auth material, limiters."""

    config: Config
    engine_: Any
    sessions: Sessions
    password: PasswordHash | None
    token_sha256: bytes | None
    limiters: dict[str, RateLimiter]
    templates: Jinja2Templates
    watch: list[Path] = field(default_factory=list)
    secure_cookies: bool = False
    preview_cache: dict = field(default_factory=dict)
    form_origins: frozenset[str] = frozenset()  # sites whose pages may post the signup form without our cookie
    trusted_proxies: tuple = ()  # ip_network objects: peers whose X-Forwarded-For is believed
    mailer: Mailer = field(default_factory=Mailer)  # confirmation emails, sent after the answer

    @property
    def auth_configured(self) -> bool:
        return self.password is not None or self.token_sha256 is not None

    @property
    def engine(self):
        if self.engine_ is None:
            from ..store.db import get_engine, require_current_schema

            engine = get_engine(self.config.database_url)
            require_current_schema(engine)
            self.engine_ = engine
        return self.engine_


def state(request: Request) -> WebState:
    return request.app.state.web


_STATUS = [
    (InvalidToken, 400),
    (InvalidInput, 400),
    (NotFound, 404),
    (StateError, 409),
    (ScheduleError, 400),
    (SelectionError, 400),
    (DispatchError, 502),
    (StoreError, 503),
    (ConfigError, 503),
]


def status_for(exc: NewsletterError) -> int:
    for cls, code in _STATUS:
        if isinstance(exc, cls):
            return code
    return 500


_TITLES = {
    400: "That did not work",
    401: "Please log in",
    403: "Not allowed",
    404: "Not found",
    405: "Method not allowed",
    409: "Not possible right now",
    413: "Too large",
    422: "That did not work",
    429: "Too many requests",
    500: "Something went wrong",
    502: "Sending failed",
    503: "Service unavailable",
}


# Starlette's own reasons (an unknown path, a wrong method), in words a reader's catalogue has
_STARLETTE_DETAILS = {"Not Found": N_("there is no page at this address"),
                      "Method Not Allowed": N_("this address does not take that kind of request")}


def _detail(exc: StarletteHTTPException):
    """An HTTPException's reason: the Message a router gave (translatable), else its text."""
    if isinstance(exc.detail, Message):
        return exc.detail
    return _STARLETTE_DETAILS.get(str(exc.detail), str(exc.detail))


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "application/json" in request.headers.get("accept", "").split(",")[0]


def error_response(request: Request, status: int, message: str, headers: dict | None = None) -> Response:
    """One error shape: JSON ``{"error": ..., "status": ...}`` for the API, a small page otherwise."""
    if wants_json(request):
        return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)
    st: WebState = request.app.state.web
    from ..i18n import choose

    lang = "en" if request.url.path.startswith("/admin") else (
        getattr(request.state, "lang", None) or choose(None, request.headers.get("accept-language"), st.config.language))
    if request.url.path.startswith("/admin"):
        from .campaign_calls import publisher_words

        message = publisher_words(message)
    html = st.templates.get_template("error.html").render(
        request=request, title=_TITLES.get(status, "Error"), message=message, status=status,
        config=st.config, csrf_token="", admin=_inside_admin(request), lang=lang,
    )
    return HTMLResponse(html, status_code=status, headers=headers)


def _inside_admin(request: Request) -> bool:
    """An error on an admin page, for someone allowed in: shown with the admin's navigation."""
    if not request.url.path.startswith("/admin") or not hasattr(request.state, "session"):
        return False
    from .deps import admin_identity

    return admin_identity(request) is not None


class BodyLimit:
    """ASGI middleware answering 413 to bodies over the limit, by Content-Length or while streaming."""

    def __init__(self, app, max_body: int = MAX_BODY, max_upload: int = MAX_UPLOAD):
        self.app = app
        self.max_body = max_body
        self.max_upload = max_upload

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = self.max_upload if scope["path"].startswith(UPLOAD_PATHS) else self.max_body
        if scope["path"].startswith(WEBHOOK_PATHS):
            limit = MAX_WEBHOOK
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    too_big = int(value) > limit
                except ValueError:
                    too_big = True
                if too_big:
                    return await self._reject(scope, receive, send, limit)
        seen = 0
        started = False

        async def limited_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._reject(scope, receive, send, limit)

    async def _reject(self, scope, receive, send, limit):
        request = Request(scope, receive)
        response = error_response(request, 413, N_("the request body is larger than %(kb)d KB", kb=limit // 1024))
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def signup_origins(config: Config) -> frozenset[str]:
    """Where a signup form may be posted from without our session cookie: this app's own address
    (``base_url``), the publisher's site (``site_url``) and the ``signup_origins`` setting."""
    from .deps import origin_of

    allowed = {o for o in (origin_of(config.base_url), origin_of(config.site_url)) if o}
    for value in config.signup_origins:
        origin = origin_of(value)
        try:
            parts = urlsplit(value.strip())
        except ValueError:
            origin = None
        if origin is None or parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
            raise ConfigError(f"signup_origins: {value!r} is not an origin (scheme://host[:port], e.g. https://example.org)")
        allowed.add(origin)
    return frozenset(allowed)


def trusted_proxies(config: Config) -> tuple:
    """The ``trusted_proxies`` setting as networks (an address is a /32 or /128)."""
    import ipaddress

    out = []
    for value in config.trusted_proxies:
        try:
            out.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"trusted_proxies: {value!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
    return tuple(out)


def create_app(
    config: Config,
    engine=None,
    *,
    watch: list[str | Path] | None = None,
    limits: Limits | None = None,
    webhooks=None,
) -> FastAPI:
    """Build the web app for ``config``; ``engine`` defaults to one for ``config.database_url``
    (created on first use, so the public pages can start before the database is reachable).
    ``webhooks`` is a :class:`~newsletter.feedback.webhooks.WebhookReceiver` (tests pass one
    with a test certificate fetcher); by default one for ``config``."""
    from ..store.secret import secret_key

    limits = limits or Limits()
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.autoescape = select_autoescape(["html"], default_for_string=True)  # not the .txt emails
    templates.env.globals["newsletter_name"] = config.newsletter_name
    from ..i18n import install

    install(templates.env)  # {% trans %} and _() in the public pages, in the context's `lang`
    st = WebState(
        # Keep only hashes of the admin secrets: the clear values are dropped from the app's config.
        config=dataclasses.replace(config, admin_password=None, admin_token=None),
        engine_=engine,
        sessions=Sessions(secret_key(config)),
        password=PasswordHash.of(config.admin_password) if config.admin_password else None,
        token_sha256=hashlib.sha256(config.admin_token.encode()).digest() if config.admin_token else None,
        limiters={
            "subscribe_ip": RateLimiter(*limits.subscribe_per_ip),
            "subscribe_address": RateLimiter(*limits.subscribe_per_address),
            "login_ip": RateLimiter(*limits.login_per_ip),
            "token_ip": RateLimiter(*limits.token_per_ip),
            "webhook_ip": RateLimiter(*limits.webhook_per_ip),
        },
        templates=templates,
        watch=[Path(w) for w in (watch or [])],
        secure_cookies=config.base_url.startswith("https://"),
        form_origins=signup_origins(config),
        trusted_proxies=trusted_proxies(config),
    )

    @asynccontextmanager
    async def lifespan(app):
        yield
        # Let queued confirmation emails go out (each SMTP step is bounded by smtp_timeout).
        await asyncio.to_thread(st.mailer.close, 2 * config.smtp_timeout + 5)
        hits = getattr(app.state, "hits", None)  # tracking hits not yet stored
        if hits is not None:
            await asyncio.to_thread(hits.close)

    app = FastAPI(
        lifespan=lifespan,
        title=f"{config.newsletter_name} — newsletter API",
        version="1",
        description="JSON endpoints behind the admin pages: campaigns, subscribers, lists and stats. "
        "Local requests only unless an admin password or token is configured (then `Authorization: Bearer TOKEN`).",
        docs_url=None,  # /api/docs is ours (api.docs_page): Swagger UI from our static files
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.web = st
    if webhooks is None:
        from ..feedback.webhooks import WebhookReceiver

        webhooks = WebhookReceiver(config)
    app.state.webhooks = webhooks

    @app.middleware("http")
    async def session_and_headers(request: Request, call_next):
        session = st.sessions.load(request.cookies.get(SESSION_COOKIE))
        request.state.session = session
        response = await call_next(request)
        if session.get("new") or session.get("dirty"):
            session.pop("new", None)
            response.set_cookie(
                SESSION_COOKIE, st.sessions.dump(session), max_age=st.sessions.max_age,
                httponly=True, samesite="lax", secure=st.secure_cookies, path="/",
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        # same-origin: no URL (or token in it) leaves for another site, and our own forms' POSTs
        # carry our Origin, which the signup form accepts from a browser that blocks cookies.
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if not request.url.path.endswith("/frame"):
            response.headers.setdefault("X-Frame-Options", "DENY")
        response.headers.setdefault("Content-Security-Policy", PAGE_CSP)
        return response

    @app.exception_handler(NewsletterError)
    async def library_error(request: Request, exc: NewsletterError):
        return error_response(request, status_for(exc), exc.reader or str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        if 300 <= exc.status_code < 400 and exc.headers and "Location" in exc.headers:
            return RedirectResponse(exc.headers["Location"], status_code=exc.status_code)  # e.g. "log in first"
        return error_response(request, exc.status_code, _detail(exc), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        problems = []
        for err in exc.errors()[:3]:
            where = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path"))
            problems.append(f"{where}: {err.get('msg', 'invalid')}" if where else err.get("msg", "invalid"))
        message = "; ".join(problems) or "invalid request"
        if wants_json(request):
            return JSONResponse({"error": message, "status": 422}, status_code=422)
        if not request.url.path.startswith("/admin"):  # a reader sees words of their language, not pydantic's
            return error_response(request, 400, N_("the form arrived incomplete or changed; reload the page and try again"))
        return error_response(request, 400, message)

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception):
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(request, 500, N_("something unexpected went wrong (%(kind)s); the details are in the server log",
                                                kind=type(exc).__name__))

    from . import admin, admin_campaigns, admin_digests, api, public, tracking, webhooks as webhook_routes

    app.include_router(public.router)
    app.include_router(tracking.router)
    app.include_router(webhook_routes.router)
    app.include_router(admin_campaigns.router)  # before admin's: /admin/campaigns/new is not a campaign id
    app.include_router(admin_digests.router)  # ... and /admin/digests/NAME/run is not a pause or resume
    app.include_router(admin.router)
    app.include_router(api.router)
    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        """Browsers ask for /favicon.ico on pages that name no icon (the API's JSON, an email frame)."""
        return Response((HERE / "static" / "favicon.svg").read_bytes(), media_type="image/svg+xml",
                        headers={"Cache-Control": "public, max-age=86400"})

    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    app.add_middleware(BodyLimit)
    app.add_middleware(tracking.TrackingPaths)  # outermost: clicks and opens skip the rest of the stack
    return app
