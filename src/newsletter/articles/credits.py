"""Who a visible credit names as the author, and which parts of a page never name the author.

A credit line often names several people: "Written by A / Edited by B", "Reporting by A;
Editing by B", "Medically reviewed by C — Written by D", "Words: A. Photos: B". Only the
writing roles are the article's authors. And a page carries names that belong to other
people: commenters, the account a share widget or an embedded post credits, the authors of
related stories. ``bylines.visible_byline`` uses these helpers to keep only the writer.

Every pattern here is a flat alternation of literals (no nested quantifiers), because it runs
on untrusted text.
"""

from __future__ import annotations

import re

# A role marker: "<role> by", or a "<role>:" label. Longer phrases come first in each group so
# "additional reporting by" is not read as "reporting by".
_ROLE = re.compile(
    r"(?<!\w)(?:"
    r"(?P<other>medically\s+reviewed|clinically\s+reviewed|fact[\s-]?checked|additional\s+reporting|edited|editing"
    r"|reviewed|copy[\s-]?edited|photos?|photographs|photography|pictures|illustrations?|illustrated|graphics|design"
    r"|designed|video|produced|production|translated|translation|research|shared|sent|curated|updated|narrated"
    r"|read|recommended|liked|retweeted|reposted|moderated)\s+by(?!\w)"
    r"|(?P<other_label>additional\s+reporting|editors?|editing|edited|photos?|photography|illustrations?|credits?"
    r"|images?|video|graphics|reviewer|reviewed|translation|translator|producer|design)\s*:"
    r"|(?P<author>written|words|text|story|reporting|reported|posted|article|published|authored)\s+by(?!\w)"
    r"|(?P<author_label>authors?|words|text|writer|story|reporting|by)\s*:"
    r"|(?P<by>by)(?!\w)"
    r")",
    re.I,
)
_SEPARATORS = " \t\n/|·•,;:–—-"
_IN_PLACE = re.compile(r" in (?=[A-Z])")  # "Reporting by Ana Ruiz in Madrid" (text has single spaces)

# class/id words of the parts of a page that name other people than the article's author:
# comments, share and social widgets, embedded posts, other stories' teasers.
_WIDGET = re.compile(
    r"(?:^|[-_])(?:comments?|commentlist|commentary-list|disqus|respond|replies|reply|discussion|forum"
    r"|share|shares|sharing|sharebar|sharetools|social|socials|tweet|twitter|facebook|instagram|addthis|addtoany"
    r"|sharethis|related|recommended|recommendations|recirc|more-from|read-next|up-next|trending|popular)(?:$|[-_])",
    re.I,
)
_EMBEDS = ("twitter-tweet", "instagram-media", "tiktok-embed", "fb-post", "fb-comments", "reddit-embed-bq")
_HANDLE_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")
_DOTTED = re.compile(r"[a-z]\.[a-z]")  # "lena.paints", not "J.R.R."


def author_parts(text: str) -> list[str] | None:
    """The pieces of a credit line that name its writers, or None when the line names no other
    role (then it is read as a plain byline). "Written by A / Edited by B" gives ["A"];
    "Edited by B" alone gives [] — an editor is not the author."""
    marks = list(_ROLE.finditer(text))
    if not any(m.lastgroup in ("other", "other_label") for m in marks):
        return None
    parts: list[str] = []
    lead = text[: marks[0].start()].strip(_SEPARATORS)
    if lead:  # "Ana Ruiz / Edited by Ben Cole": an unlabelled name before the roles is the writer
        parts.append(lead)
    for m, nxt in zip(marks, marks[1:] + [None]):
        if m.lastgroup in ("other", "other_label"):
            continue
        piece = text[m.end(): nxt.start() if nxt is not None else len(text)].strip(_SEPARATORS)
        piece = _IN_PLACE.split(piece, maxsplit=1)[0].strip(_SEPARATORS)
        if piece.endswith(".") and len(piece.rsplit(" ", 1)[-1]) > 4:  # "Words: A B. Photos: C", not "Jr."
            piece = piece[:-1]
        if piece:
            parts.append(piece)
    return parts


def role_before(el) -> str | None:
    """"other" when the words just before ``el`` in its paragraph give a role that is not writing
    ("… edited by <a>B</a>"), "author" for a writing role, None when nothing says."""
    parent = el.getparent()
    if parent is None:
        return None
    before = []
    prev = el.getprevious()
    if prev is not None:
        before.append(prev.tail or "")
        before.insert(0, _text(prev))
    else:
        before.append(parent.text or "")
    text = " ".join(before)[-60:]
    last = None
    for m in _ROLE.finditer(text):
        last = m
    if last is None or text[last.end():].strip(_SEPARATORS):
        return None  # no marker, or words between the marker and the link: not its label
    return "other" if last.lastgroup in ("other", "other_label") else "author"


def _text(el) -> str:
    try:
        return el.text_content() or ""
    except (ValueError, TypeError):
        return ""


def is_widget(el) -> bool:
    """True when ``el`` itself is a comment, a share or social widget, an embedded post or a list
    of other stories, by its class, id or microdata."""
    itemprop = (el.get("itemprop") or "").lower().split()
    itemtype = (el.get("itemtype") or "").rstrip("/").rsplit("/", 1)[-1].lower()
    if "comment" in itemprop or itemtype == "comment":
        return True
    return any(_WIDGET.search(word) or word.lower() in _EMBEDS
               for word in f"{el.get('class') or ''} {el.get('id') or ''}".split())


def in_widget(el, container=None) -> bool:
    """True when ``el`` or one of its ancestors is such a widget. The walk stops at the article's
    ``container`` and at anything around it: a widget sits inside or beside the article, never
    around it — class names built from the story's slug or tags ("page-twitter-lite",
    "tag-comments") on the article or its wrappers say nothing about a byline inside."""
    around = set()
    while container is not None:
        around.add(container)
        container = container.getparent()
    while el is not None and isinstance(getattr(el, "tag", None), str) and el.tag not in ("body", "html"):
        if el in around:
            return False
        if is_widget(el):
            return True
        el = el.getparent()
    return False


_NOT_SHOWN = {"script", "style", "noscript", "template", "svg", "button"}


def shown_text(el, max_elements: int = 64) -> str:
    """The text of ``el`` as a reader sees it in a byline: without scripts and styles (an address
    obfuscator inside a byline) and without the widgets in it (a "@handle" follow link). A byline
    holds a few elements; past ``max_elements`` this is no byline, and its whole text is returned."""
    out, stack, seen = [el.text or ""], [(iter(el), "")], 0
    while stack:
        seen += 1
        if seen > max_elements:
            return _text(el)
        it, tail = stack[-1]
        child = next(it, None)
        if child is None:
            stack.pop()
            out.append(tail)
            continue
        if isinstance(child.tag, str) and child.tag not in _NOT_SHOWN and not is_widget(child):
            out.append(child.text or "")
            stack.append((iter(child), child.tail or ""))
        else:  # left out, but it still separated the words around it
            out.append(" " + (child.tail or ""))
    return "".join(out)


def looks_like_handle(name: str) -> bool:
    """A user name rather than a person's name: "@kestrel", "u/throwaway", "otto_k", "jdoe42",
    "lena.paints" — or a name carrying one of them as a word. Names in scripts without these
    conventions are left alone."""
    words = name.split()
    if not words:
        return False
    if "@" in name or words[0].lower().startswith(("u/", "/u/")):
        return True
    for w in words:
        if set(w) <= _HANDLE_CHARS and ("_" in w or (len(words) == 1 and (any(c.isdigit() for c in w) or _DOTTED.search(w)))):
            return True
    return False
