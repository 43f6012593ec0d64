"""Metadata signals of an HTML article page, gathered and ranked.

A page says who wrote it, when, and what it is called in several overlapping ways:
schema.org JSON-LD, OpenGraph and ``article:*`` meta, Twitter cards, Dublin Core,
Parse.ly and Sailthru meta, ``<time datetime>``, ``rel=author`` links and the visible
byline. ``PageSignals`` collects them once from a parsed lxml document; the ``best_*``
functions pick the most trustworthy value for each field, curated machine-readable
signals first and guesses from the visible page last.
"""

from __future__ import annotations

import html
import json
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable
from urllib.parse import urljoin, urlsplit

from . import credits
from .text import _TITLE_SEPARATORS, strip_site_tail

# schema.org types whose properties describe the article itself.
_ARTICLE_TYPES = {
    "article", "newsarticle", "blogposting", "report", "scholarlyarticle", "techarticle",
    "socialmediaposting", "liveblogposting", "discussionforumposting", "reportagenewsarticle",
    "analysisnewsarticle", "opinionnewsarticle", "reviewnewsarticle", "backgroundnewsarticle",
    "askpublicnewsarticle", "satiricalarticle", "medicalscholarlyarticle", "advertisercontentarticle",
    "review", "criticreview", "posting",
}
_SITE_TYPES = {"website", "organization", "newsmediaorganization", "corporation"}

_WS = re.compile(r"\s+")
_ENTITY = re.compile(r"&(#[0-9]+|#[xX][0-9a-fA-F]*|[A-Za-z][A-Za-z0-9]{1,31});")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")
_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9-]*(?:\s[^<>]*)?/?>")
_PLACEHOLDERS = {"null", "nil", "none", "undefined", "n/a", "unknown", "-"}
_NOT_A_PICTURE = re.compile(r"(?:^|[/_.-])(?:logo|icon|favicon|avatar|sprite|spacer|pixel|blank|placeholder)s?(?:[/_.-]|\d|$)", re.I)
_BYLINE_HINT = re.compile(r"byline|author|writtenby|p-author|contributor|dateline", re.I)
_BY_PREFIX = re.compile(r"^\s*(?:by|par|von|por|di|door|av|przez|от|автор)\s*[:\-]?\s+", re.I)
_URLISH = re.compile(r"^(?:https?:|www\.|//)|^[\w.-]+\.(?:com|org|net)/", re.I)
_RTL_LANGS = {"ar", "he", "iw", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb", "syr"}


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


def _text_of(el) -> str:
    try:
        return clean_text(el.text_content(), markup=False)
    except (ValueError, TypeError):
        return ""


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _types(obj: dict) -> set[str]:
    out = set()
    for t in _as_list(obj.get("@type")):
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
    for item in _as_list(data):
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
        out = []
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
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict) and set(value) <= {"@id", "@type"} and value.get("@id") in self.ld_ids:
            return self.ld_ids[value["@id"]]
        return value

    def absolute(self, href: str | None) -> str | None:
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
            sig.title_tag = _text_of(el)
            break
    if not sig.title_tag:
        for el in doc.iter("title"):
            parent = el.getparent()
            if parent is None or parent.tag != "svg":
                sig.title_tag = _text_of(el)
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
            types = _types(obj)
            if types & _ARTICLE_TYPES or any(t.endswith("article") for t in types):
                articles.append((depth, obj))
            else:
                sig.other_ld.append(obj)
    # The page's own article is the least nested one (a @graph member counts as top level).
    sig.article_ld = [obj for _, obj in sorted(articles, key=lambda pair: pair[0])]
    return sig


# -- titles -----------------------------------------------------------------------------


def _ld_name(value: Any) -> str:
    if isinstance(value, dict):
        return clean_text(value.get("name") or value.get("@value") or "")
    if isinstance(value, list):
        for v in value:
            name = _ld_name(v)
            if name:
                return name
        return ""
    return clean_text(value) if isinstance(value, str) else ""


