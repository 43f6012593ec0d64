"""HTML article pages → ``Article``.

``parse_page`` decodes the bytes (a BOM, then the charset from the caller's HTTP header,
then ``<meta charset>``, then sniffing), refuses what is not an HTML page, ranks the
page's metadata signals (see ``page_meta``), and extracts the main text with
trafilatura for the body, the read time and a fallback summary. Trafilatura is a
well-kept extractor with a good record on main text; its own metadata extraction
is measured against ours in ``benchmarks/corpus_accuracy.py`` and ours is used
because it scores higher there.
"""

from __future__ import annotations

import codecs
import copy
import logging
import re
from urllib.parse import urlsplit

from ..errors import SourceError
from . import budget
from . import page_meta as pm
from .bylines import best_authors, byline_text
from .model import Article, Image, Video
from .page_signals import PageSignals, as_list, clean_text, collect, ld_name, ld_types, usable_base
from .text import skip_prolog, strip_site_tail

SUMMARY_CHARS = 300

# Signatures of common binary formats someone may point a source at by mistake.
_MAGIC = (
    (b"%PDF-", "a PDF document"), (b"\x89PNG", "a PNG image"), (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"), (b"PK\x03\x04", "a ZIP archive"), (b"\x1f\x8b", "gzip-compressed data"),
    (b"RIFF", "a RIFF media file"), (b"\x7fELF", "an executable"), (b"ID3", "an MP3 file"),
    (b"OggS", "an Ogg media file"), (b"\x00\x00\x00\x18ftyp", "an MP4 video"), (b"\x00\x00\x00\x20ftyp", "an MP4 video"),
    (b"BZh", "bzip2-compressed data"), (b"\xfd7zXZ", "xz-compressed data"), (b"SQLite format 3", "an SQLite database"),
)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"), (codecs.BOM_UTF32_LE, "utf-32-le"), (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# [^<>]: a scan for "charset" stops at the next tag, so "<meta<meta<meta..." is not quadratic.
_META_CHARSET = re.compile(rb"""<meta\b[^<>]{0,2048}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]+)""", re.I)
_HTML_MARKUP = re.compile(
    r"<\s*(?:!doctype\s+html|html|head|body|title|meta|article|main|section|div|p|h[1-6]|span|a|table|ul|ol|img|br|header|nav)\b",
    re.I,
)
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ufffe\uffff]")
_FEED_ROOT = re.compile(r"<\s*(?:rss|feed|rdf:RDF)\b", re.I)  # matched after text.skip_prolog


def _codec(name: str | None) -> str | None:
    """A Python codec for a declared charset, with the web's aliases (latin-1 means windows-1252)."""
    if not name:
        return None
    name = name.strip().strip("\"'").lower()
    if name in {"iso-8859-1", "latin1", "latin-1", "us-ascii", "ascii", "iso8859-1", "l1"}:
        name = "cp1252"
    elif name in {"x-sjis", "shift-jis"}:
        name = "shift_jis"
    elif name in {"gb2312", "gbk", "x-gbk"}:
        name = "gb18030"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def _not_really_utf8(content: bytes) -> bool:
    """True when bytes declared UTF-8 hold no valid multi-byte sequence but do hold invalid ones:
    a mislabelled legacy page, not a UTF-8 page with a damaged byte or two."""
    text = content.decode("utf-8", errors="replace")
    if text.count("\ufffd") < 2:  # one odd byte is too little evidence to overrule a declaration
        return False
    return not any(ord(ch) > 127 and ch != "\ufffd" for ch in text)


def _sniff(content: bytes) -> str | None:
    # chardet recognised Latin-1/2, Cyrillic, Greek, Shift_JIS and GB18030 samples where
    # charset-normalizer mistook French for cp1250.
    try:
        import chardet

        return _codec(chardet.detect(content[:65_536]).get("encoding"))
    except Exception:  # noqa: BLE001 - sniffing is best effort; callers have a fallback
        return None


