"""RSS 0.9x/1.0/2.0, RDF and Atom feeds → ``Article`` list, through feedparser.

Per entry: ``content:encoded``/Atom content preferred over the description; authors from
author/dc:creator; categories; the image is the largest of media:content /
media:thumbnail (media:group included) / image enclosures / itunes:image, else the first
``<img>`` in the content — never a 1×1 tracking pixel; relative URLs resolved against the
entry's link, the feed's base or its site link; HTML in titles stripped and entities
decoded. YouTube channel feeds give one video card per entry. XML that feedparser can
recover is recovered with a warning; a document that is not a feed is a SourceError.
"""

from __future__ import annotations

import html as htmllib
import re
import urllib.parse
from calendar import timegm
from datetime import datetime, timezone
from typing import Any, Callable

import feedparser

from ..config import Config
from ..errors import SourceError
from . import budget, dates, readtime, sanitize, text, video
from .model import Article, Image, Video


def _bom_charset(content: bytes) -> str | None:
    """The encoding a UTF-8 or UTF-16 byte-order mark names (UTF-32 marks are left to feedparser)."""
    if content.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return None
    if content.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if content.startswith(b"\xff\xfe"):
        return "utf-16le"
    return "utf-16be" if content.startswith(b"\xfe\xff") else None


class UndatedEntry(SourceError):
    """An entry whose date cannot be read: kept undated with a warning, an error with ``--strict``
    (like a Markdown file's bad date)."""

    kept = "left undated"


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
_EMAIL_NAME = re.compile(r"^\s*[^\s@()]+@[^\s()]+\s*\((.+)\)\s*$")  # "a@b.org (Name)": no two ways to split


# Elements feedparser reads a person from, and then searches for an e-mail address with a regex
# that is quadratic in the length of the text (50 KB took minutes): no real name is this long.
_AUTHOR_FIELD = re.compile(
    rb"(<(?:[\w-]{1,32}:)?(?:author|creator|contributor|publisher|managingEditor|webMaster|name|email)\b[^<>]{0,512}>"
    rb"(?:\s{0,64}<!\[CDATA\[)?)([^<\]]{%d})[^<\]]*" % 512,
    re.IGNORECASE,
)


def _short_author_fields(content: bytes) -> bytes:
    """The feed with every person field cut to 512 bytes (at a UTF-8 character boundary)."""
    if len(content) < 600:
        return content

    def cut(m: re.Match) -> bytes:
        text = m.group(2)
        while text and (text[-1] & 0xC0) == 0x80:  # continuation bytes of a cut character
            text = text[:-1]
        if text and text[-1] >= 0xC0:  # its lead byte
            text = text[:-1]
        return m.group(1) + text

    return _AUTHOR_FIELD.sub(cut, content)


def parse_feed(
    content: bytes,
    source: str,
    config: Config,
    *,
    base_url: str | None = None,
    charset: str | None = None,
    content_type: str | None = None,
    warn: Callable[[Any], None] | None = None,
) -> list[Article]:
    """Parse feed bytes read from ``source`` (a path or URL, used in messages and as ``Article.source``).

    ``base_url`` is where the feed was fetched from (resolves relative links); ``charset``
    is the HTTP header's, which feedparser weighs against the XML declaration; a UTF-8 or
    UTF-16 byte-order mark overrides it.
    Raises SourceError when the document is not a feed at all.
    """
    headers: dict[str, str] = {}
    if charset and _bom_charset(content):
        charset = _bom_charset(content)  # a byte-order mark beats the HTTP header, as in browsers
    if base_url:
        headers["content-location"] = base_url
    if content_type or charset:
        headers["content-type"] = (content_type or "application/xml") + (f"; charset={charset}" if charset else "")
    try:
        content = _short_author_fields(content) if isinstance(content, bytes) else content
        d = feedparser.parse(content, response_headers=headers, sanitize_html=False, resolve_relative_uris=True)
    except Exception as e:  # feedparser is meant never to raise; keep the promise of one-line errors anyway
        raise SourceError(source, f"cannot parse feed: {type(e).__name__}: {e}") from None

    if not d.get("version") and not d.entries:
        reason = ""
        if d.get("bozo"):
            reason = f" ({_bozo_reason(d.get('bozo_exception'))})"
        raise SourceError(source, f"not an RSS, Atom or RDF feed{reason}")
    if d.get("bozo") and warn:
        exc = d.get("bozo_exception")
        if isinstance(exc, (feedparser.CharacterEncodingOverride, feedparser.CharacterEncodingUnknown)):
            warn(f"{source}: wrong character set declared, decoded anyway: {_bozo_reason(exc)}")
        else:
            warn(f"{source}: malformed feed recovered: {_bozo_reason(exc)}")
    if not d.entries and warn:
        warn(f"{source}: feed has no entries")

    feed = d.feed
    site_link = _abs(feed.get("link"), base_url) or base_url
    site_name = sanitize.clean_text(feed.get("title")) or None
    feed_lang = text.normalize_lang(feed.get("language") or (feed.get("title_detail") or {}).get("language"))
    youtube_feed = "yt_channelid" in feed or any("yt_videoid" in e for e in d.entries[:3])

    item_images = _item_images(content) if d.get("version", "").startswith("rss") else []
    articles: list[Article] = []
    notes: list[str] = []
    for index, entry in enumerate(d.entries, start=1):
        budget.check()  # a feed over its time budget is given up (named in the warning)
        item_image = item_images[index - 1] if len(item_images) == len(d.entries) else None
        try:
            articles.append(_entry_article(entry, index, source, config, site_link, site_name, feed_lang, youtube_feed, item_image, notes))
        except SourceError as e:
            if warn:
                warn(e)
        except Exception as e:  # noqa: BLE001 - one hostile entry is skipped, never the whole feed
            if isinstance(e, MemoryError):
                raise
            if warn:
                warn(SourceError(f"{source}: entry {index}", f"unexpected failure ({type(e).__name__}: {e})"))
    if warn:
        for n in notes:
            warn(n)
    _drop_shared_images(articles)
    if d.entries and not articles:
        raise SourceError(source, f"none of the feed's {len(d.entries)} entries has a title and a link")
    return articles