def _split_title(title: str) -> list[str]:
    for sep in _TITLE_SEPARATORS:
        if sep in title:
            return [p.strip() for p in title.split(sep)]
    return [title]


def _title_from_title_tag(title: str, h1s: list[str]) -> str:
    """The article's part of a document ``<title>``, which usually carries the site's name too.

    The site's part follows the last separator ("Story – Site"); when what is left is
    too short to be a headline the separator was part of the headline and is kept.
    A heading on the page that matches a piece of the title confirms which part it is.
    """
    if not title:
        return ""
    for h in h1s:
        if h and h == title:
            return title
    parts = _split_title(title)
    if len(parts) > 1:
        for h in h1s:
            if h and h == parts[0] and len(h.split()) >= 2:
                return h
        sep = next(s for s in _TITLE_SEPARATORS if s in title)
        head = title.rpartition(sep)[0].strip()
        if len(head.split()) >= 3:
            return head
        return title
    return title


def _similar(a: str, b: str) -> float:
    wa, wb = set(a.lower().split()), set(b.lower().split())
    return len(wa & wb) / len(wa | wb) if wa and wb else 0.0


def _ld_headline(sig: PageSignals) -> str:
    """JSON-LD ``headline`` or ``name``; when both exist and differ, the one the page's title agrees with.

    Some publishers put a tagline in ``headline`` (Wikipedia: "constitutional monarchy in Oceania")
    and the article's name in ``name``; the document title shows which one readers see.
    """
    headline, name = _ld_name(sig.ld("headline")), _ld_name(sig.ld("name"))
    if headline and name and headline != name:
        shown = sig.first("og:title", "twitter:title") or sig.title_tag
        if shown and _similar(name, shown) > _similar(headline, shown):
            return name
    return headline or name


def _untruncated(headline: str, sig: PageSignals) -> str:
    """A JSON-LD headline cut short with an ellipsis (some CMSs cap it at 110 characters) is
    replaced by the page's own longer title that it is the start of."""
    stem = headline.rstrip(".…").rstrip()
    if not headline or stem == headline:
        return headline
    for other in (sig.first("og:title"), sig.first("twitter:title"), sig.title_tag):
        if other and len(other) > len(stem) and other.startswith(stem):
            return other
    return headline


def best_title(sig: PageSignals, doc, site_names: list[str]) -> str:
    """The headline: JSON-LD, Dublin Core, OpenGraph, Twitter, Parse.ly, Sailthru, then ``<title>``/``<h1>``.

    A title the publisher declared in metadata is kept as declared, " | Site" tail included (the
    digest card drops that tail when it shows the title, see ``compose.cards``); a document
    ``<title>`` is a browser-tab label, so its site part is dropped here.
    """
    title = _untruncated(_ld_headline(sig), sig) or sig.first(
        "dc:title", "dcterms:title", "og:title", "twitter:title", "parsely-title", "sailthru.title", "title")
    if title:
        return title
    h1s = [t for t in (_text_of(h) for h in doc.iter("h1")) if t][:3]
    title = _title_from_title_tag(sig.title_tag, h1s) or (h1s[0] if h1s else "")
    return strip_site_tail(title, site_names)


# -- site, lang, dir --------------------------------------------------------------------


def best_site_names(sig: PageSignals) -> list[str]:
    """Names the site goes by, best first: JSON-LD publisher, og:site_name, JSON-LD WebSite, app name."""
    # The article's publisher names the publication even on a shared platform
    # (a Medium publication, not "Medium"); og:site_name often carries a slogan too.
    names = [_ld_name(sig.ld("publisher")), sig.first("og:site_name")]
    for obj in sig.other_ld:
        if _types(obj) & _SITE_TYPES:
            names.append(_ld_name(obj))
    names.append(sig.first("dc:publisher", "dcterms:publisher"))
    names.append(sig.first("application-name", "apple-mobile-web-app-title"))
    out = []
    for n in names:
        if n and len(n) < 120 and n not in out:
            out.append(n)
    return out


