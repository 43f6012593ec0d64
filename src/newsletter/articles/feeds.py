"""RSS 0.9x/1.0/2.0, RDF and Atom feeds → ``Article`` list, through feedparser.

This module reads the document: the charset (a byte-order mark beats the HTTP header), the
feed's own title, link and language, person fields cut short before feedparser's slow
e-mail scan, RSS items' non-standard ``<image>`` children, and the verdict on malformed
XML (recovered with a warning; a document that is not a feed is a SourceError). Each entry
becomes an Article in ``feed_entries``; its picture is chosen in ``feed_images``. JSON Feed
is read by ``json_feed``.
"""

from __future__ import annotations

import re
from typing import Any, Callable

import feedparser

from ..config import Config
from ..errors import SourceError
from . import budget, sanitize, text
from .feed_entries import add_guarded, entry_article
from .feed_images import drop_shared_images
from .feed_urls import absolute_url
from .model import Article


def _bom_charset(content: bytes) -> str | None:
    """The encoding a UTF-8 or UTF-16 byte-order mark names (UTF-32 marks are left to feedparser)."""
    if content.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return None
    if content.startswith(b"\xef\xbb\xbf"):
        return "utf-8"
    if content.startswith(b"\xff\xfe"):
        return "utf-16le"
    return "utf-16be" if content.startswith(b"\xfe\xff") else None


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
    site_link = absolute_url(feed.get("link"), base_url) or base_url
    site_name = sanitize.clean_text(feed.get("title")) or None
    feed_lang = text.normalize_lang(feed.get("language") or (feed.get("title_detail") or {}).get("language"))
    youtube_feed = "yt_channelid" in feed or any("yt_videoid" in e for e in d.entries[:3])

    item_images = _item_images(content) if d.get("version", "").startswith("rss") else []
    articles: list[Article] = []
    notes: list[str] = []
    for index, entry in enumerate(d.entries, start=1):
        budget.check()  # a feed over its time budget is given up (named in the warning)
        item_image = item_images[index - 1] if len(item_images) == len(d.entries) else None
        add_guarded(articles, lambda: entry_article(entry, index, source, config, site_link, site_name, feed_lang,
                                                    youtube_feed, item_image, notes), f"{source}: entry {index}", warn)
    if warn:
        for n in notes:
            warn(n)
    drop_shared_images(articles)
    if d.entries and not articles:
        raise SourceError(source, f"none of the feed's {len(d.entries)} entries has a title and a link")
    return articles


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
