"""Articles as the templates see them: display-ready text, safe links, placed images."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from urllib.parse import urlparse

from ..articles.model import Article
from ..articles.text import strip_site_tail
from ..config import Config
from .mergesafe import inert_text, inert_url
from .model import ComposeOptions
from .thumbnails import CARD_WIDTH, ImageRef, card_image

PROVIDER_NAMES = {"youtube": "YouTube", "vimeo": "Vimeo"}
SUMMARY_MAX = 320
_SAFE_SCHEMES = {"http", "https", "mailto"}
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass
class VideoCard:
    """A video as the templates see it: where to watch it, and its thumbnail when one is known."""

    url: str
    provider: str
    provider_name: str
    title: str
    thumbnail: ImageRef | None


@dataclass
class Card:
    """One article as the templates see it: display-ready text, safe links, placed images."""

    key: str
    title: str
    url: str
    authors: list[str]
    authors_text: str
    category: str
    tags: list[str]
    summary: str
    published: datetime | None
    date_text: str
    date_iso: str
    read_time_minutes: int
    read_time_text: str
    lang: str
    dir: str
    align: str
    site_name: str
    image: ImageRef | None
    videos: list[VideoCard] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        """A card led by a video (no image of its own): it opens with the video's thumbnail
        (when the provider gives one) and a play bar linking to the video."""
        return self.image is None and bool(self.videos)


def safe_url(url: str | None) -> str:
    """``url`` when it is an absolute http(s)/mailto link, else "" (no ``javascript:``, ``data:``...)."""
    if not url:
        return ""
    url = _CONTROL.sub("", str(url)).strip()
    if any(c in url for c in "\r\n\t"):
        return ""
    try:
        scheme = urlparse(url).scheme.lower()
    except ValueError:
        return ""
    return url if scheme in _SAFE_SCHEMES else ""


def one_line(text: str | None) -> str:
    """Collapse whitespace and control characters: titles and names are shown on one line."""
    return " ".join(_CONTROL.sub(" ", text or "").split())


def shorten(text: str, limit: int) -> str:
    """Cut ``text`` at a word boundary before ``limit`` characters, with an ellipsis."""
    text = one_line(text)
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    if " " in cut[limit // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,;:.-–—") + "…"


def join_names(names: list[str]) -> str:
    names = [one_line(n) for n in names if one_line(n)]
    if len(names) <= 1:
        return "".join(names)
    return ", ".join(names[:-1]) + " and " + names[-1]


def day_text(dt: datetime, tz) -> str:
    """"24 November 2026", in ``tz`` (no platform-specific strftime flags)."""
    local = dt.astimezone(tz)
    return f"{local.day} {local:%B %Y}"


def article_day_text(dt: datetime, tz) -> str:
    """The day an article is dated, as its author wrote it: in the date's own UTC offset when it
    has one (``2026-11-19T06:30+09:00`` is 19 November even where it is still the 18th), else
    (no offset, or plain UTC as feeds often normalise to) in the configured zone ``tz``."""
    own = dt.tzinfo
    if isinstance(own, timezone) and dt.utcoffset() != timedelta(0):
        return f"{dt.day} {dt:%B %Y}"
    return day_text(dt, tz)


def zone(config: Config):
    """The configured time zone for dates shown in the digest (UTC when unknown)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(config.timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        return timezone.utc


def make_card(a: Article, config: Config, options: ComposeOptions, tz, files: list, warnings: list[str]) -> Card:
    """The card for ``a``; image files to ship are appended to ``files``, problems to ``warnings``.

    Every string taken from the article is made merge-tag inert (:mod:`.mergesafe`) unless the
    article opted in (``merge_tags: true`` in a publisher's own Markdown file)."""
    card = _card(a, config, options, tz, files, warnings)
    return card if a.merge_tags else _inert(card)


def _inert(card: Card) -> Card:
    """The card with merge tags in its article-derived text and URLs made inert."""
    t = inert_text
    card.key, card.title, card.url = t(card.key), t(card.title), inert_url(card.url)
    card.authors, card.authors_text = [t(x) for x in card.authors], t(card.authors_text)
    card.category, card.tags, card.summary = t(card.category), [t(x) for x in card.tags], t(card.summary)
    card.site_name = t(card.site_name)
    refs = [card.image] + [v.thumbnail for v in card.videos]
    for ref in refs:
        if ref is not None:
            ref.src, ref.alt = inert_url(ref.src), t(ref.alt)
    for v in card.videos:
        v.url, v.title, v.provider_name = inert_url(v.url), t(v.title), t(v.provider_name)
    return card


def _card(a: Article, config: Config, options: ComposeOptions, tz, files: list, warnings: list[str]) -> Card:
    # The card shows the site's name itself, so a declared "Story | Site" title loses its tail here.
    title = one_line(strip_site_tail(a.title or "", [a.site_name or ""])) or one_line(a.url)
    image = None
    if a.image is not None and a.image.url:
        alt = one_line(a.image.alt) or title
        image, part, warning = card_image(a, a.image, alt=alt, embed=options.embed_images, asset_base_url=config.asset_base_url)
        if part is not None:
            files.append(part)
        if warning:
            warnings.append(warning)
    videos = []
    for v in a.videos:
        vurl = safe_url(v.url)
        if not vurl:
            continue
        vtitle = one_line(v.title)  # "" when unknown: the button then just says "Play video on YouTube"
        provider_name = PROVIDER_NAMES.get((v.provider or "").lower(), (v.provider or "video").title())
        thumb = None
        turl = safe_url(v.thumbnail_url)
        if turl.startswith(("http://", "https://")):
            # The picture's alt names what it plays: the video's title, else the article's.
            about = vtitle or title
            thumb = ImageRef(turl, f"Play video on {provider_name}" + (f": {about}" if about else ""), CARD_WIDTH, None)
        videos.append(VideoCard(vurl, (v.provider or "").lower(), provider_name, vtitle, thumb))
    direction = "rtl" if (a.dir or "").lower() == "rtl" else "ltr"
    minutes = max(1, int(a.read_time_minutes or 1))
    return Card(
        key=a.key,
        title=title,
        url=safe_url(a.url),
        authors=[one_line(x) for x in a.authors if one_line(x)],
        authors_text=join_names(a.authors),
        category=one_line(a.category),
        tags=[one_line(t) for t in a.tags if one_line(t)],
        summary=shorten(a.summary or "", SUMMARY_MAX),
        published=a.published,
        date_text=article_day_text(a.published, tz) if a.published else "",
        date_iso=a.published.isoformat() if a.published else "",
        read_time_minutes=minutes,
        read_time_text=f"{minutes} min read",
        lang=re.sub(r"[^A-Za-z0-9-]", "", a.lang or "")[:35],
        dir=direction,
        align="right" if direction == "rtl" else "left",
        site_name=one_line(a.site_name),
        image=image,
        videos=videos,
    )
