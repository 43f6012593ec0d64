"""Small text helpers shared by the source parsers: summaries, slugs, authors, direction."""

from __future__ import annotations

import re
import unicodedata
import urllib.parse
from typing import Iterable

SUMMARY_CHARS = 280
RTL_LANGS = {"ar", "arc", "ckb", "dv", "fa", "he", "iw", "ks", "ku", "ps", "sd", "syr", "ug", "ur", "yi"}
_RTL_CHAR = re.compile(r"[\u0590-\u08ff\ufb1d-\ufdff\ufe70-\ufefc]")
_LETTER = re.compile(r"[^\W\d_]", re.UNICODE)


def skip_prolog(data, start: int = 0) -> int:
    """The index after the whitespace, comments (``<!-- -->``), processing instructions
    (``<?xml ?>``) and DOCTYPE that may open an XML or HTML document (``str`` or ``bytes``).

    A loop over ``find`` rather than a regex: ``(?:<!--.*?-->\\s*)*`` backtracks exponentially
    on a page opening with many comments; this is linear in the input."""
    def lit(s: str):
        return s.encode("ascii") if isinstance(data, bytes) else s

    n = len(data)
    i = start
    while i < n:
        while i < n and data[i:i + 1].isspace():
            i += 1
        if data.startswith(lit("<!--"), i):
            end, width = data.find(lit("-->"), i + 4), 3
        elif data.startswith(lit("<?"), i):
            end, width = data.find(lit("?>"), i + 2), 2
        elif data[i:i + 9].lower() == lit("<!doctype"):
            end, width = data.find(lit(">"), i + 9), 1
        else:
            break
        if end < 0:
            return n  # an unterminated comment: nothing follows it
        i = end + width
    return i


def truncate_words(text: str, limit: int = SUMMARY_CHARS) -> str:
    """``text`` on one line, cut at the last whole word before ``limit`` characters, with "…"."""
    text = " ".join((text or "").split())
    if len(text) <= limit:
        return text
    cut = text[: limit + 1]
    space = cut.rfind(" ")
    if space > limit // 2:
        cut = cut[:space]
    else:  # one enormous "word" (a URL, a script without spaces): cut at the limit
        cut = cut[:limit]
    return cut.rstrip(" ,;:-–—([{\"'") + "…"


def first_paragraph(paragraphs: list[str], min_chars: int = 40) -> str:
    """The first paragraph long enough to be prose (skips short lines such as headings or captions)."""
    for p in paragraphs:
        if len(p) >= min_chars:
            return p
    return paragraphs[0] if paragraphs else ""


def slugify(value: str) -> str:
    """A URL path segment from a title or file name: lower-case words joined by '-' (letters of any script kept)."""
    value = unicodedata.normalize("NFKC", value).strip().lower()
    value = re.sub(r"[^\w\s-]", "", value, flags=re.UNICODE)
    value = re.sub(r"[\s_-]+", "-", value).strip("-")
    return value


def url_slug(slug: str) -> str:
    """``slug`` made safe for a URL path (non-ASCII letters percent-encoded)."""
    return urllib.parse.quote(slug, safe="-")


def split_names(value: object) -> list[str]:
    """Author names from a list or a comma/"and"-separated string: "LTM, Dreamer" → ["LTM", "Dreamer"]."""
    if value is None:
        return []
    items: list[str] = []
    raw = value if isinstance(value, (list, tuple)) else [value]
    for item in raw:
        if isinstance(item, dict):
            item = item.get("name") or ""
        item = str(item)
        # (?<!\s): a separator starts where its spaces start, so a long run of spaces is scanned once.
        for part in re.split(r"(?<!\s)(?:\s*,\s*|\s*;\s*|\s+&\s+|\s+and\s+)", item):
            part = " ".join(part.split())
            if part and part not in items:
                items.append(part)
    return items


def split_tags(value: object) -> list[str]:
    """Tags from a list or a comma-separated string, de-duplicated, order kept."""
    if value is None:
        return []
    raw = value if isinstance(value, (list, tuple)) else str(value).split(",")
    tags: list[str] = []
    for t in raw:
        t = " ".join(str(t).split())
        if t and t.lower() not in {x.lower() for x in tags}:
            tags.append(t)
    return tags


def text_direction(lang: str | None, text: str = "") -> str:
    """"rtl" for right-to-left languages (by language code, else by the script of most letters), else "ltr"."""
    if lang and lang.split("-")[0].split("_")[0].lower() in RTL_LANGS:
        return "rtl"
    sample = text[:2000]
    letters = len(_LETTER.findall(sample))
    if letters and len(_RTL_CHAR.findall(sample)) / letters > 0.5:
        return "rtl"
    return "ltr"


def normalize_lang(lang: object) -> str | None:
    """A BCP 47-ish language tag ("en-US") from whatever a source gives ("en_us", "EN"), or None."""
    if not isinstance(lang, str) or not lang.strip():
        return None
    parts = re.split(r"[-_]", lang.strip())
    if not re.fullmatch(r"[A-Za-z]{2,8}", parts[0]):
        return None
    out = [parts[0].lower()] + [p.upper() if len(p) == 2 else p for p in parts[1:] if p.isalnum()]
    return "-".join(out)


# Title separators a site appends its name after ("Story | Site", "Story – Site").
_TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " · ", " :: ", " » ", " / ", " \\ ", " > ", " ~ ")


def _same_site(a: str, b: str) -> bool:
    """True when two spellings name the same site ("eHow" and "ehow.com", "The Guardian" and "the Guardian")."""
    def norm(s: str) -> str:
        s = s.lower().strip()
        s = re.sub(r"^(?:https?://)?(?:www\.)?", "", s)
        s = re.sub(r"\.(?:com|org|net|co\.uk|fr|de|cz|es|io|tv)\b.*$", "", s)
        return re.sub(r"[^\w]+", "", s)
    na, nb = norm(a), norm(b)
    return bool(na) and na == nb


def strip_site_tail(title: str, site_names: Iterable[str]) -> str:
    """Drop a " | Site" head or tail from ``title`` when it repeats the site's name."""
    names = [n for n in site_names if n]
    if not names:
        return title
    for sep in _TITLE_SEPARATORS:
        if sep not in title:
            continue
        head, _, tail = title.rpartition(sep)
        if head.strip() and any(_same_site(tail, n) for n in names):
            return head.strip()
        first, _, rest = title.partition(sep)
        if rest.strip() and any(_same_site(first, n) for n in names):
            return rest.strip()
    return title
