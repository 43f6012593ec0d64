"""JSON Feed 1.0/1.1 documents (https://jsonfeed.org) → ``Article`` list, with the same rules as
XML feeds (sanitized body, largest image, videos, shared logos dropped); feedparser does not
read JSON Feed."""

from __future__ import annotations

from typing import Any, Callable

from ..config import Config
from ..errors import SourceError
from . import budget, dates, sanitize, text, video
from .feed_entries import UndatedEntry, add_guarded, feed_article, text_as_html
from .feed_images import drop_pixels, drop_shared_images, entry_image, is_pixel
from .feed_urls import absolute_url, is_http_url
from .model import Article, Image, Video


def is_json_feed(content: bytes) -> bool:
    """True for a JSON Feed document (https://jsonfeed.org), which feedparser does not read."""
    head = content[:4096].lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"{") and b"jsonfeed.org/version" in head


def parse_json_feed(
    content: bytes,
    source: str,
    config: Config,
    *,
    base_url: str | None = None,
    warn: Callable[[Any], None] | None = None,
) -> list[Article]:
    """JSON Feed 1.0/1.1 → Articles, with the same rules as XML feeds (sanitized body, largest image, videos)."""
    import json

    try:
        doc = json.loads(content.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError) as e:
        raise SourceError(source, f"invalid JSON Feed: {' '.join(str(e).split())}") from None
    if not isinstance(doc, dict) or not str(doc.get("version", "")).startswith("https://jsonfeed.org/version/"):
        raise SourceError(source, "not a JSON Feed (no jsonfeed.org version)")
    items = doc.get("items")
    if not isinstance(items, list):
        raise SourceError(source, "JSON Feed has no 'items' list")
    site_link = absolute_url(doc.get("home_page_url") if isinstance(doc.get("home_page_url"), str) else None, base_url) or base_url
    site_name = sanitize.clean_text(str(doc.get("title") or "")) or None
    feed_lang = text.normalize_lang(doc.get("language"))
    feed_authors = doc.get("authors") or ([doc["author"]] if isinstance(doc.get("author"), dict) else [])
    articles: list[Article] = []
    notes: list[SourceError] = []
    for index, item in enumerate(items, start=1):
        budget.check()
        if not isinstance(item, dict):
            if warn:
                warn(SourceError(f"{source}: item {index}", "is not an object"))
            continue
        add_guarded(articles, lambda: _json_item(item, index, source, config, site_link, site_name, feed_lang,
                                                 feed_authors, notes), f"{source}: item {index}", warn)
    if warn:
        for n in notes:
            warn(n)
    if not items and warn:
        warn(f"{source}: feed has no entries")
    if items and not articles:
        raise SourceError(source, f"none of the feed's {len(items)} entries has a title and a link")
    drop_shared_images(articles)
    return articles


def _json_item(item: dict, index, source, config, site_link, site_name, feed_lang, feed_authors, notes=None) -> Article:
    def s(key: str) -> str:
        v = item.get(key)
        return v if isinstance(v, str) else ""

    link = next((u for u in (absolute_url(s("url"), site_link), absolute_url(s("external_url"), site_link)) if is_http_url(u)), None)
    guid = s("id") or str(item.get("id") or "") or None
    if link is None and guid and is_http_url(guid):
        link = guid
    body_raw = s("content_html") or text_as_html(s("content_text"))
    base = link or site_link
    body = sanitize.sanitize_html(drop_pixels(body_raw), base_url=base)
    paragraphs = sanitize.html_paragraphs(body)
    title = sanitize.clean_text(s("title")) or text.truncate_words(" ".join(paragraphs), 80)
    what = f"{source}: item {index}" + (f" ({title[:60]!r})" if title else "")
    if not title:
        raise SourceError(what, "has no title and no text")
    if not link:
        raise SourceError(what, "has no link")
    published = None
    bad_date = None
    for key in ("date_published", "date_modified"):
        if s(key):
            try:
                published = dates.parse_date(s(key), config.timezone)
                break
            except ValueError:
                bad_date = bad_date or s(key)
                continue
    if published is None and bad_date and notes is not None:
        notes.append(UndatedEntry(what, f"cannot parse date {bad_date.strip()[:40]!r}"))
    authors_raw = item.get("authors") or ([item["author"]] if isinstance(item.get("author"), dict) else []) or feed_authors
    authors = text.split_names([a.get("name") for a in authors_raw if isinstance(a, dict) and isinstance(a.get("name"), str)])
    tags = text.split_tags([t for t in item.get("tags") or [] if isinstance(t, str)]) if isinstance(item.get("tags"), list) else []
    image = None
    for key in ("image", "banner_image"):
        url = absolute_url(s(key), base)
        if is_http_url(url) and not is_pixel(url, None, None):
            image = Image(url=url, alt=title)
            break
    if image is None:
        image = entry_image({}, body_raw, base, title)
    videos: list[Video] = []
    for v in [video.parse_video_url(link, title)] + video.find_videos(body_raw):
        if v:
            video.add_video(videos, v)
    summary = text.truncate_words(sanitize.clean_text(s("summary")) or text.first_paragraph(paragraphs))
    lang = text.normalize_lang(item.get("language")) or feed_lang
    return feed_article(
        title=title, url=link, guid=guid, authors=authors, published=published, tags=tags, summary=summary,
        body=body, paragraphs=paragraphs, image=image, videos=videos, lang=lang, site_name=site_name, source=source,
    )
