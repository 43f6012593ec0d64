"""Tracking endpoints: ``/r/<token>`` redirects a tracked link (303) to the campaign's own URL,
``/o/<token>.gif`` answers the open pixel, ``/privacy`` says what is tracked and why.

A tampered or unknown token gets the 404 page and records nothing. Hits go to the app's
:class:`~newsletter.engagement.record.HitRecorder` (batched, off the request path).
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import RedirectResponse, Response
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
    rec = getattr(request.app.state, "hits", None)
    if rec is None:
        from ..engagement.record import HitRecorder

        st = state(request)
        rec = request.app.state.hits = HitRecorder(st.engine, store_ip=st.config.store_ip,
                                                    scanner_seconds=st.config.scanner_seconds)
    return rec


def _secret(request: Request) -> bytes:
    key = getattr(request.app.state, "track_secret", None)
    if key is None:
        from ..store.secret import secret_key

        key = request.app.state.track_secret = secret_key(state(request).config)
    return key


def _hit(request: Request, kind: str, cid: int, sid: int, link: int | None) -> Hit:
    return Hit(kind, cid, sid, link, datetime.now(timezone.utc),
               request.headers.get("user-agent", "")[:300], client_host(request))


@router.get("/r/{token}")
async def click(request: Request, token: str):
    from ..store.tokens import verify_click_token

    try:
        if len(token) > MAX_TOKEN:
            raise InvalidToken("too long")
        cid, sid, link = verify_click_token(_secret(request), token)
    except InvalidToken:
        raise HTTPException(404, "this link is not one of ours (or it was changed on the way)") from None
    rec = recorder(request)
    url = rec.links.get((cid, link))
    if url is None:
        url = await run_in_threadpool(rec.link, cid, link)
    if url is None:
        raise HTTPException(404, "this link belongs to a campaign that no longer exists")
    rec.hit(_hit(request, "click", cid, sid, link))
    return RedirectResponse(url, status_code=303, headers=NO_STORE)


@router.get("/o/{name}")
async def open_pixel(request: Request, name: str):
    from ..store.tokens import verify_open_token

    token = name[:-4] if name.endswith(".gif") else ""
    try:
        if not token or len(token) > MAX_TOKEN:
            raise InvalidToken("malformed")
        cid, sid = verify_open_token(_secret(request), token)
    except InvalidToken:
        raise HTTPException(404, "not found") from None
    recorder(request).hit(_hit(request, "open", cid, sid, None))
    return Response(PIXEL, media_type="image/gif", headers=NO_STORE)


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