def _really_utf8(content: bytes) -> bool:
    """True when the bytes are valid UTF-8 holding multi-byte sequences: text re-encoded to UTF-8
    by a server that left the old ``<meta charset>`` behind (legacy bytes are almost never valid
    UTF-8 once they hold any non-ASCII character)."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return any(ord(ch) > 127 for ch in text)


def decode_html(content: bytes, charset: str | None = None) -> tuple[str, str]:
    """(text, codec name): a BOM, else the HTTP charset, else ``<meta charset>``, else a sniffed guess.
    (``decode_html_noting`` also says when a declared legacy charset was overruled.)"""
    text, codec, _ = decode_html_noting(content, charset)
    return text, codec


def decode_html_noting(content: bytes, charset: str | None = None) -> tuple[str, str, str | None]:
    """(text, codec name, note): the rules of ``decode_html``; ``note`` says when a declared
    legacy charset was overruled because the bytes are plainly UTF-8.

    The byte-order mark beats the HTTP header, as in browsers (the HTML standard's encoding
    sniffing): a server's default ``charset=iso-8859-1`` is a weaker claim than the bytes'
    own mark. A page declared UTF-8 (by the header or the meta tag) whose bytes are plainly not
    UTF-8 is mislabelled; the next declaration, then the guess, is used instead. The other way
    round too: a page declared in a legacy charset (gb2312, windows-1251...) whose bytes are
    valid UTF-8 with non-ASCII text was re-encoded by its server, and is read as UTF-8 (with a
    note). Undecodable bytes become U+FFFD rather than errors: a page with a few broken bytes
    is still a page.
    """
    for bom, name in _BOMS:
        if content.startswith(bom):
            return content[len(bom):].decode(name, errors="replace"), name, None
    header = _codec(charset)
    if header and not (header == "utf-8" and _not_really_utf8(content)):
        if header != "utf-8" and not header.startswith(("utf-16", "utf-32")) and _really_utf8(content):
            return content.decode("utf-8").lstrip("\ufeff"), "utf-8", _overruled("the HTTP header", charset)
        return content.decode(header, errors="replace").lstrip("\ufeff"), header, None
    m = _META_CHARSET.search(content[:16_384])  # browsers look at 1 KB; real pages put it later
    declared = m.group(1).decode("ascii", "replace") if m else None
    meta = _codec(declared)
    if meta and meta.startswith(("utf-16", "utf-32")):
        meta = "utf-8"  # a meta tag readable as ASCII means the bytes are not UTF-16
    if meta and meta != header and not (meta == "utf-8" and _not_really_utf8(content)):
        if meta != "utf-8" and _really_utf8(content):
            return content.decode("utf-8"), "utf-8", _overruled("<meta charset>", declared)
        return content.decode(meta, errors="replace"), meta, None
    try:
        return content.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError:
        pass
    guess = _sniff(content)
    if guess:
        return content.decode(guess, errors="replace"), guess, None
    return content.decode("cp1252", errors="replace"), "cp1252", None


def _overruled(where: str, declared: str | None) -> str:
    return f"{where} says {declared!s}, but the bytes are UTF-8 (re-encoded by the server?); read as UTF-8"


def _check_bytes(content: bytes, url: str, charset: str | None) -> None:
    if not isinstance(content, (bytes, bytearray)):
        raise SourceError(url, "page content must be bytes")
    if not content.strip():
        raise SourceError(url, "empty page")
    for magic, what in _MAGIC:
        if content.startswith(magic):
            raise SourceError(url, f"not an HTML page (looks like {what})")
    head = content[:2048]
    utf16 = any(content.startswith(b) for b, n in _BOMS if n.startswith(("utf-16", "utf-32"))) or (
        (_codec(charset) or "").startswith(("utf-16", "utf-32")))
    if not utf16 and head.count(b"\x00") > 0:
        raise SourceError(url, "not an HTML page (binary data)")


def _check_text(text: str, url: str) -> None:
    sample = text[:200_000]
    if not sample.strip():
        raise SourceError(url, "empty page")
    if _FEED_ROOT.match(sample, skip_prolog(sample)):
        raise SourceError(url, "not an HTML page (it is an RSS/Atom feed)")
    if not _HTML_MARKUP.search(sample):
        raise SourceError(url, "not an HTML page (no HTML markup found)")
    bad = sample.count("\ufffd")
    if bad > 200 and bad > len(sample) // 10:
        raise SourceError(url, "not an HTML page (mostly undecodable bytes)")


def _parse_tree(text: str, url: str):
    import lxml.etree
    import lxml.html

    text = re.sub(r"^\s*<\?xml[^>]*\?>", "", text)  # lxml refuses str input with an encoding declaration
    # lxml (like XML) refuses control characters in text; they are never content.
    text = _XML_ILLEGAL.sub("", text)
    try:
        parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, huge_tree=False)
        doc = lxml.html.document_fromstring(text, parser=parser)
    except (lxml.etree.ParserError, lxml.etree.XMLSyntaxError, ValueError) as e:
        raise SourceError(url, f"cannot parse HTML ({e})") from None
    if doc is None:
        raise SourceError(url, "empty page")
    return doc


_HIDDEN = (
    '//*[@hidden] | //*[@aria-hidden="true"]'
    ' | //*[contains(translate(@style, " ", ""), "display:none")]'
    ' | //*[contains(translate(@style, " ", ""), "visibility:hidden")]'
)


def _drop_hidden(doc) -> None:
    """Remove what is never article text: what the page hides from readers (``hidden``,
    ``aria-hidden``, ``display:none``) and navigation menus."""
    try:
        hidden = doc.xpath(_HIDDEN + ' | //nav | //*[@role="navigation"]')
    except Exception:  # noqa: BLE001
        return
    for el in hidden:
        if el.tag in ("html", "body") or el.getparent() is None:
            continue
        el.drop_tree()


# trafilatura's time grows faster than the page: about 1.3 s for a 10,000-element Wikipedia
# article, 4.6 s for 24,000 elements on this project's 2-core machine. Past these sizes it
# runs without its fallback comparison, and past the second one the plain paragraph
# extraction below is used, so a huge page costs seconds, never minutes.
FAST_EXTRACTION_ELEMENTS = 12_000
MAX_EXTRACTION_ELEMENTS = 40_000


def _main_html(doc, url: str, elements: int) -> str:
    """The article's main content as HTML, by trafilatura (no metadata, no comments)."""
    if elements > MAX_EXTRACTION_ELEMENTS:
        return ""
    import trafilatura

    logging.getLogger("trafilatura").setLevel(logging.ERROR)
    try:
        out = trafilatura.extract(
            doc, url=url if urlsplit(url).scheme in {"http", "https"} else None, output_format="html",
            fast=elements > FAST_EXTRACTION_ELEMENTS,
            include_comments=False, include_images=True, include_links=True, include_tables=True,
            include_formatting=True, with_metadata=False, deduplicate=False,
        )
    except MemoryError:
        raise
    except Exception:  # noqa: BLE001 - an extractor failure (even RecursionError) leaves the plain paragraphs
        out = None
    return out or ""