def _drop_shared_images(articles: list[Article]) -> None:
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


def _item_images(content: bytes) -> list[str | None]:
    """Per RSS item, the URL in a non-standard ``<image>`` child (``<image>URL</image>`` or
    ``<image><url|link>URL</…></image>``), which feedparser folds into the channel's image."""
    from lxml import etree

    try:
        parser = etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)
        root = etree.fromstring(content, parser)
    except (etree.Error, ValueError):
        return []
    if root is None:
        return []
    found: list[str | None] = []
    for item in root.iter("{*}item", "item"):
        url = None
        for child in item:
            if child.tag == "image":  # no namespace: itunes:image and media:* are read by feedparser
                url = (child.text or "").strip() or next(
                    ((c.text or "").strip() for c in child if c.tag in {"url", "link"} and (c.text or "").strip()),
                    None,
                )
                break
        found.append(url or None)
    return found


def _bozo_reason(exc: Any) -> str:
    if exc is None:
        return "unknown problem"
    msg = getattr(exc, "getMessage", None)
    text_ = msg() if callable(msg) else str(exc)
    line = getattr(exc, "getLineNumber", None)
    where = f" at line {line()}" if callable(line) and line() else ""
    return f"{' '.join(str(text_).split())}{where}"


def _abs(url: Any, base: str | None) -> str | None:
    if not url or not isinstance(url, str):
        return None
    url = url.strip()
    if url.startswith("//"):
        return "https:" + url
    try:
        if base and not urllib.parse.urlsplit(url).scheme:
            return urllib.parse.urljoin(base, url)
    except ValueError:  # "http://[" and similar: not a usable URL
        return None
    return url


def _is_http(url: str | None) -> bool:
    if not url:
        return False
    try:
        parts = urllib.parse.urlsplit(url)
        return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)
    except ValueError:
        return False


def _entry_article(entry, index, source, config, site_link, site_name, feed_lang, youtube_feed, item_image=None, notes=None) -> Article:
    notes = notes if notes is not None else []
    raw_title = entry.get("title") or ""
    title = sanitize.clean_text(raw_title)

    link = None
    for candidate in [entry.get("link")] + [l.get("href") for l in entry.get("links", []) if l.get("rel") in (None, "alternate")]:
        link = _abs(candidate, site_link)
        if _is_http(link):
            break
        link = None
    guid = entry.get("id") or None
    if link is None and guid and _is_http(_abs(guid, site_link)):
        link = _abs(guid, site_link)

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
        body_raw = "".join(f"<p>{_escape(p)}</p>" for p in re.split(r"\n\s*\n", body_raw) if p.strip())

    base = link or site_link
    body = sanitize.sanitize_html(_drop_pixels(body_raw), base_url=base)
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
            if thumbs and _is_http(thumbs[0].get("url")):
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

    image = _image(entry, body_raw, base, title, item_image)
    link_video = video.parse_video_url(link)
    for v in videos:
        # A Vimeo entry (its link is the video) has no derivable thumbnail: the entry's own picture is one.
        if image and not v.thumbnail_url and link_video and (v.provider, v.id) == (link_video.provider, link_video.id):
            v.thumbnail_url = image.url
    lang = text.normalize_lang((entry.get("title_detail") or {}).get("language")) or feed_lang
    return _article(
        title=title, url=link, guid=guid, authors=authors, published=published, tags=tags, summary=summary,
        body=body, paragraphs=paragraphs, image=image, videos=videos, lang=lang, site_name=site_name, source=source,
    )


