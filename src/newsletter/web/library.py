"""The web app's calls into the library (store, compose, dispatch, schedule), in one place.

Each function opens a session, calls one library function and returns plain data for a page
or a JSON answer; none of them decides anything the library should decide.
"""

from __future__ import annotations

from typing import Any

from . import preview as pv


def recent_campaigns(st, limit: int = 50) -> list[Any]:
    """Campaigns for the preview's chooser (newest first)."""
    try:
        from ..dispatch import campaigns  # noqa: F401
    except ImportError:  # dispatch not installed in this checkout yet
        return []
    return []


def campaign_preview(st, campaign_id: str) -> pv.PreviewDoc:
    raise NotImplementedError


def test_send(st, doc: pv.PreviewDoc, to: str, campaign_id: str | None) -> str:
    raise NotImplementedError