def _fallback_html(container) -> str:
    """Paragraph-level HTML from the article container when trafilatura finds nothing."""
    for el in container.xpath(".//script|.//style|.//nav|.//noscript|.//template"):
        el.drop_tree()
    paras = [clean_text(p.text_content(), markup=False) for p in container.xpath(".//p|.//li|.//h2|.//h3|.//blockquote")]
    paras = [p for p in paras if p]
    if not paras:
        text = clean_text(container.text_content(), markup=False)
        paras = [text] if text else []
    return "".join(f"<p>{_esc(p)}</p>" for p in paras)


def _esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


_LEADING_HEADING = re.compile(r"^\s*<h([1-3])\b[^>]*>(.*?)</h\1>\s*", re.S | re.I)


def _without_leading_title(body: str, title: str) -> str:
    """The body without a first heading that repeats the headline (the card shows it already)."""
    m = _LEADING_HEADING.match(body)
    if m:
        from .sanitize import clean_text

        if clean_text(m.group(2)).casefold() == title.casefold():
            return body[m.end():]
    return body


def _first_paragraph(body: str, title: str, authors: list[str]) -> str:
    """Text of the first ``<p>`` of the extracted body that is prose: not the title, not the byline."""
    import lxml.html

    if "<p" not in body:
        return ""
    try:
        frag = lxml.html.fragment_fromstring(body, create_parent="div")
    except Exception:  # noqa: BLE001 - sanitized HTML parses; this is belt and braces
        return ""
    for br in frag.iter("br"):
        br.tail = " " + (br.tail or "")
    names = {a.casefold() for a in authors}
    for p in frag.iter("p"):
        text = clean_text(p.text_content(), markup=False)
        if not text or text == title:
            continue
        if len(text) < 80 and (byline_text(text).casefold() in names or re.match(r"(?i)^by\s", text)):
            continue
        return text
    return ""


