"""The data that flows through composing: options in, a ``Digest`` out."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Iterable

from ..articles.model import Article

# Gmail clips messages whose HTML is larger than about 102 KB.
HTML_BUDGET_BYTES = 102 * 1024


@dataclass
class ComposeOptions:
    """What to select and how to render it; every field has a sensible default.

    ``since`` is a string for :func:`parse_since` (``7d``, ``24h``, ``2026-11-01``, ISO date-time)
    or an aware datetime; ``tags`` match when an article has any of them; ``exclude_keys`` are
    ``Article.key`` values already sent (recurring digests; URLs compared in canonical form); ``now`` pins the clock (tests, schedules).
    """

    since: str | datetime | None = None
    limit: int | None = None
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    template_dir: str | None = None
    embed_images: bool = False
    subject: str | None = None
    exclude_keys: Iterable[str] = ()
    strict: bool = False
    now: datetime | None = None
    preheader: str | None = None
    language: str | None = None  # the fixed words' language (a list's, else config.language)
    until: str | datetime | None = None  # the end of the date range (like ``since``; a bare date: that whole day)
    intro: str | None = None  # the editor's note above the cards (plain text; blank lines split paragraphs)


@dataclass
class Selection:
    """The articles chosen for a digest, and the ones left out with the reason (what, reason)."""

    selected: list[Article]
    skipped: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class InlineImage:
    """An image embedded in the message as a ``multipart/related`` part, referenced as ``cid:<cid>``."""

    cid: str
    filename: str
    content_type: str
    data: bytes


@dataclass
class Asset:
    """A file written under ``out/assets/`` (a resized thumbnail), referenced by ``url`` in the HTML."""

    filename: str
    content_type: str
    data: bytes
    url: str


@dataclass
class Digest:
    """A composed digest: final inlined HTML, plain text, and what went into it.

    ``html`` and ``text`` still hold the merge tags (``*|UNSUBSCRIBE_URL|*`` ...) the dispatcher fills
    per recipient. ``skipped`` is what selection left out; ``sources_skipped`` what could not be read.
    ``images`` are CID parts (``--embed-images``), ``assets`` files for ``out/assets/``.
    """

    subject: str
    preheader: str
    html: str
    text: str
    articles: list[Article] = field(default_factory=list)
    images: list[InlineImage] = field(default_factory=list)
    assets: list[Asset] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    found: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    html_size: int = 0
    from_address: str = ""
    reply_to: str | None = None
    date: datetime | None = None
    newsletter_name: str = ""
    # Source files, feed entries and URLs left out before selection, as (what, reason): bad
    # articles skipped with a warning and non-article files ignored. Not counted in ``found``.
    sources_skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def article_keys(self) -> list[str]:
        """Identities of the selected articles (what a recurring digest remembers as sent)."""
        return [a.key for a in self.articles]

    @property
    def over_budget(self) -> bool:
        """True when the HTML is big enough for Gmail to clip it."""
        return self.html_size > HTML_BUDGET_BYTES
