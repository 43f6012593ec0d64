"""Untrusted article HTML made safe for an email (nh3), and turned into plain text.

Policy: a conservative allow-list of formatting tags; ``script``, ``style``, ``iframe``,
``object``, ``embed``, ``noscript``, ``template``, ``svg`` and form controls are removed
with their content (``form`` itself is dropped but its text kept, since some CMSes wrap a
whole page in one); no ``on*``, ``style`` or ``class`` attributes; links and images only
with ``http``, ``https`` (and ``mailto`` for links) URLs. ``data:`` URLs are refused even
for images on purpose: most mail clients block them and they bloat the message past
Gmail's clipping limit. Relative URLs are resolved against the source's base URL, and
every link gets ``rel="noopener noreferrer"``.
"""

from __future__ import annotations

import html as htmllib
import re
import urllib.parse
from html.parser import HTMLParser
from typing import Literal

import nh3

ALLOWED_TAGS = (set(nh3.ALLOWED_TAGS) - {"area", "map", "nav", "details", "summary", "header", "footer"}) | {"figure", "figcaption"}
REMOVED_WITH_CONTENT = {
    "script", "style", "iframe", "object", "embed", "noscript", "template", "svg", "math",
    "select", "textarea", "button", "applet", "frame", "frameset", "head", "title", "video", "audio",
}
ALLOWED_ATTRIBUTES: dict[str, set[str]] = {
    "*": {"lang", "dir", "title"},
    "a": {"href", "hreflang"},
    "img": {"src", "alt", "width", "height"},
    "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align", "scope"},
    "ol": {"start"},
    "blockquote": {"cite"},
    "q": {"cite"},
    "time": {"datetime"},
    "bdo": {"dir"},
}
SAFE_SCHEMES = {"http", "https", "mailto"}
_URL_ATTRS = {"href", "src", "cite"}


def _attribute_filter(tag: str, attr: str, value: str) -> str | None:
    """Second line of defence after nh3's scheme check: only absolute-safe or relative URLs pass."""
    if attr in _URL_ATTRS:
        v = value.strip()
        scheme = urllib.parse.urlsplit(v).scheme.lower() if ":" in v else ""
        if scheme and scheme not in SAFE_SCHEMES:
            return None
        if tag == "img" and scheme == "mailto":
            return None
        return v
    if attr in {"width", "height"} and not value.strip().rstrip("px").isdigit():
        return None
    return value


# [^<>] and (?<!...): each scan stops at the next tag / starts at a name's first letter (linear).
_LAZY_IMG = re.compile(r"<img\b[^<>]*\bdata-(?:src|lazy-src|original)\s*=[^<>]*>", re.IGNORECASE)
_IMG_ATTR = re.compile(r"""(?<![a-zA-Z_:-])([a-zA-Z_:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))""")


def tag_attributes(tag: str) -> dict[str, str]:
    """The attributes of one start tag as written (``<img src="a" width=1>`` → {"src": "a", "width": "1"})."""
    return {a.group(1).lower(): next((g for g in a.groups()[1:] if g is not None), "") for a in _IMG_ATTR.finditer(tag)}


def _promote_lazy_src(m: re.Match) -> str:
    """Lazy-loaded images keep the real URL in data-src and a placeholder (or nothing) in src: swap them."""
    tag = m.group(0)
    attrs = tag_attributes(tag)
    real = attrs.get("data-src") or attrs.get("data-lazy-src") or attrs.get("data-original")
    src = attrs.get("src", "")
    if not real or (src and not src.startswith("data:") and "placeholder" not in src and "lazy" not in src and "blank" not in src):
        return tag
    tag = re.sub(r"""\ssrc\s*=\s*(?:"[^"]*"|'[^']*'|[^\s>]+)""", "", tag, count=1, flags=re.IGNORECASE)
    return tag[:4] + f' src="{htmllib.escape(htmllib.unescape(real), quote=True)}"' + tag[4:]


