"""Per-recipient messages built cheaply from a MIME skeleton made once per campaign.

Building an ``email.message.EmailMessage`` per recipient costs milliseconds; here the campaign's
HTML and text are split at their merge tags once, each static piece is quoted-printable encoded
once, and a recipient's message is a join of those bytes with the few substituted values (each
QP-encoded on its own). Every piece ends with a QP soft line break (``=\\r\\n``), which decoders
drop, so pieces encoded separately concatenate into a valid body whose lines stay under 76
characters — the inlined HTML is one long line and SMTP allows 998.

Merge tags (they survive MJML and premailer; the percent-encoded form ``%2A%7C…%7C%2A`` that an
``href`` may end up with is understood too)::

    *|UNSUBSCRIBE_URL|*  *|PREFERENCES_URL|*  *|WEB_VERSION_URL|*  *|EMAIL|*  *|NAME|*
    *|NAME:fallback|*  *|ATTR:key|*  *|ATTR:key:fallback|*

Values are HTML-escaped in the HTML part. Unknown tags are left as they are.
"""

from __future__ import annotations

import base64
import hashlib
import html as _html
import re
import time
import uuid
from dataclasses import dataclass, field
from email.header import Header
from email.utils import formataddr, formatdate, parseaddr
from typing import Callable, Iterable, Mapping
from urllib.parse import quote, unquote

from ..compose.headers import UNSAFE, check_header, check_header_name, check_mailto, header_text
from ..compose.model import InlineImage  # noqa: F401  (re-exported: data flows compose → dispatch)
from ..errors import InvalidInput

CRLF = b"\r\n"
SOFT = b"=\r\n"

_TAG = re.compile(
    r"\*\|(?P<a>[A-Za-z_]+(?::[^|\r\n]{0,200}?)?)\|\*"
    r"|%2A%7C(?P<b>[A-Za-z_]+(?:(?::|%3A)[^%\r\n]{0,200}?)?)%7C%2A",
    re.IGNORECASE,
)
KNOWN_TAGS = ("UNSUBSCRIBE_URL", "PREFERENCES_URL", "WEB_VERSION_URL", "EMAIL", "NAME", "ATTR")

# --- quoted-printable -------------------------------------------------------------------------
_QP_TABLE = [
    chr(b).encode("ascii") if (33 <= b <= 126 and b != 61) or b in (9, 32) else b"=%02X" % b
    for b in range(256)
]
# A value may skip encoding when it is short and holds only characters QP leaves alone.
_QP_UNSAFE = re.compile(rb"[^\x20\x21-\x3c\x3e-\x7e]|^[ .]|[ ]$")


def qp_encode(data: bytes, maxline: int = 76) -> bytes:
    """Quoted-printable encode ``data`` with CRLF hard breaks; every line (with its soft-break
    ``=``) at most ``maxline`` characters and no line starting with ``.``. No trailing newline."""
    out_lines: list[bytes] = []
    limit = maxline - 1  # room for the soft-break "="
    table = _QP_TABLE
    lines = data.split(b"\n")
    for n, line in enumerate(lines):
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line:
            out_lines.append(b"")
            continue
        toks = [table[b] for b in line]
        last = line[-1]
        if last in (9, 32):  # trailing whitespace must be encoded
            toks[-1] = b"=%02X" % last
        if line[0] == 46:  # "." at line start: keep it out of SMTP dot-stuffing's way
            toks[0] = b"=2E"
        cur: list[bytes] = []
        width = 0
        for i, tok in enumerate(toks):
            if width + len(tok) > limit and cur:
                out_lines.append(b"".join(cur) + b"=")
                cur, width = [], 0
                if tok == b".":
                    tok = b"=2E"
            cur.append(tok)
            width += len(tok)
        out_lines.append(b"".join(cur))
    return CRLF.join(out_lines)


def qp_value(value: str) -> bytes:
    """QP-encode a short substituted value (fast path: most values need no escaping)."""
    b = value.encode("utf-8")
    if len(b) <= 70 and not _QP_UNSAFE.search(b):
        return b
    return qp_encode(b)


def b64_body(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF).rstrip(CRLF)


# --- headers ----------------------------------------------------------------------------------
def check_header_value(name: str, value: str | None) -> None:
    """Refuse a line break or control character in a header value, also once its RFC 2047 encoded
    words are decoded (the one header-safety check: ``compose.headers.check_header``)."""
    if value is not None:
        check_header(name, value)


