"""One feed entry (as feedparser gives it) → ``Article``.

Per entry: ``content:encoded``/Atom content preferred over the description; authors from
author/dc:creator ("a@b.org (Name)" gives Name, a bare address nobody); categories become
tags, the first one the category; the date as the feed wrote it (its offset kept), an
unreadable one leaves the entry undated with a warning; YouTube and Vimeo links become
video cards. :func:`feed_article` is the one place an entry of any feed format becomes an
``Article`` (read time, direction, category).
"""

from __future__ import annotations

import re
from calendar import timegm
from datetime import datetime, timezone
from typing import Any, Callable

from ..errors import SourceError
from . import dates, readtime, sanitize, text, video
from .feed_images import drop_pixels, entry_image
from .feed_urls import absolute_url, is_http_url
from .model import Article, Video

_EMAIL_NAME = re.compile(r"^\s*[^\s@()]+@[^\s()]+\s*\((.+)\)\s*$")  # "a@b.org (Name)": no two ways to split


class UndatedEntry(SourceError):
    """An entry whose date cannot be read: kept undated with a warning, an error with ``--strict``
    (like a Markdown file's bad date)."""

    kept = "left undated"


def entry_article(entry, index, source, config, site_link, site_name, feed_lang, youtube_feed, item_image=None, notes=None) -> Article:
    """The Article for feedparser's ``entry`` (the ``index``-th of ``source``); raises SourceError
    naming the entry when it has no title and no text, or no link. A date it cannot read is added
    to ``notes`` (an ``UndatedEntry``) and the entry kept undated."""
    notes = notes if notes is not None else []
    raw_title = entry.get("title") or ""
    title = sanitize.clean_text(raw_title)

    link = None
    for candidate in [entry.get("link")] + [l.get("href") for l in entry.get("links", []) if l.get("rel") in (None, "alternate")]:
        link = absolute_url(candidate, site_link)
        if is_http_url(link):
            break
        link = None
    guid = entry.get("id") or None
    if link is None and guid and is_http_url(absolute_url(guid, site_link)):
        link = absolute_url(guid, site_link)

    # content:encoded / Atom content beats the description; among several, prefer HTML, then the longest.
    contents = entry.get("content") or []
    body_raw = ""
    if contents:
        best = max(contents, key=lambda c: ("html" in (c.get("type") or ""), len(c.get("value") or "")))
        body_raw = best.get("value") or ""
    description = entry.get("summary") or ""
    if not body_raw:
        body_raw = description
    if youtube_feed and not body_raw:
        group = entry.get("media_group") or {}
        body_raw = entry.get("media_description") or (group.get("media_description") if isinstance(group, dict) else "") or ""
    if not _looks_like_html(body_raw):
        body_raw = text_as_html(body_raw)

    base = link or site_link
    body = sanitize.sanitize_html(drop_pixels(body_raw), base_url=base)
    paragraphs = sanitize.html_paragraphs(body)

    if not title:
        # RSS 2.0 allows untitled items (microblogs): use the start of the text, like feed readers do.
        title = text.truncate_words(" ".join(paragraphs), 80)
    what = f"{source}: entry {index}" + (f" ({title[:60]!r})" if title else "")
    if not title:
        raise SourceError(what, "has no title and no text")
    if not link:
        raise SourceError(what, "has no link")

    summary_src = sanitize.html_paragraphs(description) if description and description != body_raw else []
    summary = text.truncate_words(text.first_paragraph(summary_src or paragraphs))

    published = None
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        st = dict.get(entry, key)  # plain dict access: skips feedparser's deprecated updated→published alias
        if st:
            try:
                published = datetime.fromtimestamp(timegm(st), timezone.utc)
            except (OverflowError, ValueError, OSError):
                continue
            # feedparser normalises to UTC; keep the offset the feed wrote when it is the same instant
            # (a digest shows the day the author dated it).
            written = dict.get(entry, key[: -len("_parsed")])
            try:
                as_written = dates.parse_date(written, config.timezone) if isinstance(written, str) else None
            except ValueError:
                as_written = None
            if as_written is not None and as_written == published:
                published = as_written
            break
    if published is None:
        raw_date = dict.get(entry, "published") or dict.get(entry, "updated") or dict.get(entry, "created")
        if raw_date and raw_date.strip():
            try:
                published = dates.parse_date(raw_date, config.timezone)
            except ValueError:
                notes.append(UndatedEntry(what, f"cannot parse date {raw_date.strip()[:40]!r}"))

    authors = _authors(entry)
    tags: list[str] = []
    for t in entry.get("tags") or []:
        term = sanitize.clean_text(t.get("label") or t.get("term") or "")
        if term and term.lower() not in {x.lower() for x in tags}:
            tags.append(term)

    videos: list[Video] = []
    if entry.get("yt_videoid"):
        v = video.parse_video_url(f"https://www.youtube.com/watch?v={entry['yt_videoid']}", title)
        if v:
            thumbs = entry.get("media_thumbnail") or []
            if thumbs and is_http_url(thumbs[0].get("url")):
                v.thumbnail_url = thumbs[0]["url"]
            video.add_video(videos, v)
    v = video.parse_video_url(link, title)
    if v:
        video.add_video(videos, v)
    for m in entry.get("media_content") or []:
        v = video.parse_video_url(m.get("url") or "")
        if v:
            video.add_video(videos, v)
    for v in video.find_videos(body_raw):
        video.add_video(videos, v)

    image = entry_image(entry, body_raw, base, title, item_image)
    link_video = video.parse_video_url(link)
    for v in videos:
        # A Vimeo entry (its link is the video) has no derivable thumbnail: the entry's own picture is one.
        if image and not v.thumbnail_url and link_video and (v.provider, v.id) == (link_video.provider, link_video.id):
            v.thumbnail_url = image.url
    lang = text.normalize_lang((entry.get("title_detail") or {}).get("language")) or feed_lang
    return feed_article(
        title=title, url=link, guid=guid, authors=authors, published=published, tags=tags, summary=summary,
        body=body, paragraphs=paragraphs, image=image, videos=videos, lang=lang, site_name=site_name, source=source,
    )


