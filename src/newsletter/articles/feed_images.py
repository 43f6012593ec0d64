"""Which picture a feed entry gets, and which images are not pictures of the article.

The largest image the entry declares (media:content, media:thumbnail, image enclosures,
itunes:image, Bing News, a non-standard ``<image>`` in an RSS item), else the first real
``<img>`` of its content; tracking pixels and site furniture (avatars, icons, logos, share
buttons) never count, and are dropped from the body too. An image every entry of a feed
shares is the site's logo, not a picture: :func:`drop_shared_images` removes it.
"""

from __future__ import annotations

import html as htmllib
import re
import urllib.parse
from typing import Any

from . import sanitize, video
from .feed_urls import absolute_url, is_http_url
from .model import Article, Image

_IMAGE_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif|bmp)(?:$|[?#])", re.IGNORECASE)
_PIXEL_URL = re.compile(
    r"feedburner\.com/~r/|/~ff/|stats\.wordpress\.com|/(?:pixel|pixels|track|tracking|beacon|open)/|^/?[^ ]*\s(?:pixel|track|beacon)\.",
    re.IGNORECASE,
)
_PIXEL_NAME = re.compile(r"^(?:1x1|pixel|spacer|blank|transparent|tracker|tracking|beacon|clear|dot|empty)(?:[_-]?\w{0,8})?$", re.IGNORECASE)
# Site furniture rather than an article picture: avatars, icons, logos, share buttons, emoji.
_NOT_A_PICTURE_DIR = re.compile(r"gravatar\.com|/(?:avatars?|icons?|emoji|emojis|smilies|badges?|buttons?)/", re.IGNORECASE)
_NOT_A_PICTURE_NAME = re.compile(
    r"^(?:[a-z]+[_-])?(?:icon|favicon|logo|emoji|share|button|badge|avatar|spacer)(?:[_-][a-z]+)?$", re.IGNORECASE
)
_IMG_TAG = re.compile(r"<img\b[^<>]*>", re.IGNORECASE)  # [^<>]: "<img <img <img" is scanned once


def drop_shared_images(articles: list[Article]) -> None:
    """An image that every entry of a feed shares is the site's logo or a placeholder, not a picture of
    each article: drop it (a card without an image reads better than a wall of logos)."""
    if len(articles) < 3:
        return
    counts: dict[str, int] = {}
    for a in articles:
        if a.image:
            counts[a.image.url] = counts.get(a.image.url, 0) + 1
    shared = {url for url, n in counts.items() if n == len(articles)}
    for a in articles:
        if a.image and a.image.url in shared:
            a.image = None


def drop_pixels(html: str) -> str:
    """Remove tracking pixels (1×1 or beacon-named images) from content before it is kept as the body."""

    def keep(m: re.Match) -> str:
        attrs = sanitize.tag_attributes(m.group(0))
        src = (attrs.get("src") or "").strip()
        if not src:
            return m.group(0)
        return "" if is_pixel(src if "//" in src else "https://x.invalid/" + src.lstrip("/"), _int(attrs.get("width")), _int(attrs.get("height"))) else m.group(0)

    return _IMG_TAG.sub(keep, html) if "<img" in html.lower() else html


def _int(value: Any) -> int | None:
    try:
        v = int(str(value).strip().rstrip("px"))
        return v if v >= 0 else None
    except (TypeError, ValueError):
        return None


def is_pixel(url: str, width: int | None, height: int | None) -> bool:
    """A tracking pixel or site furniture (avatar, icon, logo) rather than the article's picture."""
    if (width is not None and width <= 2) or (height is not None and height <= 2):
        return True
    parts = urllib.parse.urlsplit(url)
    where = parts.path + " " + (parts.hostname or "")
    stem = parts.path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    return bool(
        _PIXEL_URL.search(where) or _PIXEL_NAME.match(stem) or _NOT_A_PICTURE_DIR.search(where) or _NOT_A_PICTURE_NAME.match(stem)
    )


def _repair_url(url: str) -> str:
    """Undo a common publisher bug: an absolute URL glued onto the site's own ("https://a/https://b/x.jpg")."""
    m = re.match(r"^https?://[^/]+/+(https?://.+)$", url)
    return m.group(1) if m else url


def entry_image(entry, body_raw: str, base: str | None, title: str, item_image: str | None = None) -> Image | None:
    """The largest image the entry declares (media:content/thumbnail, enclosures, itunes:image), else the first
    real ``<img>`` in its content."""
    candidates: list[tuple[int, int, int, Image]] = []  # (area, kind preference, file size, image)

    def add(url: Any, width: Any = None, height: Any = None, alt: str = "", pref: int = 0, size: Any = None) -> None:
        url = absolute_url(url, base)
        if not is_http_url(url):
            return
        url = _repair_url(htmllib.unescape(url) if "&" in url else url)
        w, h = _int(width), _int(height)
        if is_pixel(url, w, h):
            return
        if video.parse_video_url(url):
            return
        candidates.append(((w or 0) * (h or 0), pref, _int(size) or 0, Image(url=url, alt=alt, width=w, height=h)))

    for m in entry.get("media_content") or []:
        medium = (m.get("medium") or "").lower()
        mtype = (m.get("type") or "").lower()
        url = m.get("url") or ""
        if medium == "image" or mtype.startswith("image/") or (not medium and not mtype and _IMAGE_EXT.search(url)):
            add(url, m.get("width"), m.get("height"), pref=3, size=m.get("filesize"))
    for t in entry.get("media_thumbnail") or []:
        add(t.get("url"), t.get("width"), t.get("height"), pref=2)
    for l in entry.get("links") or []:
        if l.get("rel") == "enclosure" and ((l.get("type") or "").lower().startswith("image/") or (not l.get("type") and _IMAGE_EXT.search(l.get("href") or ""))):
            add(l.get("href"), pref=2)
    for e in entry.get("enclosures") or []:
        if (e.get("type") or "").lower().startswith("image/"):
            add(e.get("href") or e.get("url"), pref=2)
    itunes = entry.get("image")
    if isinstance(itunes, dict) and itunes.get("href"):
        add(itunes["href"], pref=1)
    if entry.get("news_image"):  # Bing News
        add(entry["news_image"], entry.get("news_imagemaxwidth"), entry.get("news_imagemaxheight"), pref=1)
    if item_image:  # a non-standard <image> inside an RSS <item>
        add(item_image, pref=0)

    if candidates:
        # Largest declared area wins; without sizes, media:content before thumbnails before others.
        best = max(candidates, key=lambda c: c[:3])[3]
        best.alt = best.alt or title
        return best

    for tag in _IMG_TAG.findall(body_raw or ""):
        attrs = sanitize.tag_attributes(tag)
        src = attrs.get("src") or attrs.get("data-src")
        if not src:
            continue
        src = src.replace("&amp;", "&")
        before = len(candidates)
        add(src, attrs.get("width"), attrs.get("height"), alt=sanitize.clean_text(attrs.get("alt") or ""))
        if len(candidates) > before:
            img = candidates[-1][3]
            img.alt = img.alt or title
            return img
    return None
