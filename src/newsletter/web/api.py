"""JSON API under /api (documented by the OpenAPI schema at /api/openapi.json)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from .deps import require_api

router = APIRouter(prefix="/api", dependencies=[Depends(require_api)])
