"""What an HTML article page declares about itself, gathered once: ``PageSignals``.

A page names its title, authors, dates and pictures in several overlapping ways: schema.org
JSON-LD (``@graph``, ``mainEntity`` and ``@id`` references included), OpenGraph and
``article:*`` meta, Twitter cards, Dublin Core, Parse.ly and Sailthru meta, ``<link rel>``
and ``<html lang>``. :func:`collect` reads all of them from a parsed lxml document into one
``PageSignals``; ``page_meta`` and ``bylines`` rank them per field. :func:`clean_text` is the
one normalisation every value read from a page goes through.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

# schema.org types whose properties describe the article itself.
_ARTICLE_TYPES = {
    "article", "newsarticle", "blogposting", "report", "scholarlyarticle", "techarticle",
    "socialmediaposting", "liveblogposting", "discussionforumposting", "reportagenewsarticle",
    "analysisnewsarticle", "opinionnewsarticle", "reviewnewsarticle", "backgroundnewsarticle",
    "askpublicnewsarticle", "satiricalarticle", "medicalscholarlyarticle", "advertisercontentarticle",
    "review", "criticreview", "posting",
}

_WS = re.compile(r"\s+")
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]*|[A-Za-z][A-Za-z0-9]{1,31});")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_PLACEHOLDERS = {"null", "nil", "none", "undefined", "n/a", "unknown", "-"}


def clean_text(value: Any, *, markup: bool = True) -> str:
    """Text with entities decoded (also double-escaped ones), whitespace collapsed, NFC.

    ``markup`` strips tags found in the value, for meta and attribute values; text taken
    from the page's elements is already tag-free, and a "<div>" in it is words about HTML.
    """
    if value is None:
        return ""
    s = str(value)
    # Attribute values arrive decoded once by the parser; CMSs often escape twice.
    for _ in range(2):
        if not _ENTITY.search(s):
            break
        s = html.unescape(s)
    if markup and "<" in s:  # markup inside a meta value or an alt attribute
        s = _TAG.sub(" ", s)
    s = s.replace("\x00", "").replace("\u00a0", " ").replace("\u200b", "").replace("\ufeff", "")
    # Control characters go; format characters stay (the zero-width non-joiner is spelling in Persian).
    s = _CONTROL.sub(" ", s)
    return unicodedata.normalize("NFC", _WS.sub(" ", s)).strip()


def text_of(el) -> str:
    """An element's text, cleaned (no markup stripping: element text is already tag-free); "" when unreadable."""
    try:
        return clean_text(el.text_content(), markup=False)
    except (ValueError, TypeError):
        return ""


def as_list(value: Any) -> list:
    """A JSON-LD value as a list: one value or many are written alike in JSON-LD."""
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def ld_types(obj: dict) -> set[str]:
    """A JSON-LD object's ``@type`` names, lower-case and without a schema.org prefix."""
    out = set()
    for t in as_list(obj.get("@type")):
        if isinstance(t, str):
            out.add(t.rsplit("/", 1)[-1].rsplit(":", 1)[-1].lower())
    return out


def _load_jsonld(text: str) -> Any:
    text = text.strip()
    text = re.sub(r"^\s*(?://\s*)?<!\[CDATA\[|(?://\s*)?\]\]>\s*$", "", text)
    text = re.sub(r"^\s*<!--|-->\s*$", "", text).strip().rstrip(";")
    if not text:
        return None
    try:
        return json.loads(text, strict=False)
    except ValueError:
        pass
    try:  # trailing junk after a valid object, or several objects glued together
        obj, _ = json.JSONDecoder(strict=False).raw_decode(text)
        return obj
    except ValueError:
        return None


def _walk_jsonld(data: Any, depth: int = 0) -> Iterable[tuple[int, dict]]:
    """(depth, object) for every object of a JSON-LD block worth looking at: top level, arrays,
    ``@graph``, ``mainEntity``. Lists of other articles (``itemListElement``) are not the page's."""
    if depth > 4:
        return
    for item in as_list(data):
        if not isinstance(item, dict):
            continue
        yield depth, item
        for key, step in (("@graph", 0), ("mainEntity", 1), ("mainEntityOfPage", 1)):
            sub = item.get(key)
            if isinstance(sub, (dict, list)):
                yield from _walk_jsonld(sub, depth + step)


def _meta_key(name: str) -> str:
    key = name.strip().lower()
    for prefix in ("dc.", "dcterms.", "dcterm.", "dcterm:"):
        if key.startswith(prefix):
            key = ("dcterms:" if prefix.startswith("dcterm") else "dc:") + key[len(prefix):]
    return key



def ld_name(value: Any) -> str:
    """The name a JSON-LD value gives: a string, an object's ``name`` or ``@value``, the first of a list."""
    if isinstance(value, dict):
        return clean_text(value.get("name") or value.get("@value") or "")
    if isinstance(value, list):
        for v in value:
            name = ld_name(v)
            if name:
                return name
        return ""
    return clean_text(value) if isinstance(value, str) else ""


