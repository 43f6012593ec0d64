"""One-off messages outside any campaign's ledger: ``send_one`` (test sends of a composed digest,
double opt-in confirmations) and ``send_test`` (one ``[TEST]`` copy of a campaign; of an A/B
campaign, one copy per variant, ``[TEST A]``, ``[TEST B]``…).
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from typing import Sequence

from sqlalchemy import select
from sqlalchemy.engine import Engine

from ..config import Config
from ..errors import DispatchError, InvalidInput
from ..store import queries as q
from ..store.db import require_current_schema, transaction
from .campaigns import campaign_lists, get_campaign, stored_id, titled
from .factory import message_factory
from .personalize import Built, Recipient, check_header_value, format_address
from .preflight import make_transports
from .transports import ConnectFailed, Outcome


@dataclass
class OneResult:
    """What the server said to a one-off message, and which transport took it."""

    message_id: str
    reply: str
    transport: str
    variant: str | None = None  # the A/B variant's letter, for a test copy of an A/B campaign


def send_one(
    config: Config,
    to: str,
    subject: str,
    html: str | None,
    text: str,
    *,
    from_address: str | None = None,
    reply_to: str | None = None,
    headers: dict[str, str] | None = None,
    smtp: str | None = None,
    tls: str | None = None,
    outbox: str | None = None,
    transport=None,
    images: Sequence = (),
) -> OneResult:
    """Send one message now, outside any campaign (test sends, double opt-in confirmations).

    ``images`` (``compose.model.InlineImage``) become CID parts next to the HTML
    (``multipart/related``), e.g. ``compose.embed_relative_assets(digest).images``.

    Uses the same transports as campaigns (the outbox when no SMTP is configured) and DKIM when
    configured. Raises InvalidInput for bad headers or addresses and DispatchError when the
    server does not take it (the message names the reply, never the password)."""
    from ..compose.headers import check_header_name
    from .dkim import make_signer

    from_address = from_address or config.from_address
    for k in headers or {}:
        check_header_name(k)
    for k, v in {"To": to, "Subject": subject, **(headers or {})}.items():
        check_header_value(k, v)
    format_address(from_address, "From")
    if reply_to:
        format_address(reply_to, "Reply-To")
    rcpt = parseaddr(to)[1]
    if not rcpt or "@" not in rcpt:
        raise InvalidInput(f"recipient {to!r} is not an email address")
    domain = parseaddr(from_address)[1].rsplit("@", 1)[-1]
    msg = EmailMessage()
    msg["From"] = from_address
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = formatdate(usegmt=True)
    msgid = make_msgid(domain=domain)
    msg["Message-ID"] = msgid
    if reply_to:
        msg["Reply-To"] = reply_to
    for k, v in (headers or {}).items():
        msg[k] = v
    msg.set_content(text, cte="quoted-printable")
    if html:
        msg.add_alternative(titled(html, subject), subtype="html", cte="quoted-printable")
        if images:
            html_part = msg.get_body(preferencelist=("html",))
            assert isinstance(html_part, EmailMessage), "the HTML alternative just added"
            for img in images:
                check_header_value("image cid", img.cid)
                maintype, _, subtype = img.content_type.partition("/")
                html_part.add_related(img.data, maintype=maintype, subtype=subtype or "octet-stream",
                                      cid=f"<{img.cid}>", filename=img.filename, disposition="inline")
    data = msg.as_bytes(policy=msg.policy.clone(linesep="\r\n"))
    signer = make_signer(config)
    if signer is not None:
        data = signer(data) + data
    built = Built(parseaddr(config.bounce_address or "")[1] or parseaddr(from_address)[1], rcpt, data, msgid)
    out, where = _deliver(config, built, transport=transport, smtp=smtp, tls=tls, outbox=outbox, what="message")
    return OneResult(msgid, out.reply, where)


def send_test(engine: Engine, campaign_id: int | str, config: Config, to: str, *, smtp: str | None = None,
              tls: str | None = None, outbox: str | None = None, transport=None) -> OneResult:
    """:func:`send_test_copies`, answering with the first copy's result (A's, for an A/B campaign)."""
    return send_test_copies(engine, campaign_id, config, to, smtp=smtp, tls=tls, outbox=outbox, transport=transport)[0]


def _test_views(engine: Engine, campaign) -> list[tuple[str | None, object]]:
    """[(variant letter or None, the campaign as its test copy is built)]: the subject prefixed
    ``[TEST]`` — per variant, ``[TEST A]``… with the variant's subject and intro, for an A/B test."""
    from ..store.abtests import test_of
    from .abtest import LETTERS, with_intro

    with transaction(engine) as conn:
        test = test_of(conn, stored_id(campaign))
    if test is None:
        c = campaign.model_copy()
        c.subject = "[TEST] " + campaign.subject
        c.html = titled(campaign.html, c.subject)  # the title follows the subject sent
        return [(None, c)]
    views: list[tuple[str | None, object]] = []
    for i, v in enumerate(test.variants):
        c = campaign.model_copy()
        c.subject = f"[TEST {LETTERS[i]}] {v['subject']}"
        c.html, c.text = titled(campaign.html, c.subject), campaign.text
        if v.get("intro"):
            c.html, c.text = with_intro(c.html, c.text, v["intro"])
        views.append((LETTERS[i], c))
    return views


