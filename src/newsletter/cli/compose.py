"""CLI commands for `compose` (registered on the root app on import)."""

from __future__ import annotations

from . import app  # noqa: F401
