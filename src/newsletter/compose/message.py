"""The digest as one RFC 5322 message: multipart/alternative (text, then HTML), with the HTML in a
multipart/related beside its images when they are embedded (CID) — as they always are in the
message when digest.html links them by a path relative to out/."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, getaddresses, make_msgid
from urllib.parse import urlparse

from ..errors import InvalidInput
from .headers import check_header
from .model import Digest, InlineImage


def _domain(from_address: str) -> str:
    addrs = getaddresses([from_address])
    if addrs and "@" in addrs[0][1]:
        return addrs[0][1].rsplit("@", 1)[1]
    return "newsletter.invalid"


def embed_relative_assets(digest: Digest) -> Digest:
    """A copy of ``digest`` fit to be mailed: images it links by a relative path (``assets/...``,
    the default when no ``asset_base_url`` is configured) become CID parts, since a reader's mail
    client cannot resolve a path relative to ``out/``. Absolute (http) asset URLs are left alone.
    Dispatch should freeze campaigns from this, not from the digest as written for the browser."""
    relative = [a for a in digest.assets if not urlparse(a.url).scheme]
    if not relative:
        return digest
    html = digest.html
    images = list(digest.images)
    known = {i.cid for i in images}
    for a in relative:
        cid = f"{a.filename}@newsletter"
        # Exact attribute value: asset names are content hashes, so this cannot hit anything else.
        html = html.replace(f'src="{a.url}"', f'src="cid:{cid}"')
        if cid not in known:
            images.append(InlineImage(cid=cid, filename=a.filename, content_type=a.content_type, data=a.data))
            known.add(cid)
    keep = [a for a in digest.assets if a not in relative]
    return dataclasses.replace(digest, html=html, images=images, assets=keep, html_size=len(html.encode("utf-8")))


def build_message(digest: Digest, *, to: str | None = None, message_id: str | None = None) -> EmailMessage:
    """A complete, self-contained message for ``digest`` (Subject, From, Date, Message-ID,
    MIME-Version...), with relatively linked images embedded (see :func:`embed_relative_assets`).
    Every header value goes through :func:`check_header` (line breaks and control characters,
    also hidden in encoded words, are refused): InvalidInput then, or for an unusable From."""
    digest = embed_relative_assets(digest)
    msg = EmailMessage(policy=policy.SMTP)
    from_address = check_header("From", digest.from_address)
    if not from_address or "@" not in from_address:
        raise InvalidInput(f"from_address {from_address!r}: not an email address (set from_address in the config)")
    try:
        msg["Subject"] = check_header("Subject", digest.subject)
        msg["From"] = from_address
        # digest.eml has no one reader: an empty group, as for a message whose readers are all Bcc
        # (a message without To is MISSING_HEADERS to content filters).
        msg["To"] = check_header("To", to) if to else "undisclosed-recipients:;"
        if digest.reply_to:
            msg["Reply-To"] = check_header("Reply-To", digest.reply_to)
    except (ValueError, IndexError, TypeError) as e:
        raise InvalidInput(f"message header: {e}") from None
    msg["Date"] = format_datetime(digest.date or datetime.now(timezone.utc))
    msg["Message-ID"] = check_header("Message-ID", message_id) if message_id else make_msgid(domain=_domain(from_address))
    msg["MIME-Version"] = "1.0"
    msg.set_content(digest.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(digest.html, subtype="html", charset="utf-8", cte="quoted-printable")
    if digest.images:
        html_part = list(msg.iter_parts())[1]  # text, then html
        for img in digest.images:
            maintype, _, subtype = img.content_type.partition("/")
            html_part.add_related(
                img.data, maintype=maintype, subtype=subtype, cid=f"<{img.cid}>", filename=img.filename, disposition="inline"
            )
    return msg

