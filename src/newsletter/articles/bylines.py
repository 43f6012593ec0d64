"""Who wrote an HTML article page: the authors, from machine-readable metadata first and the
visible byline last.

Order: JSON-LD ``author``/``creator``, Dublin Core, author meta, Parse.ly, Sailthru,
``article:author``, then what the page shows (``rel=author`` links, ``itemprop=author``,
byline-looking elements). Visible names are kept only when they read like names and are
credited as the writer (``credits`` tells writers from editors, photographers, commenters
and share widgets).
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from . import credits
from .page_signals import PageSignals, as_list, clean_text, text_of

_BYLINE_HINT = re.compile(r"byline|author|writtenby|p-author|contributor|dateline", re.I)
_BY_PREFIX = re.compile(r"^\s*(?:by|par|von|por|di|door|av|przez|от|автор)\s*[:\-]?\s+", re.I)
_URLISH = re.compile(r"^(?:https?:|www\.|//)|^[\w.-]+\.(?:com|org|net)/", re.I)
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
    for item in as_list(value):
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
                candidates.extend(text_of(n) or (n.get("content") or "") for n in names)
            else:
                candidates.append(text_of(el) or el.get("content") or "")
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
