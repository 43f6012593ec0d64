"""The best value of each field of an HTML article page, ranked from its ``PageSignals``.

Title, site names, language and direction, publication date, description, hero image,
canonical address, category and tags: each ``best_*`` function picks the most trustworthy
value, curated machine-readable signals (JSON-LD, OpenGraph, Dublin Core, …) first and
guesses from the visible page last. Authors are ranked in ``bylines``; the signals are
gathered in ``page_signals``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from .page_signals import PageSignals, as_list, clean_text, ld_name, ld_types, text_of
from .text import _TITLE_SEPARATORS, strip_site_tail

_SITE_TYPES = {"website", "organization", "newsmediaorganization", "corporation"}
_NOT_A_PICTURE = re.compile(r"(?:^|[/_.-])(?:logo|icon|favicon|avatar|sprite|spacer|pixel|blank|placeholder)s?(?:[/_.-]|\d|$)", re.I)
_RTL_LANGS = {"ar", "he", "iw", "fa", "ur", "yi", "ps", "sd", "ug", "dv", "ckb", "syr"}


# -- titles -----------------------------------------------------------------------------

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
    headline, name = ld_name(sig.ld("headline")), ld_name(sig.ld("name"))
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
    h1s = [t for t in (text_of(h) for h in doc.iter("h1")) if t][:3]
    title = _title_from_title_tag(sig.title_tag, h1s) or (h1s[0] if h1s else "")
    return strip_site_tail(title, site_names)


# -- site, lang, dir --------------------------------------------------------------------


def best_site_names(sig: PageSignals) -> list[str]:
    """Names the site goes by, best first: JSON-LD publisher, og:site_name, JSON-LD WebSite, app name."""
    # The article's publisher names the publication even on a shared platform
    # (a Medium publication, not "Medium"); og:site_name often carries a slogan too.
    names = [ld_name(sig.ld("publisher")), sig.first("og:site_name")]
    for obj in sig.other_ld:
        if ld_types(obj) & _SITE_TYPES:
            names.append(ld_name(obj))
    names.append(sig.first("dc:publisher", "dcterms:publisher"))
    names.append(sig.first("application-name", "apple-mobile-web-app-title"))
    out = []
    for n in names:
        if n and len(n) < 120 and n not in out:
            out.append(n)
    return out


def normalize_lang(value: str) -> str | None:
    """A BCP 47-looking language tag ("en-GB", "pt_BR" as "pt-BR"), or None for anything else."""
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
                  ld_name(sig.ld("inLanguage")), sig.first("og:locale")):
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
            dt = parse_date(el.get("datetime") or el.get("content") or text_of(el))
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
    for item in as_list(value):
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
    candidates: list[Any] = [*sig.links.get("canonical", [])[:1], sig.first("og:url"), sig.ld("url")]
    for href in candidates:
        if isinstance(href, str):
            url = sig.absolute(href)
            if url and urlsplit(url).scheme in {"http", "https"}:
                return url
    return sig.url


def best_category(sig: PageSignals) -> str | None:
    """The section: JSON-LD ``articleSection``, then article:section, Parse.ly, Sailthru, section/category meta."""
    section = sig.ld("articleSection")
    if isinstance(section, list):
        section = next((s for s in section if isinstance(s, str) and s.strip()), None)
    value = (clean_text(section) if isinstance(section, str) else "") or sig.first(
        "article:section", "parsely-section", "sailthru.section", "section", "category")
    return value or None


def best_tags(sig: PageSignals) -> list[str]:
    """Up to 20 distinct tags: JSON-LD keywords, article:tag, Parse.ly, Sailthru and keywords meta."""
    tags: list[str] = []
    kw = sig.ld("keywords")
    for item in as_list(kw):
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
