"""The digest as one RFC 5322 message: multipart/alternative (text, then HTML), with the HTML in a
multipart/related beside its images when they are embedded (CID)."""

from __future__ import annotations

from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid

from ..errors import InvalidInput
from .model import Digest
from .headers import check_header


def _domain(from_address: str) -> str:
    addrs = getaddresses([from_address])
    if addrs and "@" in addrs[0][1]:
        return addrs[0][1].rsplit("@", 1)[1]
    return "newsletter.invalid"


def build_message(digest: Digest, *, to: str | None = None, message_id: str | None = None) -> EmailMessage:
    """A complete message for ``digest`` (Subject, From, Date, Message-ID, MIME-Version...).
    Raises InvalidInput for a header value holding CR/LF or an unusable From address."""
    msg = EmailMessage(policy=policy.SMTP)
    from_address = check_header("From", digest.from_address)
    if not from_address or "@" not in from_address:
        raise InvalidInput(f"from_address {from_address!r}: not an email address (set from_address in the config)")
    try:
        msg["Subject"] = check_header("Subject", digest.subject)
        msg["From"] = from_address
        if to:
            msg["To"] = check_header("To", to)
        if digest.reply_to:
            msg["Reply-To"] = check_header("Reply-To", digest.reply_to)
    except (ValueError, IndexError, TypeError) as e:
        raise InvalidInput(f"message header: {e}") from None
    msg["Date"] = format_datetime(digest.date or datetime.now(timezone.utc))
    msg["Message-ID"] = message_id or make_msgid(domain=_domain(from_address))
    msg["MIME-Version"] = "1.0"
    msg.set_content(digest.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(digest.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if digest.images:
        html_part = msg.get_payload()[1]
        for img in digest.images:
            maintype, _, subtype = img.content_type.partition("/")
            html_part.add_related(
                img.data, maintype=maintype, subtype=subtype, cid=f"<{img.cid}>", filename=img.filename, disposition="inline"
            )
    return msg

