"""The ``Article`` dataclass: the one shape every source is turned into."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .identity import canonical_url


@dataclass
class Image:
    """An article's hero image (or thumbnail). ``url`` may be a local path for Markdown sources."""

    url: str
    alt: str = ""
    width: int | None = None
    height: int | None = None


@dataclass
class Video:
    """A linked or embedded video; email cannot play it, so it becomes a card linking to ``url``."""

    url: str
    provider: str  # "youtube" | "vimeo"
    id: str
    thumbnail_url: str | None = None
    title: str | None = None


@dataclass
class Article:
    """One article from any source, with untrusted HTML already sanitized in ``body``."""

    title: str
    url: str
    authors: list[str] = field(default_factory=list)
    published: datetime | None = None  # timezone-aware when set
    category: str | None = None
    tags: list[str] = field(default_factory=list)
    summary: str = ""
    body: str = ""
    image: Image | None = None
    videos: list[Video] = field(default_factory=list)
    read_time_minutes: int = 1
    lang: str | None = None
    dir: str = "ltr"
    site_name: str | None = None
    source: str = ""
    guid: str | None = None
    # Merge tags (*|NAME|*...) in this article are filled per reader: only a publisher's own local
    # Markdown file can ask for it (front matter ``merge_tags: true``); see compose/mergesafe.py.
    merge_tags: bool = False

    def to_json_dict(self) -> dict[str, Any]:
        """The fields as JSON-ready values (dates in ISO 8601), as ``newsletter articles --format json`` prints them."""
        d = dataclasses.asdict(self)
        d["published"] = self.published.isoformat() if self.published else None
        d.pop("guid", None)
        return d

    @property
    def key(self) -> str:
        """Identity for dedupe and 'already sent' memory: the guid when the source gave one, else the
        canonical URL (:func:`canonical_url`: no tracking parameters, fragment or trailing slash)."""
        return self.guid or canonical_url(self.url)