def encode_header(name: str, value: str) -> bytes:
    """``Name: value`` as bytes: ASCII kept as is when short enough, else RFC 2047 encoded and folded."""
    check_header_value(name, value)
    if value.isascii() and len(name) + 2 + len(value) <= 78:
        return f"{name}: {value}".encode("ascii")
    h = Header(value, "utf-8" if not value.isascii() else "us-ascii", header_name=name)
    return f"{name}: ".encode("ascii") + h.encode(linesep="\r\n").encode("ascii")


def format_address(addr: str, what: str = "address") -> str:
    """An address header value with its display name RFC 2047-encoded when not ASCII."""
    check_header_value(what, addr)
    name, email = parseaddr(addr)
    if not email or "@" not in email:
        raise InvalidInput(f"{what} {addr!r} is not an email address")
    return formataddr((name, email), charset="utf-8")


_ATEXT_NAME = re.compile(r"^[A-Za-z0-9 !#$%&'*+/=?^_`{}|~-]*$")


def to_header_value(name: str, email: str) -> str:
    """The To value for one recipient (fast path for plain ASCII names). A name is the reader's
    own text: control characters become spaces and encoded words are made inert (``header_text``)."""
    name = " ".join(name.split()) if name else ""
    if not name:
        return email
    if "=?" in name or not name.isprintable():
        name = header_text(name)
    if _ATEXT_NAME.match(name):
        return f"{name} <{email}>"
    return formataddr((name, email), charset="utf-8")


# --- the campaign skeleton -----------------------------------------------------------------------
@dataclass
class Recipient:
    """Who one copy goes to (from the ledger row and the subscriber)."""

    subscriber_id: int
    list_id: int
    email: str
    name: str = ""
    attributes: Mapping = field(default_factory=dict)
    variant: int | None = None  # an A/B test's variant of this copy (``dispatch.abtest``); None: the campaign's own


@dataclass
class CampaignContent:
    """What a campaign freezes: everything needed to build each recipient's copy."""

    campaign_id: int
    subject: str
    from_address: str
    html: str
    text: str
    reply_to: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    images: list[InlineImage] = field(default_factory=list)
    lists: Mapping[int, str] = field(default_factory=dict)  # list_id -> slug (for List-Id)


@dataclass
class Built:
    """One recipient's message: envelope and the bytes to hand to the server."""

    mail_from: str
    rcpt: str
    data: bytes
    message_id: str


class _Part:
    """A body split at its merge tags: static QP pieces and the tags between them."""

    __slots__ = ("pieces", "tags")

    def __init__(self, pieces: list[bytes], tags: list[tuple]):
        self.pieces = pieces  # len(tags) + 1 pre-encoded pieces, each ending with a soft break
        self.tags = tags


def _parse_tag(body: str, encoded: bool) -> tuple | None:
    if encoded:
        body = unquote(body)
    parts = body.split(":")
    kind = parts[0].upper()
    if kind in ("UNSUBSCRIBE_URL", "PREFERENCES_URL", "WEB_VERSION_URL", "EMAIL") and len(parts) == 1:
        return (kind,)
    if kind == "NAME" and len(parts) <= 2:
        return ("NAME", parts[1] if len(parts) == 2 else "")
    if kind == "ATTR" and 2 <= len(parts) <= 3 and parts[1]:
        return ("ATTR", parts[1], parts[2] if len(parts) == 3 else "")
    # Mailchimp's common tags, so an imported template never sends them literally.
    if kind == "UNSUB" and len(parts) == 1:
        return ("UNSUBSCRIBE_URL",)
    if kind == "ARCHIVE" and len(parts) == 1:
        return ("WEB_VERSION_URL",)
    if kind in ("FNAME", "LNAME") and len(parts) <= 2:
        return (kind, parts[1] if len(parts) == 2 else "")
    if kind == "OPEN" and len(parts) == 1:  # tracking (added by engagement.links, never by a source)
        return ("OPEN",)
    if kind == "CLICK" and len(parts) == 2 and parts[1].isdigit() and len(parts[1]) <= 6:
        return ("CLICK", int(parts[1]))
    return None


def name_part(r: Recipient, kind: str) -> str:
    """A reader's first (``FNAME``) or last (``LNAME``) name: the ``first_name``/``last_name``
    attribute when imported, else the first word of their name / the rest of it."""
    attrs = r.attributes or {}
    key = "first_name" if kind == "FNAME" else "last_name"
    value = attrs.get(key) or attrs.get(kind) or attrs.get(kind.lower())
    if value:
        return str(value)
    words = (r.name or "").split()
    if not words:
        return ""
    return words[0] if kind == "FNAME" else " ".join(words[1:])