def cut_summary(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` cut at a word boundary before ``limit`` characters, with an ellipsis when cut."""
    text = clean_text(text, markup=False)  # already cleaned; "<div>" here is prose
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0].rstrip(" ,;:-–—")
    return (cut or text[:limit]) + "…"


def _videos(sig: PageSignals, doc, container) -> list[Video]:
    """Videos embedded (iframes, og:video, JSON-LD VideoObject) or linked in the page."""
    from .video import parse_video_url as find
    from .video import add_video

    # (url, title): the title a card can show, when the page names the video.
    urls: list[tuple[str, str | None]] = []
    og_title = sig.first("og:video:title") or None
    urls += [(u, og_title) for u in sig.all("og:video:url", "og:video:secure_url", "og:video", "twitter:player")]
    for obj in sig.article_ld + sig.other_ld:
        for v in as_list(obj.get("video")) + ([obj] if "videoobject" in ld_types(obj) else []):
            if isinstance(v, dict):
                name = ld_name(v.get("name")) or None
                urls += [(u, name) for u in (v.get("embedUrl"), v.get("contentUrl"), v.get("url")) if isinstance(u, str)]
    for el in container.iter("iframe", "embed", "a", "video", "source"):
        title = clean_text(el.get("title") or (el.text_content() if el.tag == "a" else "")) or None
        if title and (title.lower().startswith(("http", "www.")) or len(title) > 150 or len(title.split()) < 2):
            title = None  # a bare URL or a one-word "YouTube" link text is not the video's title
        for attr in ("src", "data-src", "href"):
            if el.get(attr):
                urls.append((el.get(attr), title))
    out: list[Video] = []
    for u, title in urls:
        absu = sig.absolute(u)
        if not absu:
            continue
        try:
            v = find(absu, title)
        except Exception:  # noqa: BLE001 - an odd URL is just not a video
            v = None
        if v is not None:
            add_video(out, v)
    return out[:10]


INTERNAL_ERROR = "unexpected failure while reading the page"


def parse_page(content: bytes, url: str, *, charset: str | None = None, warn=None) -> Article:
    """Parse an HTML article page read from ``url`` (an http(s) URL or a file path) into an ``Article``.

    ``charset`` is the one the HTTP response declared, if any. Raises ``SourceError`` naming
    ``url`` for a page that is empty, binary, not HTML, or has no title at all. ``warn``
    receives notes (a declared charset overruled).
    """
    try:
        return _parse_page(content, url, charset, warn)
    except (SourceError, MemoryError):
        raise
    except Exception as e:  # noqa: BLE001
        # Untrusted input must never become a traceback; the fuzz tests treat this message as a bug.
        raise SourceError(url, f"{INTERNAL_ERROR} ({type(e).__name__}: {e})") from e


def _parse_page(content: bytes, url: str, charset: str | None, warn=None) -> Article:
    _check_bytes(content, url, charset)
    text, _, note = decode_html_noting(bytes(content), charset)
    if note and warn is not None:
        warn(f"{url}: {note}")
    _check_text(text, url)
    budget.check()
    doc = _parse_tree(text, url)
    budget.check()

    sig = collect(doc, url)
    container = pm.article_container(doc)
    site_names = pm.best_site_names(sig)
    title = pm.best_title(sig, doc, site_names)
    if not title:
        raise SourceError(url, "page has no title (no <title>, <h1>, OpenGraph or JSON-LD headline)")
    lang = pm.best_lang(sig, container)
    direction = pm.best_dir(doc, container, lang)
    authors = best_authors(sig, doc, container)
    published = pm.best_published(sig, doc, container)
    canonical = pm.best_canonical(sig)
    image = pm.best_image(sig, doc, container)

    from .readtime import read_time_minutes
    from .sanitize import html_paragraphs, sanitize_html

    videos = _videos(sig, doc, container)
    budget.check()
    _drop_hidden(doc)
    base = sig.base if usable_base(sig.base) else None
    if base:
        # Resolve against <base href> here: trafilatura would resolve against the page URL.
        try:
            doc.make_links_absolute(base, resolve_base_href=False, handle_failures="discard")
        except ValueError:
            pass
    main = _main_html(copy.deepcopy(doc), url, sum(1 for _ in doc.iter()))
    budget.check()
    if not main.strip():
        main = _fallback_html(container)
    body = sanitize_html(main, base_url=base)
    budget.check()
    headline = strip_site_tail(title, site_names)  # the title as a reader sees it on the page
    body = _without_leading_title(body, headline)
    paragraphs = html_paragraphs(body)
    main_text = "\n".join(paragraphs)
    summary = cut_summary(pm.best_description(sig) or _first_paragraph(body, headline, authors) or next(
        (p for p in paragraphs if p not in (title, headline)), ""))

    return Article(
        title=title,
        url=canonical,
        authors=authors,
        published=published,
        category=pm.best_category(sig),
        tags=pm.best_tags(sig),
        summary=summary,
        body=body,
        image=Image(url=image[0], alt=image[1], width=image[2], height=image[3]) if image else None,
        videos=videos,
        read_time_minutes=read_time_minutes(main_text),
        lang=lang,
        dir=direction,
        site_name=site_names[0] if site_names else None,
        source=url,
    )
