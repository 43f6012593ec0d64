"""Public pages: subscribe, confirm, unsubscribe (incl. RFC 8058 one-click) and the archive."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(include_in_schema=False)