def normalize_lang(value: str) -> str | None:
    value = clean_text(value).replace("_", "-")
    if not value or not re.fullmatch(r"[A-Za-z]{2,3}(?:-[A-Za-z0-9]{1,8})*", value):
        return None
    return value


def _element_lang(container) -> str:
    el = container
    while el is not None and isinstance(getattr(el, "tag", None), str) and el.tag != "html":
        value = el.get("lang") or el.get("{http://www.w3.org/XML/1998/namespace}lang")
        if value and value.strip():
            return value.strip()
        el = el.getparent()
    return ""


def best_lang(sig: PageSignals, container=None) -> str | None:
    """The article element's own ``lang`` (or its nearest ancestor's), then ``<html lang>``,
    Content-Language, Dublin Core, JSON-LD ``inLanguage``, og:locale."""
    own = _element_lang(container) if container is not None else ""
    for value in (own, sig.html_lang, sig.first("content-language", "dc:language", "language"),
                  _ld_name(sig.ld("inLanguage")), sig.first("og:locale")):
        lang = normalize_lang(value)
        if lang:
            return lang
    return None


def best_dir(doc, container, lang: str | None) -> str:
    """Text direction: the ``dir`` of the article's element or its nearest ancestor, else from the language."""
    el = container
    while el is not None:
        d = (el.get("dir") or "").strip().lower() if isinstance(el.tag, str) else ""
        if d in ("ltr", "rtl"):
            return d
        el = el.getparent()
    if lang and lang.split("-")[0].lower() in _RTL_LANGS:
        return "rtl"
    return "ltr"


def article_container(doc):
    """The element that holds the article: ``<article>``, ``articleBody``, ``<main>``, else ``<body>``."""
    for xp in ('//*[@itemprop="articleBody"]', "//article", '//*[@role="main"]', "//main", "//body"):
        try:
            found = doc.xpath(xp)
        except Exception:  # noqa: BLE001 - a malformed tree has no container, not an error
            found = []
        if found:
            return found[0]
    return doc


# -- authors ----------------------------------------------------------------------------


_MONTHS = (r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|sept|oct|nov|dec)[a-z]*\.?")
_DATE_START = re.compile(
    r"(?:\b(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?,?\s+)?(?:\b" + _MONTHS + r"\s+\d{1,2}\b|\b\d{1,2}\.?\s+" + _MONTHS
    + r"|\b\d{4}-\d{2}-\d{2}|\b\d{1,2}[/.]\d{1,2}[/.]\d{2,4}|\b(?:last\s+)?updated\b|\bpublished\b|\|)", re.I)
_NAME_PARTICLES = {"de", "da", "del", "der", "den", "di", "du", "van", "von", "la", "le", "bin", "al", "y", "e", "of", "dos", "das", "ten", "ter"}


def _looks_like_name(text: str) -> bool:
    """A visible byline candidate reads like names: short, capitalised words (any script without case
    passes), not a user name ("@kestrel", "otto_k", "jdoe42")."""
    words = re.sub(r"\([^()]*\)", " ", text).split()  # "Name (avec X et Y)": judge the name itself
    if not words or len(words) > 8 or credits.looks_like_handle(" ".join(words)):
        return False
    for w in words:
        first = next((ch for ch in w if ch.isalpha()), "")
        if first and first.islower() and w.lower().strip(".,") not in _NAME_PARTICLES and w.lower() not in {"and", "&"}:
            return False
    return True


def byline_text(value: str) -> str:
    """A visible byline cut before the date or "Updated" note that often follows the name."""
    text = _BY_PREFIX.sub("", clean_text(value))
    text = re.sub(r"(?<=[^\W\d_])(?=\d)", " ", text)  # "Lucas Nolan22 Dec 2016": the date glued on
    m = _DATE_START.search(text)
    if m:
        if m.start() == 0:  # "Updated: January 7" is a dateline, not a name
            return ""
        text = text[: m.start()]
    return clean_author(text)