def add_guarded(articles: list[Article], make: Callable[[], Article], where: str, warn) -> None:
    """Append ``make()`` to ``articles``; a failing item is a warning naming ``where`` (one
    hostile entry is skipped, never the whole feed; only MemoryError goes up)."""
    try:
        articles.append(make())
    except SourceError as e:
        if warn:
            warn(e)
    except Exception as e:  # noqa: BLE001 - see the docstring
        if isinstance(e, MemoryError):
            raise
        if warn:
            warn(SourceError(where, f"unexpected failure ({type(e).__name__}: {e})"))


def feed_article(*, tags: list[str], paragraphs: list[str], guid: Any, lang: str | None, **fields: Any) -> Article:
    """The Article for one entry of any feed format: the first tag is the category, read time and direction from the text."""
    return Article(
        **fields,
        tags=tags,
        category=tags[0] if tags else None,
        read_time_minutes=readtime.read_time_minutes(" ".join(paragraphs)),
        lang=lang,
        dir=text.text_direction(lang, fields["title"] + " " + " ".join(paragraphs[:3])),
        guid=str(guid) if guid else None,
    )


def _looks_like_html(value: str) -> bool:
    return bool(re.search(r"<[a-zA-Z][^<>]*>|&[a-zA-Z#0-9]+;", value or ""))


def text_as_html(value: str) -> str:
    """Plain text as HTML paragraphs (one per blank-line-separated block), escaped."""
    return "".join(f"<p>{_escape(p)}</p>" for p in re.split(r"\n\s*\n", value) if p.strip())


def _escape(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _authors(entry) -> list[str]:
    names: list[str] = []
    for a in entry.get("authors") or []:
        name = a.get("name") or ""
        if not name and a.get("email"):
            continue
        names.append(name)
    if not names and entry.get("author"):
        names.append(entry["author"])
    out: list[str] = []
    for n in names:
        n = sanitize.clean_text(n)
        m = _EMAIL_NAME.match(n)
        if m:
            n = m.group(1)
        elif "@" in n and " " not in n:
            continue  # a bare e-mail address is not a byline
        for part in text.split_names(n):
            if part not in out:
                out.append(part)
    return out