def send_test_copies(engine: Engine, campaign_id: int | str, config: Config, to: str, *, smtp: str | None = None,
                     tls: str | None = None, outbox: str | None = None, transport=None) -> list[OneResult]:
    """Send a campaign's test to ``to``: one copy, subject prefixed ``[TEST]`` — or, for an A/B
    campaign, one copy per variant (``[TEST A] …``, ``[TEST B] …``, each with its intro) so that
    every variant can be checked. The ledger is not touched.

    Merge tags are filled from the subscriber with that address when there is one, else with
    the address alone; the unsubscribe link is a real, signed one only for a real subscriber."""
    require_current_schema(engine)
    campaign = get_campaign(engine, campaign_id)
    rcpt = parseaddr(to)[1]
    check_header_value("To", to)
    if not rcpt or "@" not in rcpt:
        raise InvalidInput(f"test address {to!r} is not an email address")

    subs = q.subscribers
    with transaction(engine) as conn:
        row = conn.execute(select(subs.c.id, subs.c.name, subs.c.attributes).where(subs.c.email_key == rcpt.lower())).first()
    lists = campaign_lists(engine, stored_id(campaign))
    lid = min(lists) if lists else 0
    r = Recipient(row.id if row else 0, lid, rcpt, (row.name if row else "") or "", (row.attributes if row else {}) or {})
    if transport is None:
        transport = make_transports(config, smtp=smtp, tls=tls, outbox=outbox)[0]
    results = []
    for letter, view in _test_views(engine, campaign):
        built = message_factory(engine, view, config).build(r)
        out, where = _deliver(config, built, transport=transport, smtp=smtp, tls=tls, outbox=outbox,
                              what=f"test message{' ' + letter if letter else ''}")
        results.append(OneResult(built.message_id, out.reply, where, letter))
    return results


def _deliver(config: Config, built, *, transport, smtp, tls, outbox, what: str) -> tuple[Outcome, str]:
    """Send one built message on a fresh session; DispatchError unless the server took it."""
    t = transport if transport is not None else make_transports(config, smtp=smtp, tls=tls, outbox=outbox)[0]
    session = t.session()
    try:
        try:
            session.connect()
        except ConnectFailed as e:
            raise DispatchError(str(e)) from None
        out = session.send(built)
    finally:
        session.close()
    if out.fatal:
        raise DispatchError(out.fatal)
    if out.state != "sent":
        raise DispatchError(f"{t.describe()} did not take the {what} to {built.rcpt}: {out.reply}")
    return out, t.describe()