def clean_author(value: str) -> str:
    """One person's name from a byline: no "By" prefix, no trailing date, no URL."""
    name = clean_text(value)
    name = _BY_PREFIX.sub("", name)
    name = re.sub(r"^(?:written|posted|published)\s+by\s*:?\s*", "", name, flags=re.I)
    name = name.strip(" ,;|·•-–—:")
    if not name or _URLISH.search(name) or "@" in name and " " not in name:
        return ""
    if len(name) > 100 or not re.search(r"\w", name):
        return ""
    return name


def _split_authors(value: str) -> list[str]:
    """A list from "A, B and C" when every part reads like a full name; else the value as one name."""
    parts = [p.strip() for p in re.split(r"(?<!\s)\s*(?:,|;|\band\b|&|\bund\b|\bet\b|、)\s*", value) if p.strip()]
    if len(parts) > 1 and all(len(p.split()) >= 2 for p in parts):
        return parts
    return [value]


def _ld_authors(value: Any) -> list[str]:
    out = []
    for item in _as_list(value):
        if isinstance(item, str):
            out.extend(_split_authors(item))
        elif isinstance(item, dict):
            name = item.get("name")
            if isinstance(name, list):
                name = name[0] if name else ""
            if isinstance(name, str):
                out.append(name)
    return out