def sanitize_html(html: str | None, *, base_url: str | None = None) -> str:
    """Return ``html`` with everything unsafe for an email removed and relative URLs made absolute.

    ``base_url`` (an http(s) URL) resolves relative ``href``/``src``; without one, relative
    URLs are kept as they are.
    """
    if not html:
        return ""
    if "data-" in html:
        html = _LAZY_IMG.sub(_promote_lazy_src, html)
    if base_url and _usable_base(base_url):
        try:
            return _clean(html, ("rewrite_with_base", base_url))
        except ValueError:  # a base nh3's URL parser still refuses (odd host): treat it as no base
            pass
    return _clean(html, "pass_through")


def _clean(html: str, url_relative: Literal["pass_through"] | tuple[Literal["rewrite_with_base"], str]) -> str:
    return nh3.clean(
        html,
        tags=ALLOWED_TAGS,
        clean_content_tags=REMOVED_WITH_CONTENT,
        attributes=ALLOWED_ATTRIBUTES,
        attribute_filter=_attribute_filter,
        strip_comments=True,
        link_rel="noopener noreferrer",
        url_schemes=SAFE_SCHEMES,
        url_relative=url_relative,
    ).strip()


def _usable_base(base_url: str | None) -> bool:
    """An absolute http(s) URL with a host name, the only kind relative URLs are resolved against."""
    if not base_url:
        return False
    try:
        parts = urllib.parse.urlsplit(base_url)
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname) and not any(c.isspace() for c in base_url)


_BLOCK_TAGS = {
    "p", "div", "br", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre",
    "table", "tr", "td", "th", "section", "article", "header", "footer", "figure", "figcaption",
    "hr", "dd", "dt", "dl", "aside", "main", "nav",
}
_BREAK = "\u2029"  # paragraph separator: marks block boundaries while extracting text
_SKIP_TAGS = {"script", "style", "noscript", "template", "head", "title", "svg", "math", "iframe", "object", "embed"}


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in _SKIP_TAGS:
            self.skip += 1
        elif tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)

    def handle_startendtag(self, tag, attrs):
        if tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)

    def handle_endtag(self, tag):
        if tag in _SKIP_TAGS:
            self.skip = max(0, self.skip - 1)
        elif tag in _BLOCK_TAGS:
            self.parts.append(_BREAK)

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def html_paragraphs(html: str | None) -> list[str]:
    """The text blocks of an HTML fragment (paragraphs, list items, headings...), whitespace normalised."""
    if not html:
        return []
    if "<" not in html:
        text = htmllib.unescape(html)
        return [b for b in (" ".join(p.split()) for p in re.split(r"\n\s*\n", text)) if b]
    parser = _TextExtractor()
    try:
        # Through html5ever (nh3) first: the standard library's HTMLParser is quadratic on
        # unterminated constructs ("<a " x 10,000 took 30 s, "<!--" x 10,000 4 s); what html5ever
        # serializes is well formed, which HTMLParser reads in one pass. Only block tags (for the
        # paragraph breaks) and the skipped ones (with their content) matter here.
        html = nh3.clean(html, tags=_BLOCK_TAGS - _SKIP_TAGS, clean_content_tags=_SKIP_TAGS, attributes={},
                         strip_comments=True, link_rel=None)
        parser.feed(html)
        parser.close()
    except Exception:  # HTMLParser is lenient; anything it still chokes on yields no text
        return []
    # Blocks end at block-level tags only: a newline inside a paragraph is just a space.
    blocks = "".join(parser.parts).split(_BREAK)
    return [b for b in (" ".join(p.split()) for p in blocks) if b]


def html_to_text(html: str | None) -> str:
    """Plain text of an HTML fragment: entities decoded, tags dropped, one line per block."""
    return "\n".join(html_paragraphs(html))


def clean_text(value: str | None) -> str:
    """A one-line plain string from something that may hold HTML tags or entities (titles, names)."""
    if not value:
        return ""
    if "<" in value and ">" in value:
        value = " ".join(html_paragraphs(value))
    else:
        value = htmllib.unescape(value)
    return " ".join(value.split())
