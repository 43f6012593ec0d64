"""Provider webhook endpoints: ``POST /webhooks/{ses,sendgrid,postmark,mailgun}``.

Public (providers cannot log in: each request proves itself by the provider's signature or
credentials, checked in :mod:`newsletter.feedback.webhooks`), rate-limited per client address,
and thin: a refused request gets its 4xx with a one-line reason and changes nothing.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from ..errors import WebhookRejected
from .app import state
from .deps import client_host, rate_limit

log = logging.getLogger("newsletter.web")
router = APIRouter(prefix="/webhooks", include_in_schema=False)


@router.post("/{provider}")
async def webhook(request: Request, provider: str):
    ip = client_host(request)
    rate_limit(request, "webhook_ip", ip)
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    receiver = request.app.state.webhooks
    st = state(request)
    try:
        result = await run_in_threadpool(receiver.receive, provider, st.engine, body, headers, ip)
    except WebhookRejected as e:
        log.warning("webhook refused (%s) from %s: %s", e.status, ip, e)
        extra = {"WWW-Authenticate": 'Basic realm="webhooks"'} if e.status == 401 and provider == "postmark" else None
        return JSONResponse({"error": str(e), "status": e.status}, status_code=e.status, headers=extra)
    return JSONResponse(result.as_dict())