def unknown_tags(*bodies: str) -> list[str]:
    """The merge tags in ``bodies`` this dispatcher would not fill (they would go out as
    written), sorted and distinct."""
    return sorted({m.group(0) for b in bodies for m in _TAG.finditer(b or "")
                   if _parse_tag(m.group("a") or m.group("b"), m.group("a") is None) is None})


def find_tags(text: str) -> list[str]:
    """The merge tags present in ``text`` (as written), for checks and display."""
    return [m.group(0) for m in _TAG.finditer(text)]


class MessageFactory:
    """Builds each recipient's message from a skeleton made once per campaign.

    ``build(recipient)`` returns :class:`Built`; it costs a few dozen microseconds (a join of
    pre-encoded bytes), never an ``EmailMessage``. ``signer`` (e.g. DKIM) receives the
    finished bytes and returns the header lines to prepend.
    """

    def __init__(
        self,
        content: CampaignContent,
        *,
        base_url: str,
        unsubscribe_token: Callable[[int, int], str],
        preferences_token: Callable[[int], str] | None = None,
        newsletter_name: str = "",
        instance_key: bytes = b"",
        precedence_bulk: bool = False,
        unsubscribe_mailto: str | None = None,
        envelope_from: str | None = None,
        signer: Callable[[bytes], bytes] | None = None,
        copy_address: Callable[[int], str | None] | None = None,
        verp: bool = False,
        feedback_id: Callable[[str], str] | None = None,
        tracker=None,
        view_token: Callable[[int], str] | None = None,
    ):
        self.content = content
        # ``view_token(subscriber_id)``: the signed token of the reader's own web version
        # (``{base_url}/view/TOKEN``, one HMAC per copy); without it (or for a copy to no stored
        # reader) *|WEB_VERSION_URL|* is the campaign's anonymous archive page.
        self._view_token = view_token
        self._view_last: tuple[int, str] = (0, "")  # (subscriber, url): both parts of a copy share one HMAC
        # Tracking (engagement.links.Tracker): fills *|CLICK:n|* and *|OPEN|* per reader; without
        # it those tags are unknown and left as written.
        self._tracker = tracker
        self.base_url = base_url.rstrip("/")
        self._token = unsubscribe_token
        # ``preferences_token(subscriber_id)``: the reader's signed preferences link; without it
        # (or for a copy to no stored reader) *|PREFERENCES_URL|* is the unsubscribe link.
        self._prefs_token = preferences_token
        self.signer = signer
        # Feedback (issue 13): ``copy_address(subscriber_id)`` is the signed per-copy address
        # (``bounces+TOKEN@domain``, one HMAC): its TOKEN goes in ``X-Newsletter-Ref`` (read back
        # when a bounce quotes our headers) and, with ``verp``, the address is the envelope sender.
        # ``feedback_id(list_slug)`` gives Gmail's Feedback-ID.
        self._copy_address = copy_address
        self._verp = verp and copy_address is not None
        from_value = format_address(content.from_address, "From")
        self.from_email = parseaddr(content.from_address)[1]
        self.mail_from = envelope_from or self.from_email
        self.domain = self.from_email.rsplit("@", 1)[1].lower()
        self._msgid_tag = hashlib.sha256(b"newsletter-message-id:" + instance_key).hexdigest()[:10]
        self.web_version_url = f"{self.base_url}/archive/{content.campaign_id}"
        mailto = unsubscribe_mailto or (parseaddr(content.reply_to)[1] if content.reply_to else self.from_email)
        self._mailto = check_mailto("unsubscribe_mailto", mailto)
        for k, v in content.headers.items():
            check_header_name(k)
            check_header_value(k, v)
        self._subject_tags = bool(_TAG.search(content.subject))

        boundary_alt = "==nl_alt_" + uuid.uuid4().hex
        boundary_rel = "==nl_rel_" + uuid.uuid4().hex
        static: list[bytes] = [encode_header("From", from_value)]
        if content.reply_to:
            static.append(encode_header("Reply-To", format_address(content.reply_to, "Reply-To")))
        if not self._subject_tags:
            static.append(encode_header("Subject", content.subject))
        static.append(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click")
        if precedence_bulk:
            static.append(b"Precedence: bulk")
        for k, v in content.headers.items():
            static.append(encode_header(k, v))
        static.append(b"MIME-Version: 1.0")
        static.append(f'Content-Type: multipart/alternative;\r\n boundary="{boundary_alt}"'.encode())
        self._static_headers = CRLF.join(static) + CRLF + CRLF
        self._list_ids = {}
        name = " ".join(newsletter_name.split()) if newsletter_name else ""
        for lid, slug in content.lists.items():
            value = f"{name} <{slug}.{self.domain}>" if name else f"<{slug}.{self.domain}>"
            self._list_ids[lid] = encode_header("List-Id", value) + CRLF
            if feedback_id is not None:
                self._list_ids[lid] += encode_header("Feedback-ID", feedback_id(slug)) + CRLF

        text_head = (
            f"--{boundary_alt}\r\n"
            'Content-Type: text/plain; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
        ).encode()
        html_head = b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
        if content.images:
            between = (
                f"\r\n--{boundary_alt}\r\n"
                f'Content-Type: multipart/related;\r\n boundary="{boundary_rel}"\r\n\r\n'
                f"--{boundary_rel}\r\n"
            ).encode() + html_head
            tail = [b""]
            for img in content.images:
                for what, v in (("cid", img.cid), ("filename", img.filename), ("content type", img.content_type)):
                    check_header_value(f"image {what}", v)
                tail.append(
                    (f"--{boundary_rel}\r\n"
                     f"Content-Type: {img.content_type}\r\n"
                     "Content-Transfer-Encoding: base64\r\n"
                     f"Content-ID: <{img.cid}>\r\n"
                     f'Content-Disposition: inline; filename="{img.filename}"\r\n\r\n').encode()
                    + b64_body(img.data)
                )
            tail.append(f"--{boundary_rel}--\r\n--{boundary_alt}--\r\n".encode())
            end = CRLF.join(tail)
        else:
            between = f"\r\n--{boundary_alt}\r\n".encode() + html_head
            end = f"\r\n--{boundary_alt}--\r\n".encode()
        self._text = self._split(content.text)
        self._html = self._split(content.html)
        self._text_head, self._between, self._end = text_head, between, end

    # -- build time -------------------------------------------------------------------------
    def _split(self, body: str) -> _Part:
        pieces: list[bytes] = []
        tags: list[tuple] = []
        pos = 0
        buf: list[str] = []
        for m in _TAG.finditer(body):
            tag = _parse_tag(m.group("a") or m.group("b"), m.group("a") is None)
            buf.append(body[pos:m.start()])
            pos = m.end()
            if tag is None or (tag[0] in ("CLICK", "OPEN") and self._tracker is None):  # unknown: as written
                buf.append(m.group(0))
            elif tag[0] == "WEB_VERSION_URL" and self._view_token is None:  # the same for everyone: resolve now
                buf.append(self.web_version_url)
            else:
                pieces.append(qp_encode("".join(buf).encode("utf-8")) + SOFT)
                buf = []
                tags.append(tag)
        buf.append(body[pos:])
        pieces.append(qp_encode("".join(buf).encode("utf-8")))
        return _Part(pieces, tags)

    # -- per recipient ---------------------------------------------------------------------
    def unsubscribe_url(self, r: Recipient) -> str:
        return f"{self.base_url}/unsubscribe/{self._token(r.subscriber_id, r.list_id)}"

    def preferences_url(self, r: Recipient, unsub: str) -> str:
        if self._prefs_token is None or r.subscriber_id <= 0:
            return unsub
        return f"{self.base_url}/preferences/{self._prefs_token(r.subscriber_id)}"

    def message_id(self, subscriber_id: int) -> str:
        """Stable for (campaign, subscriber): a resend after a crash is recognisable downstream."""
        return f"<nl.{self.content.campaign_id}.{subscriber_id}.{self._msgid_tag}@{self.domain}>"

    def _value(self, tag: tuple, r: Recipient, unsub: str) -> str:
        kind = tag[0]
        if kind in ("CLICK", "OPEN"):
            t = self._tracker
            if t is None:
                return ""
            if t.skip(r.attributes) or r.subscriber_id <= 0:
                return t.original(tag[1]) if kind == "CLICK" else t.BLANK_PIXEL
            return t.click(r.subscriber_id, tag[1]) if kind == "CLICK" else t.open(r.subscriber_id)
        if kind == "PREFERENCES_URL":
            return self.preferences_url(r, unsub)
        if kind == "WEB_VERSION_URL":
            return self.view_url(r)
        return self._reader_value(tag, r, unsub)

    def view_url(self, r: Recipient) -> str:
        """The reader's own web version (signed); a copy to no stored reader (a test send) gets the
        campaign's anonymous copy, signed too (subscriber 0), since the campaign may never be in the
        public archive; without a view token, the archive page."""
        if self._view_token is None:
            return self.web_version_url
        if r.subscriber_id <= 0:
            return f"{self.base_url}/view/{self._view_token(0)}"
        last = self._view_last  # one tuple, read and written whole: safe across sending threads
        if last[0] != r.subscriber_id:
            last = self._view_last = (r.subscriber_id, f"{self.base_url}/view/{self._view_token(r.subscriber_id)}")
        return last[1]

    @staticmethod
    def _reader_value(tag: tuple, r: Recipient, unsub: str, prefs: str = "") -> str:
        """The value of a reader tag (everything but tracking) for ``r``."""
        kind = tag[0]
        if kind == "UNSUBSCRIBE_URL":
            return unsub
        if kind == "PREFERENCES_URL":
            return prefs or unsub
        if kind == "EMAIL":
            return r.email
        if kind == "NAME":
            return r.name or tag[1]
        if kind in ("FNAME", "LNAME"):
            return name_part(r, kind) or tag[1]
        v = r.attributes.get(tag[1]) if r.attributes else None
        return tag[2] if v is None or v == "" else str(v)

    def _render(self, part: _Part, r: Recipient, unsub: str, escape: bool) -> list[bytes]:
        pieces = part.pieces
        if not part.tags:
            return [pieces[0]]
        cache: dict = {}
        out = [pieces[0]]
        for i, tag in enumerate(part.tags, 1):
            enc = cache.get(tag)
            if enc is None:
                v = self._value(tag, r, unsub)
                if "\r" in v or "\n" in v:
                    v = " ".join(v.split())
                enc = cache[tag] = qp_value(_html.escape(v) if escape else v) + SOFT
            out.append(enc)
            out.append(pieces[i])
        return out

    def build(self, r: Recipient, *, date: str | None = None) -> Built:
        email = r.email
        if "@" not in email or UNSAFE.search(email):  # CR, LF, U+2028...: the ledger row fails
            raise InvalidInput(f"recipient {email!r} is not a valid address")
        unsub = self.unsubscribe_url(r)
        msgid = self.message_id(r.subscriber_id)
        to = to_header_value(r.name, email)
        head = [
            encode_header("To", to) if not to.isascii() or len(to) > 70 else b"To: " + to.encode(),
            b"Message-ID: " + msgid.encode(),
            b"Date: " + (date or _date_now()).encode(),
            b"List-Unsubscribe: <" + unsub.encode() + b">,\r\n <mailto:" + self._mailto.encode()
            + b"?subject=" + quote("unsubscribe " + unsub.rsplit("/", 1)[1]).encode() + b">",
        ]
        if self._subject_tags:
            subject = _TAG.sub(lambda m: self._subject_value(m, r, unsub), self.content.subject)
            head.append(encode_header("Subject", subject))
        mail_from = self.mail_from
        if self._copy_address is not None and r.subscriber_id > 0:
            copy = self._copy_address(r.subscriber_id)
            if copy:
                head.append(b"X-Newsletter-Ref: " + copy.rpartition("@")[0].rpartition("+")[2].encode("ascii"))
                if self._verp:
                    mail_from = copy
        data = b"".join([
            CRLF.join(head), CRLF,
            self._list_ids.get(r.list_id, b""),
            self._static_headers,
            self._text_head,
            *self._render(self._text, r, unsub, False),
            self._between,
            *self._render(self._html, r, unsub, True),
            self._end,
        ])
        if self.signer is not None:
            data = self.signer(data) + data
        return Built(mail_from, email, data, msgid)

    def _subject_value(self, m: re.Match, r: Recipient, unsub: str) -> str:
        tag = _parse_tag(m.group("a") or m.group("b"), m.group("a") is None)
        if tag is None:
            return m.group(0)
        return header_text(self._value(tag, r, unsub))  # a reader's own text: made safe, not refused


_date_cache: list = [0, ""]


def _date_now() -> str:
    """RFC 5322 date, computed once per second."""
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache[0], _date_cache[1] = now, formatdate(now, localtime=False, usegmt=True)
    return _date_cache[1]


def render_preview(text: str, r: Recipient, *, unsubscribe_url: str, web_version_url: str, html: bool,
                   preferences_url: str = "") -> str:
    """Substitute merge tags in ``text`` for one recipient (for previews and test sends); the
    preferences link is ``preferences_url``, else the unsubscribe link."""

    def sub(m: re.Match) -> str:
        tag = _parse_tag(m.group("a") or m.group("b"), m.group("a") is None)
        if tag is None or tag[0] in ("CLICK", "OPEN"):  # tracking exists only in real sends
            return m.group(0)
        if tag[0] == "WEB_VERSION_URL":
            v = web_version_url
        else:
            v = MessageFactory._reader_value(tag, r, unsubscribe_url, preferences_url)
        return _html.escape(v) if html else v

    return _TAG.sub(sub, text)


def iter_tags(bodies: Iterable[str]) -> set[str]:
    """Distinct merge tags in several bodies."""
    return {t for b in bodies for t in find_tags(b)}
