"""A tracked campaign's HTML, rewritten once per campaign, and the per-reader URLs it needs.

Each ``http(s)`` link becomes the merge tag ``*|CLICK:n|*``, which the message factory fills per
reader with ``{base_url}/r/<signed token>`` (the token names campaign, reader and link ``n``, so
the redirect can only go to a URL this campaign held). A 1x1 ``*|OPEN|*`` pixel and a hidden
canary link (``n = 0``, followed only by machines) are added when opens or clicks are tracked,
and a footer line says that the email is tracked and links to the privacy note.

Never tracked: links holding merge tags (unsubscribe, web version, the publisher's own tags),
links to this app's reader pages (unsubscribe, confirm, preferences, privacy), ``mailto:`` and
anything not ``http(s)``, and anchors marked ``data-notrack``. The plain-text part is left as
written. A reader whose attribute ``no_tracking`` is set gets the original links and no pixel.
"""

from __future__ import annotations

import html as _html
import re
from dataclasses import dataclass, field
from enum import StrEnum

from ..errors import InvalidInput
from ..store.tokens import click_key, click_token, open_key, open_token

_ANCHOR = re.compile(r"""(<a\b[^>]*?\bhref\s*=\s*)(["'])(.*?)\2""", re.IGNORECASE | re.DOTALL)
_MERGE = re.compile(r"\*\||%2A%7C", re.IGNORECASE)
_BODY_OPEN = re.compile(r"<body\b[^>]*>", re.IGNORECASE)
_BODY_CLOSE = re.compile(r"</body\s*>", re.IGNORECASE)
READER_PAGES = ("/unsubscribe", "/confirm", "/preferences", "/privacy", "/subscribe")
CANARY = 0
# A transparent GIF inline: what a reader who opted out gets as the pixel (no request is made).
BLANK_PIXEL = "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
DEFAULT_NOTE = "This email counts opens and clicks to learn which stories readers find useful."


class Track(StrEnum):
    """What a campaign tracks."""

    OPENS = "opens"
    CLICKS = "clicks"


def parse_track(value: str | list | tuple | set | None, *, where: str = "--track") -> frozenset[Track]:
    """The tracking choice written as ``opens,clicks``, ``opens``, ``off`` (or a list); InvalidInput
    naming ``where`` for anything else."""
    if value is None:
        return frozenset()
    items = value if isinstance(value, (list, tuple, set, frozenset)) else str(value).split(",")
    out: set[Track] = set()
    for raw in items:
        word = str(raw).strip().lower()
        if word in ("", "off", "none", "no", "false"):
            continue
        if word in ("on", "all", "yes", "true"):
            out |= {Track.OPENS, Track.CLICKS}
            continue
        try:
            out.add(Track(word))
        except ValueError:
            raise InvalidInput(f"{where} {raw!r}: expected opens, clicks, opens,clicks or off") from None
    return frozenset(out)


@dataclass
class Rewritten:
    """The campaign HTML with tracking tags, and ``links[n]`` the original URL of ``*|CLICK:n|*``."""

    html: str
    links: list[str] = field(default_factory=list)


def _tracked(url: str, base_url: str) -> bool:
    low = url.strip().lower()
    if not (low.startswith("http://") or low.startswith("https://")) or _MERGE.search(url):
        return False
    base = base_url.rstrip("/").lower()
    if base and low.startswith(base):
        rest = low[len(base):]
        if any(rest == p or rest.startswith(p + "/") or rest.startswith(p + "?") for p in READER_PAGES):
            return False
    return True


def rewrite(html: str, *, base_url: str, track: frozenset[Track], privacy_url: str,
            note: str = DEFAULT_NOTE) -> Rewritten:
    """Rewrite ``html`` for ``track`` (see the module docstring). Deterministic: the same HTML
    gives the same link numbers, so a resumed send and its first part agree."""
    links: list[str] = [base_url.rstrip("/") + "/"]  # 0: the canary's stand-in target
    if Track.CLICKS in track:
        index: dict[str, int] = {}

        def sub(m: re.Match) -> str:
            whole = m.group(0)
            start = whole.lower().find("data-notrack")
            if 0 <= start:
                return whole
            url = _html.unescape(m.group(3)).strip()
            if not _tracked(url, base_url):
                return whole
            n = index.get(url)
            if n is None:
                n = index[url] = len(links)
                links.append(url)
            return f"{m.group(1)}{m.group(2)}*|CLICK:{n}|*{m.group(2)}"

        html = _ANCHOR.sub(sub, html)
        canary = ('<a href="*|CLICK:0|*" aria-hidden="true" tabindex="-1" '
                  'style="display:none;font-size:0;line-height:0;max-height:0;overflow:hidden">&#8203;</a>')
        m = _BODY_OPEN.search(html)
        html = html[:m.end()] + canary + html[m.end():] if m else canary + html
    if track:
        footer = ('<div style="font-family:Arial,Helvetica,sans-serif;font-size:12px;line-height:18px;color:#555555;'
                  'text-align:center;padding:8px 16px 16px">' + _html.escape(note) + ' <a data-notrack href="'
                  + _html.escape(privacy_url, quote=True) + '" style="color:#555555;text-decoration:underline">'
                  'How and why</a></div>')
        if Track.OPENS in track:
            footer += ('<img src="*|OPEN|*" width="1" height="1" alt="" '
                       'style="display:block;width:1px;height:1px;border:0;margin:0;padding:0" />')
        m = _BODY_CLOSE.search(html)
        html = html[:m.start()] + footer + html[m.start():] if m else html + footer
    return Rewritten(html, links)


class Tracker:
    """Per-reader tracking URLs for one campaign, handed to the message factory.

    ``click(subscriber_id, n)`` and ``open(subscriber_id)`` cost one HMAC each; a reader with
    ``no_tracking`` gets ``original(n)`` and :data:`BLANK_PIXEL` instead (the factory asks
    :meth:`skip` with the reader's attributes)."""

    BLANK_PIXEL = BLANK_PIXEL

    def __init__(self, campaign_id: int, base_url: str, secret: bytes, links: list[str], track: frozenset[Track]):
        self.campaign_id, self.links, self.track = campaign_id, links, track
        self.base = base_url.rstrip("/")
        self._secret, self._click_key, self._open_key = secret, click_key(secret), open_key(secret)

    def click(self, subscriber_id: int, n: int) -> str:
        return f"{self.base}/r/{click_token(self._click_key, self.campaign_id, subscriber_id, n)}"

    def open(self, subscriber_id: int) -> str:
        return f"{self.base}/o/{open_token(self._secret, self.campaign_id, subscriber_id, key=self._open_key)}.gif"

    def original(self, n: int) -> str:
        return self.links[n] if 0 <= n < len(self.links) else self.base + "/"

    @staticmethod
    def skip(attributes) -> bool:
        """Whether a reader turned tracking off (attribute ``no_tracking`` set and not false)."""
        v = attributes.get("no_tracking") if attributes else None
        return v is not None and str(v).strip().lower() not in ("", "0", "false", "no", "off")
