"""Tracking endpoints: ``/r/<token>`` redirects a tracked link (303) to the campaign's own URL,
``/o/<token>.gif`` answers the open pixel (both in :class:`TrackingPaths`, ahead of the app's
stack), ``/privacy`` says what is tracked and why.

A tampered or unknown token gets the 404 page and records nothing. Hits go to the app's
:class:`~newsletter.engagement.record.HitRecorder` (batched, off the request path).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from starlette.concurrency import run_in_threadpool

from ..engagement.classify import Hit
from ..errors import InvalidToken
from .app import state
from .deps import client_host
from .render import page

router = APIRouter(include_in_schema=False)

PIXEL = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00"
         b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
NO_STORE = {"Cache-Control": "no-store, no-cache, must-revalidate, max-age=0, private", "Pragma": "no-cache",
            "Expires": "0"}
MAX_TOKEN = 80  # a real token is about 30 characters; anything longer is refused unread


def recorder(request: Request):
    """The app's hit recorder, made on first use (it needs the engine)."""
    app = request.scope["app"]
    rec = getattr(app.state, "hits", None)
    if rec is None:
        from ..engagement.record import HitRecorder

        st = app.state.web
        rec = app.state.hits = HitRecorder(st.engine, store_ip=st.config.store_ip,
                                           scanner_seconds=st.config.scanner_seconds)
    return rec


def _secret(request: Request) -> bytes:
    app = request.scope["app"]
    key = getattr(app.state, "track_secret", None)
    if key is None:
        from ..store.secret import secret_key

        key = app.state.track_secret = secret_key(app.state.web.config)
    return key


def _hit(request: Request, kind: str, cid: int, sid: int, link: int | None) -> Hit:
    return Hit(kind, cid, sid, link, datetime.now(timezone.utc),
               request.headers.get("user-agent", "")[:300], client_host(request))


class TrackingPaths:
    """ASGI middleware answering ``GET /r/<token>`` and ``GET /o/<token>.gif`` before the app's
    routing and middleware stack: the hottest paths of the server (every click and open of every
    reader) cost a signature check, a cached link look-up and a queue put. Everything else passes
    through. The answers carry the app's usual safety headers."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not (path.startswith("/r/") or path.startswith("/o/")) or path.count("/") != 2:
            return await self.app(scope, receive, send)
        if scope["method"] not in ("GET", "HEAD"):
            return await self._answer(send, 405, b"text/plain; charset=utf-8", b"method not allowed\n", [])
        request = Request(scope, receive)
        name = path[3:]
        if path[1] == "r":
            found = await self._click(request, name)
            if found is None:
                return await self._not_found(scope, receive, send)
            return await self._answer(send, 303, b"text/plain; charset=utf-8", b"",
                                      [(b"location", found.encode("utf-8"))])
        if not await self._open(request, name):
            return await self._not_found(scope, receive, send)
        return await self._answer(send, 200, b"image/gif", PIXEL, [])

    async def _click(self, request: Request, token: str) -> str | None:
        from ..store.tokens import verify_click_token

        try:
            if len(token) > MAX_TOKEN:
                raise InvalidToken("too long")
            cid, sid, link = verify_click_token(_secret(request), token)
        except InvalidToken:
            return None
        rec = recorder(request)
        url = rec.links.get((cid, link))
        if url is None:
            url = await run_in_threadpool(rec.link, cid, link)
        if url is not None:
            rec.hit(_hit(request, "click", cid, sid, link))
        return url

    async def _open(self, request: Request, name: str) -> bool:
        from ..store.tokens import verify_open_token

        token = name[:-4] if name.endswith(".gif") else ""
        try:
            if not token or len(token) > MAX_TOKEN:
                raise InvalidToken("malformed")
            cid, sid = verify_open_token(_secret(request), token)
        except InvalidToken:
            return False
        recorder(request).hit(_hit(request, "open", cid, sid, None))
        return True

    @staticmethod
    async def _answer(send, status: int, content_type: bytes, body: bytes, extra: list) -> None:
        headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                   (b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
        headers += [(k.lower().encode(), v.encode()) for k, v in NO_STORE.items()] + extra
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _not_found(self, scope, receive, send) -> None:
        from .app import error_response

        request = Request(scope, receive)
        request.state.session = {}
        response = error_response(request, 404, "this link is not one of ours (or it was changed on the way)")
        await response(scope, receive, send)


@router.get("/privacy")
def privacy(request: Request):
    config = state(request).config
    paragraphs: list[str] = []
    if config.privacy_note_file:
        try:
            text = Path(config.privacy_note_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise HTTPException(503, f"the privacy note cannot be read: {type(e).__name__}") from None
        paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    return page(request, "public/privacy.html", paragraphs=paragraphs, config=config)