def _article(*, tags: list[str], paragraphs: list[str], guid: Any, lang: str | None, **fields: Any) -> Article:
    """The Article for one feed entry: the first tag is the category, read time and direction from the text."""
    return Article(
        **fields,
        tags=tags,
        category=tags[0] if tags else None,
        read_time_minutes=readtime.read_time_minutes(" ".join(paragraphs)),
        lang=lang,
        dir=text.text_direction(lang, fields["title"] + " " + " ".join(paragraphs[:3])),
        guid=str(guid) if guid else None,
    )


def _drop_pixels(html: str) -> str:
    """Remove tracking pixels (1×1 or beacon-named images) from content before it is kept as the body."""

    def keep(m: re.Match) -> str:
        attrs = sanitize.tag_attributes(m.group(0))
        src = (attrs.get("src") or "").strip()
        if not src:
            return m.group(0)
        return "" if _is_pixel(src if "//" in src else "https://x.invalid/" + src.lstrip("/"), _int(attrs.get("width")), _int(attrs.get("height"))) else m.group(0)

    return _IMG_TAG.sub(keep, html) if "<img" in html.lower() else html


def _looks_like_html(value: str) -> bool:
    return bool(re.search(r"<[a-zA-Z][^<>]*>|&[a-zA-Z#0-9]+;", value or ""))


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


def _int(value: Any) -> int | None:
    try:
        v = int(str(value).strip().rstrip("px"))
        return v if v >= 0 else None
    except (TypeError, ValueError):
        return None


def _is_pixel(url: str, width: int | None, height: int | None) -> bool:
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


def _image(entry, body_raw: str, base: str | None, title: str, item_image: str | None = None) -> Image | None:
    """The largest image the entry declares (media:content/thumbnail, enclosures, itunes:image), else the first
    real ``<img>`` in its content."""
    candidates: list[tuple[int, int, int, Image]] = []  # (area, kind preference, file size, image)

    def add(url: Any, width: Any = None, height: Any = None, alt: str = "", pref: int = 0, size: Any = None) -> None:
        url = _abs(url, base)
        if not _is_http(url):
            return
        url = _repair_url(htmllib.unescape(url) if "&" in url else url)
        w, h = _int(width), _int(height)
        if _is_pixel(url, w, h):
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
    site_link = _abs(doc.get("home_page_url") if isinstance(doc.get("home_page_url"), str) else None, base_url) or base_url
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
        try:
            articles.append(_json_item(item, index, source, config, site_link, site_name, feed_lang, feed_authors, notes))
        except SourceError as e:
            if warn:
                warn(e)
        except Exception as e:  # noqa: BLE001 - one hostile item is skipped, never the whole feed
            if isinstance(e, MemoryError):
                raise
            if warn:
                warn(SourceError(f"{source}: item {index}", f"unexpected failure ({type(e).__name__}: {e})"))
    if warn:
        for n in notes:
            warn(n)
    if not items and warn:
        warn(f"{source}: feed has no entries")
    if items and not articles:
        raise SourceError(source, f"none of the feed's {len(items)} entries has a title and a link")
    _drop_shared_images(articles)
    return articles


def _json_item(item: dict, index, source, config, site_link, site_name, feed_lang, feed_authors, notes=None) -> Article:
    def s(key: str) -> str:
        v = item.get(key)
        return v if isinstance(v, str) else ""

    link = next((u for u in (_abs(s("url"), site_link), _abs(s("external_url"), site_link)) if _is_http(u)), None)
    guid = s("id") or str(item.get("id") or "") or None
    if link is None and guid and _is_http(guid):
        link = guid
    body_raw = s("content_html") or "".join(f"<p>{_escape(p)}</p>" for p in re.split(r"\n\s*\n", s("content_text")) if p.strip())
    base = link or site_link
    body = sanitize.sanitize_html(_drop_pixels(body_raw), base_url=base)
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
        url = _abs(s(key), base)
        if _is_http(url) and not _is_pixel(url, None, None):
            image = Image(url=url, alt=title)
            break
    if image is None:
        image = _image({}, body_raw, base, title)
    videos: list[Video] = []
    for v in [video.parse_video_url(link, title)] + video.find_videos(body_raw):
        if v:
            video.add_video(videos, v)
    summary = text.truncate_words(sanitize.clean_text(s("summary")) or text.first_paragraph(paragraphs))
    lang = text.normalize_lang(item.get("language")) or feed_lang
    return _article(
        title=title, url=link, guid=guid, authors=authors, published=published, tags=tags, summary=summary,
        body=body, paragraphs=paragraphs, image=image, videos=videos, lang=lang, site_name=site_name, source=source,
    )