@dataclass
class PageSignals:
    """Everything the page declares about itself, collected in one pass."""

    url: str
    base: str
    meta: dict[str, list[str]] = field(default_factory=dict)
    article_ld: list[dict] = field(default_factory=list)
    other_ld: list[dict] = field(default_factory=list)
    ld_ids: dict[str, dict] = field(default_factory=dict)  # "@id" -> object, for references in a @graph
    html_lang: str = ""
    title_tag: str = ""
    links: dict[str, list[str]] = field(default_factory=dict)

    def first(self, *keys: str) -> str:
        """The first non-empty meta value among ``keys``, in the order given."""
        for key in keys:
            for value in self.meta.get(key, ()):
                value = clean_text(value)
                if value and value.lower() not in _PLACEHOLDERS:
                    return value
        return ""

    def all(self, *keys: str) -> list[str]:
        """Every non-empty meta value among ``keys``, in the order given."""
        out: list[str] = []
        for key in keys:
            out.extend(v for v in (clean_text(x) for x in self.meta.get(key, ())) if v and v.lower() not in _PLACEHOLDERS)
        return out

    def ld(self, *keys: str) -> Any:
        """The first value among ``keys`` of the article's JSON-LD objects, ``{"@id": ...}`` references resolved."""
        for obj in self.article_ld:
            for key in keys:
                value = obj.get(key)
                if value not in (None, "", [], {}):
                    return self.resolve(value)
        return None

    def resolve(self, value: Any) -> Any:
        """``value`` with ``{"@id": ...}`` references to objects elsewhere on the page replaced by those objects."""
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict) and set(value) <= {"@id", "@type"} and value.get("@id") in self.ld_ids:
            return self.ld_ids[value["@id"]]
        return value

    def absolute(self, href: str | None) -> str | None:
        """``href`` resolved against the page's base, when it becomes an http(s) or file URL; else None."""
        href = (href or "").strip()
        if not href:
            return None
        try:
            out = urljoin(self.base, href)
        except ValueError:
            return None
        return out if urlsplit(out).scheme in {"http", "https", "file"} else None


def usable_base(url: str) -> bool:
    """True for an http(s) URL with a valid host, the only kind relative links are resolved against."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    if parts.scheme.lower() not in {"http", "https"} or not host:
        return False
    try:
        host.encode("idna")
    except UnicodeError:
        return False
    return not re.search(r"[\s<>\\^`{|}]", parts.netloc)


def collect(doc, url: str) -> PageSignals:
    """Gather every metadata signal from a parsed lxml HTML document."""
    base = url
    for el in doc.iter("base"):
        href = (el.get("href") or "").strip()
        if href:
            try:
                joined = urljoin(url, href)
            except ValueError:
                joined = ""
            if usable_base(joined):  # a broken <base> is ignored, as browsers do
                base = joined
            break
    sig = PageSignals(url=url, base=base)

    root = doc.getroottree().getroot() if hasattr(doc, "getroottree") else doc
    sig.html_lang = (root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang")
                     or root.get("xml:lang") or "").strip()

    for el in doc.iter("meta"):
        content = el.get("content")
        if content is None:
            content = el.get("value")
        if content is None:
            continue
        names = " ".join(el.get(a) or "" for a in ("property", "name", "itemprop", "http-equiv"))
        for name in names.split():
            sig.meta.setdefault(_meta_key(name), []).append(content)

    for el in doc.iter("title"):
        # Only the document title, not an SVG <title> somewhere in the body.
        parent = el.getparent()
        if parent is not None and parent.tag in ("head", "html"):
            sig.title_tag = text_of(el)
            break
    if not sig.title_tag:
        for el in doc.iter("title"):
            parent = el.getparent()
            if parent is None or parent.tag != "svg":
                sig.title_tag = text_of(el)
                if sig.title_tag:
                    break

    for el in doc.iter("link"):
        rels = (el.get("rel") or "").lower().split()
        href = el.get("href")
        for rel in rels:
            if href:
                sig.links.setdefault(rel, []).append(href)

    if not usable_base(sig.base):
        # A saved page (a local file) still says where it lives: resolve against that.
        for href in sig.links.get("canonical", [])[:1] + sig.meta.get("og:url", [])[:1]:
            href = clean_text(href)
            if usable_base(href):
                sig.base = href
                break

    articles: list[tuple[int, dict]] = []
    for el in doc.iter("script"):
        if (el.get("type") or "").strip().lower() != "application/ld+json":
            continue
        data = _load_jsonld(el.text or "")
        for depth, obj in _walk_jsonld(data):
            if isinstance(obj.get("@id"), str) and len(obj) > 1:
                sig.ld_ids.setdefault(obj["@id"], obj)
            types = ld_types(obj)
            if types & _ARTICLE_TYPES or any(t.endswith("article") for t in types):
                articles.append((depth, obj))
            else:
                sig.other_ld.append(obj)
    # The page's own article is the least nested one (a @graph member counts as top level).
    sig.article_ld = [obj for _, obj in sorted(articles, key=lambda pair: pair[0])]
    return sig
