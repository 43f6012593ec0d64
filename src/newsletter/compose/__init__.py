"""Composing a digest: select articles, render them (Jinja2 → MJML → premailer), write the files.

The contract the rest of the package uses: ``ComposeOptions``, ``compose()``, ``select()``, ``render()``,
``write_digest()``, ``load_digest()``, ``Digest`` and ``parse_since``.
"""

from .message import build_message, embed_relative_assets
from .model import HTML_BUDGET_BYTES, Asset, ComposeOptions, Digest, InlineImage, Selection
from .output import load_digest, write_digest
from .pipeline import compose
from .render import PLACEHOLDERS, render
from .select import select
from .since import parse_since

__all__ = [
    "Asset",
    "ComposeOptions",
    "Digest",
    "HTML_BUDGET_BYTES",
    "InlineImage",
    "PLACEHOLDERS",
    "Selection",
    "build_message",
    "compose",
    "embed_relative_assets",
    "load_digest",
    "parse_since",
    "render",
    "select",
    "write_digest",
]