def _dedupe_names(names: Iterable[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        n = clean_author(n)
        if n and n.lower() not in {o.lower() for o in out}:
            out.append(n)
    return out


def _credited(el, container) -> bool:
    """False for a name that is not the article's writer: in a comment, a share widget, an embedded
    post or another story's teaser, or labelled with another role ("… edited by <a>B</a>")."""
    return not credits.in_widget(el, container) and credits.role_before(el) != "other"


def _credit_names(text: str) -> list[str]:
    """The writers a visible credit names: "Written by A / Edited by B" gives A, "Edited by B" nobody."""
    parts = credits.author_parts(text)
    return [byline_text(p) for p in (parts if parts is not None else [text])]


def visible_byline(doc, container) -> list[str]:
    """Authors shown on the page: ``rel=author`` links, ``itemprop=author``, then byline-looking elements;
    names in comments, share widgets and other stories, and editors, reviewers, photographers... are not."""
    candidates: list[str] = []
    scopes = [container, doc] if container is not doc else [doc]
    for scope in scopes:
        for el in scope.xpath('.//a[contains(concat(" ", normalize-space(@rel), " "), " author ")]'):
            if _credited(el, container):
                candidates.append(clean_text(credits.shown_text(el), markup=False))
        for el in scope.xpath('.//*[contains(concat(" ", normalize-space(@itemprop), " "), " author ")]'):
            if not _credited(el, container):
                continue
            names = el.xpath('.//*[@itemprop="name"]')
            if names:
                candidates.extend(_text_of(n) or (n.get("content") or "") for n in names)
            else:
                candidates.append(_text_of(el) or el.get("content") or "")
        names = [n for n in _dedupe_names(x for c in candidates for x in _credit_names(c)) if _looks_like_name(n)]
        if names:
            return names
    for el in doc.iter():
        if not isinstance(el.tag, str) or el.tag in ("script", "style", "meta", "link", "body", "html"):
            continue
        hint = " ".join(el.get(a) or "" for a in ("class", "id", "rel", "itemprop"))
        if not _BYLINE_HINT.search(hint):
            continue
        text = clean_text(credits.shown_text(el), markup=False)
        if 0 < len(text) < 100 and re.search(r"[^\W\d_]", text) and _credited(el, container):
            for name in _credit_names(text):
                if name and _looks_like_name(name):
                    return [name]
    return []


def best_authors(sig: PageSignals, doc, container) -> list[str]:
    """Authors: JSON-LD, Dublin Core, author meta, Parse.ly, Sailthru, article:author, then the visible byline."""
    names = _dedupe_names(_ld_authors(sig.ld("author", "creator")))
    if names:
        return names
    for key in ("dc:creator", "dcterms:creator", "author", "parsely-author", "sailthru.author",
                "article:author", "byl", "twitter:creator"):
        values = []
        for v in sig.all(key):
            values.extend(_split_authors(v))
        if key == "twitter:creator":
            values = [v for v in values if not v.startswith("@")]
        names = _dedupe_names(values)
        if names:
            return names
    return visible_byline(doc, container)


# -- dates ------------------------------------------------------------------------------


def parse_date(value: Any) -> datetime | None:
    """A timezone-aware datetime from an ISO 8601 or common written date; naive dates are taken as UTC."""
    if isinstance(value, dict):
        value = value.get("@value")
    if not isinstance(value, str):
        return None
    text = clean_text(value)
    if not text or len(text) > 64:
        return None
    from dateutil import parser as dateparser

    dt = None
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        try:
            dt = dateparser.isoparse(text)
        except (ValueError, OverflowError):
            # dateutil fills what a string leaves out from today: "5" would become the 5th of
            # this month. A written date must at least name its year.
            if re.search(r"(?<!\d)(?:19|20)\d\d(?!\d)", text):
                try:
                    dt = dateparser.parse(text, fuzzy=False)
                except (ValueError, OverflowError, TypeError):
                    dt = None
    if dt is None or not (1970 <= dt.year <= 2100):
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def best_published(sig: PageSignals, doc, container) -> datetime | None:
    """Publication date: JSON-LD, article:published_time, Parse.ly, Sailthru, Dublin Core, then ``<time>``."""
    candidates: list[Any] = [sig.ld("datePublished", "dateCreated")]
    candidates += [sig.first(k) for k in (
        "article:published_time", "og:article:published_time", "parsely-pub-date", "sailthru.date",
        "datepublished", "dcterms:created", "dcterms:issued", "dc:date.issued", "dc:date", "dcterms:date",
        "pubdate", "publishdate", "date", "article.published", "published_time")]
    for c in candidates:
        dt = parse_date(c)
        if dt:
            return dt
    scopes = [container, doc] if container is not doc else [doc]
    for scope in scopes:
        for el in scope.xpath('.//*[@itemprop="datePublished"]'):
            dt = parse_date(el.get("datetime") or el.get("content") or _text_of(el))
            if dt:
                return dt
        times = scope.xpath(".//time[@datetime]")
        times.sort(key=lambda t: 0 if t.get("pubdate") is not None else 1)
        for el in times:
            dt = parse_date(el.get("datetime"))
            if dt:
                return dt
    return parse_date(sig.first("article:modified_time", "og:updated_time"))  # better than nothing


# -- summary, image, canonical, taxonomy -------------------------------------------------


def best_description(sig: PageSignals) -> str:
    """The publisher's own summary: JSON-LD, Dublin Core, OpenGraph, description, Twitter, Sailthru."""
    ld = sig.ld("description", "abstract")
    if isinstance(ld, str) and clean_text(ld):
        return clean_text(ld)
    return sig.first("dc:description", "dcterms:description", "og:description", "description",
                     "twitter:description", "sailthru.description", "parsely-description")


def _ld_image(value: Any) -> tuple[str, str, int | None, int | None] | None:
    for item in _as_list(value):
        if isinstance(item, str) and item.strip():
            return item.strip(), "", None, None
        if isinstance(item, dict):
            url = item.get("url") or item.get("contentUrl") or item.get("@id")
            if isinstance(url, str) and url.strip():
                return (url.strip(), clean_text(item.get("caption") or item.get("description") or ""),
                        _int(item.get("width")), _int(item.get("height")))
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, dict):
        value = value.get("value")
    try:
        n = int(float(str(value).strip().removesuffix("px")))
    except (TypeError, ValueError):
        return None
    return n if 0 < n < 100_000 else None


def _is_picture(url: str) -> bool:
    """False for site furniture that is not the article's picture: logos, icons, avatars, spacers."""
    name = urlsplit(url).path.rsplit("/", 1)[-1]
    return not _NOT_A_PICTURE.search(name)


def best_image(sig: PageSignals, doc, container) -> tuple[str, str, int | None, int | None] | None:
    """Hero image (url, alt, width, height): og:image, Twitter, JSON-LD, image_src, Parse.ly/Sailthru,
    then the first large ``<img>`` of the article; logos, icons and avatars are passed over."""
    candidates: list[tuple[str, str, int | None, int | None]] = []
    og = sig.first("og:image:secure_url", "og:image", "og:image:url")
    if og:
        candidates.append((og, sig.first("og:image:alt"), _int(sig.first("og:image:width")),
                           _int(sig.first("og:image:height"))))
    tw = sig.first("twitter:image", "twitter:image:src")
    if tw:
        candidates.append((tw, sig.first("twitter:image:alt"), None, None))
    ld = _ld_image(sig.ld("image", "thumbnailUrl"))
    if ld:
        candidates.append(ld)
    candidates += [(href, "", None, None) for href in sig.links.get("image_src", [])[:1]]
    other = sig.first("parsely-image-url", "sailthru.image.full", "thumbnail")
    if other:
        candidates.append((other, "", None, None))
    for img in container.iter("img"):
        src = img.get("src") or img.get("data-src") or ""
        w, h = _int(img.get("width")), _int(img.get("height"))
        if not src or src.startswith("data:") or (w and w < 100) or (h and h < 100):
            continue
        candidates.append((src, clean_text(img.get("alt")), w, h))
        break
    found = None
    for cand in candidates:
        url = sig.absolute(cand[0])
        if url and _is_picture(url) and not (cand[2] and cand[2] < 50) and not (cand[3] and cand[3] < 50):
            found = (url, *cand[1:])
            break
    if not found:
        return None
    url, alt = found[0], found[1]
    if not alt:  # the same picture in the page may carry the alt text the meta lacks
        tail = urlsplit(url).path.rsplit("/", 1)[-1]
        for img in doc.iter("img"):
            src = img.get("src") or ""
            if src and tail and src.split("?")[0].endswith(tail) and clean_text(img.get("alt")):
                alt = clean_text(img.get("alt"))
                break
    return url, alt, found[2], found[3]


def best_canonical(sig: PageSignals) -> str:
    """The page's own address: rel=canonical, og:url, JSON-LD url, else the URL it was read from."""
    for href in (sig.links.get("canonical") or [None])[:1] + [sig.first("og:url"), sig.ld("url")]:
        if isinstance(href, str):
            url = sig.absolute(href)
            if url and urlsplit(url).scheme in {"http", "https"}:
                return url
    return sig.url


def best_category(sig: PageSignals) -> str | None:
    section = sig.ld("articleSection")
    if isinstance(section, list):
        section = next((s for s in section if isinstance(s, str) and s.strip()), None)
    value = (clean_text(section) if isinstance(section, str) else "") or sig.first(
        "article:section", "parsely-section", "sailthru.section", "section", "category")
    return value or None


def best_tags(sig: PageSignals) -> list[str]:
    tags: list[str] = []
    kw = sig.ld("keywords")
    for item in _as_list(kw):
        if isinstance(item, str):
            tags.extend(item.split(","))
    tags += sig.all("article:tag")
    for key in ("parsely-tags", "sailthru.tags", "news_keywords", "keywords"):
        for v in sig.all(key):
            tags.extend(v.split(","))
    out: list[str] = []
    for t in tags:
        t = clean_text(t)
        if t and len(t) <= 60 and t.lower() not in {o.lower() for o in out}:
            out.append(t)
    return out[:20]
