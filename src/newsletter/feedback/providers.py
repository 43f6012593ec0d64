"""What each email provider's webhook events mean, as :class:`~.model.Bounce` records.

Amazon SES (through SNS), SendGrid, Postmark and Mailgun each describe bounces, complaints and
deliveries in their own JSON. These functions read an already verified payload (see
``webhooks.py``) and return the events that are feedback, plus how many they skipped (opens,
clicks, deferrals: not feedback). Each event's ``report_id`` is the provider's event id, so the
same event twice is stored once. Campaign and subscriber come from our signed VERP address or
``X-Newsletter-Ref`` token when the provider echoes them; otherwise record_bounces ties the
event by its recipient address.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Iterable

from ..errors import WebhookRejected
from .classify import classify_smtp_reply, parse_enhanced, parse_reply_code
from .model import Bounce, BounceKind, BounceSource
from .verp import find_verp

MAX_EVENTS = 1000  # events read from one request (SendGrid batches); more is refused
_REF_HEADER_RE = re.compile(r"(?im)^x-newsletter-ref:[ \t]*([a-z2-7]{16,80})[ \t]*$")
_TOKEN_RE = re.compile(r"^[A-Za-z2-7]{16,80}$")


def _text(value: Any, n: int = 1000) -> str:
    return " ".join(str(value).split())[:n] if value is not None else ""


def _address(value: Any) -> str | None:
    text = _text(value, 320)
    if "@" not in text or any(c in text for c in "<>\"\\,;"):
        return None
    return text.lower()


def attribution(secret: bytes, addresses: Iterable[Any] = (), refs: Iterable[Any] = (),
                texts: Iterable[Any] = ()) -> tuple[int, int] | None:
    """(campaign_id, subscriber_id) from the first genuine VERP address among ``addresses``, bare
    ``X-Newsletter-Ref`` token among ``refs``, or either inside raw message ``texts``."""
    if not secret:
        return None
    for a in addresses:
        if isinstance(a, str) and (found := find_verp(a, secret)):
            return found
    for r in refs:
        if isinstance(r, str) and _TOKEN_RE.match(r.strip()):
            found = find_verp(f"x+{r.strip().lower()}@ref.invalid", secret)
            if found:
                return found
    for t in texts:
        if not isinstance(t, str) or not t:
            continue
        head = t[:200000]
        m = _REF_HEADER_RE.search(head)
        if m and (found := find_verp(f"x+{m.group(1).lower()}@ref.invalid", secret)):
            return found
        for line in head.splitlines()[:400]:
            if line.lower().startswith(("return-path:", "x-newsletter-ref:")) and (found := find_verp(line, secret)):
                return found
    return None


def _when_iso(value: Any) -> datetime | None:
    try:
        t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _when_unix(value: Any) -> datetime | None:
    try:
        return datetime.fromtimestamp(float(value), tz=timezone.utc)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _bounce(kind: BounceKind, provider: str, event_id: Any, recipient: str | None, *, status: str | None = None,
            reason: str = "", when: datetime | None = None, ref: tuple[int, int] | None = None) -> Bounce:
    cid, sid = ref if ref else (None, None)
    eid = _text(event_id, 200)
    # Without an event id the report is keyed by what it says (record_bounces' digest).
    return Bounce(kind, BounceSource.WEBHOOK, recipient=recipient, status=status, reason=_text(reason, 300),
                  campaign_id=cid, subscriber_id=sid, report_id=f"{provider}:{eid}" if eid else None,
                  occurred_at=when, provider=provider, attribution="verp" if ref else None)


def _permanent(status: str | None, text: str) -> BounceKind:
    """A permanent failure as our own SMTP replies are read: hard unless it is about space, size,
    content or policy (then soft)."""
    kind = classify_smtp_reply(parse_reply_code(text) or 550, status or parse_enhanced(text), text)
    return kind if kind in (BounceKind.HARD, BounceKind.SOFT) else BounceKind.HARD


def _object_at(obj: dict, key: str) -> dict:
    """``obj[key]`` when it is a JSON object, else ``{}`` (optional parts a provider may leave out)."""
    value = obj.get(key)
    return value if isinstance(value, dict) else {}


def _list_at(obj: dict, key: str) -> list:
    """``obj[key]`` when it is a JSON list, else ``[]``."""
    value = obj.get(key)
    return value if isinstance(value, list) else []


def _need(obj: Any, kind: type, what: str):
    if not isinstance(obj, kind):
        raise WebhookRejected(f"{what} is not a JSON {'object' if kind is dict else 'list'}", 400)
    return obj


# --- Amazon SES (the Message of an SNS notification) ----------------------------------------------

SES_TRANSIENT = BounceKind.SOFT


def ses_events(message: dict, secret: bytes) -> tuple[list[Bounce], int]:
    """Bounces for an SES notification (``notificationType``) or event (``eventType``)."""
    _need(message, dict, "SES message")
    what = message.get("notificationType") or message.get("eventType")
    mail = _object_at(message, "mail")
    headers = _list_at(mail, "headers")
    refs = [h.get("value") for h in headers[:200] if isinstance(h, dict) and str(h.get("name", "")).lower() == "x-newsletter-ref"]
    returns = [h.get("value") for h in headers[:200] if isinstance(h, dict) and str(h.get("name", "")).lower() == "return-path"]
    ref = attribution(secret, [mail.get("source"), *returns], refs)
    out: list[Bounce] = []
    if what == "Bounce":
        b = _need(message.get("bounce"), dict, "SES bounce")
        btype = str(b.get("bounceType", ""))
        for r in _need(b.get("bouncedRecipients", []), list, "SES bouncedRecipients")[:MAX_EVENTS]:
            if not isinstance(r, dict):
                continue
            status = parse_enhanced(_text(r.get("status"), 20))
            diag = _text(r.get("diagnosticCode")) or _text(b.get("bounceSubType"))
            if btype == "Permanent":
                kind = BounceKind.HARD if not status or status.startswith("5.1.") or not diag else _permanent(status, diag)
            elif btype == "Transient":
                kind = SES_TRANSIENT
            else:
                kind = BounceKind.UNKNOWN
            out.append(_bounce(kind, "ses", b.get("feedbackId"), _address(r.get("emailAddress")), status=status,
                               reason=f"{btype}/{_text(b.get('bounceSubType'), 40)}: {diag}".strip(": "),
                               when=_when_iso(b.get("timestamp")), ref=ref))
        return out, 0
    if what == "Complaint":
        c = _need(message.get("complaint"), dict, "SES complaint")
        if c.get("complaintSubType") == "OnAccountSuppressionList":
            return [], 1  # SES did not send it: the address was on our account's list already
        for r in _need(c.get("complainedRecipients", []), list, "SES complainedRecipients")[:MAX_EVENTS]:
            if isinstance(r, dict):
                out.append(_bounce(BounceKind.COMPLAINT, "ses", c.get("feedbackId"), _address(r.get("emailAddress")),
                                   reason=_text(c.get("complaintFeedbackType")) or "complaint",
                                   when=_when_iso(c.get("timestamp")), ref=ref))
        return out, 0
    if what == "Delivery":
        d = _need(message.get("delivery"), dict, "SES delivery")
        for addr in _need(d.get("recipients", []), list, "SES delivery recipients")[:MAX_EVENTS]:
            out.append(_bounce(BounceKind.DELIVERED, "ses", mail.get("messageId") and f"delivery:{_text(mail.get('messageId'), 120)}",
                               _address(addr), status=parse_enhanced(_text(d.get("smtpResponse"))),
                               reason=_text(d.get("smtpResponse")), when=_when_iso(d.get("timestamp")), ref=ref))
        return out, 0
    return [], 1


# --- SendGrid event webhook ----------------------------------------------------------------------

def sendgrid_events(events: list, secret: bytes) -> tuple[list[Bounce], int]:
    """Bounces for a batch of SendGrid events (bounce, blocked, dropped, spamreport, delivered)."""
    _need(events, list, "SendGrid payload")
    if len(events) > MAX_EVENTS:
        raise WebhookRejected(f"SendGrid payload has {len(events)} events; at most {MAX_EVENTS} are read", 400)
    out: list[Bounce] = []
    skipped = 0
    for e in events:
        if not isinstance(e, dict):
            skipped += 1
            continue
        what, reason = str(e.get("event", "")), _text(e.get("reason") or e.get("response"))
        status = parse_enhanced(_text(e.get("status"), 20)) or parse_enhanced(reason)
        if what == "bounce" and str(e.get("type", "bounce")) == "blocked":
            kind = BounceKind.SOFT  # a block of the message (policy, reputation): not the mailbox
        elif what == "bounce":
            kind = _permanent(status, reason)
        elif what == "spamreport":
            kind, reason = BounceKind.COMPLAINT, reason or "spam report"
        elif what == "delivered":
            kind = BounceKind.DELIVERED
        elif what == "dropped" and ("bounced address" in reason.lower() or reason.lower() == "invalid"):
            kind = BounceKind.HARD  # SendGrid's own suppression: this address bounced before
        elif what == "dropped" and "spam reporting address" in reason.lower():
            kind = BounceKind.COMPLAINT
        else:
            skipped += 1
            continue
        ref = attribution(secret, [], [e.get("newsletter_ref")])
        out.append(_bounce(kind, "sendgrid", e.get("sg_event_id"), _address(e.get("email")), status=status,
                           reason=f"{what}: {reason}" if reason else what, when=_when_unix(e.get("timestamp")), ref=ref))
    return out, skipped


# --- Mailgun ---------------------------------------------------------------------------------------

def mailgun_events(data: dict, secret: bytes) -> tuple[list[Bounce], int]:
    """Bounces for one Mailgun ``event-data`` (failed, complained, delivered)."""
    _need(data, dict, "Mailgun event-data")
    what = str(data.get("event", ""))
    ds = _object_at(data, "delivery-status")
    env = _object_at(data, "envelope")
    uv = _object_at(data, "user-variables")
    ref = attribution(secret, [env.get("sender")], [uv.get("newsletter_ref"), uv.get("newsletter-ref")])
    text = " ".join(x for x in (_text(ds.get("code"), 5), _text(ds.get("message")), _text(ds.get("description"))) if x)
    status = parse_enhanced(_text(ds.get("enhanced-code"), 20)) or parse_enhanced(text)
    if what == "failed":
        severity = str(data.get("severity", ""))
        if severity == "permanent":
            kind = BounceKind.HARD if _text(data.get("reason")) in ("suppress-bounce",) else _permanent(status, text)
        elif severity == "temporary":
            kind = BounceKind.SOFT
        else:
            kind = BounceKind.UNKNOWN
        reason = f"{severity} ({_text(data.get('reason'), 40)}): {text}".strip(": ")
    elif what == "complained":
        kind, reason = BounceKind.COMPLAINT, "complaint"
    elif what == "delivered":
        kind, reason = BounceKind.DELIVERED, text
    else:
        return [], 1
    return [_bounce(kind, "mailgun", data.get("id"), _address(data.get("recipient")), status=status, reason=reason,
                    when=_when_unix(data.get("timestamp")), ref=ref)], 0


# --- Postmark --------------------------------------------------------------------------------------

POSTMARK_HARD = {"HardBounce", "BadEmailAddress", "ManuallyDeactivated"}
POSTMARK_SOFT = {"SoftBounce", "Transient", "DnsError", "Blocked", "SMTPApiError"}


def postmark_event_id(record: dict) -> str:
    """The identity of a Postmark record: its ID (bounces, complaints), else its MessageID."""
    rid = record.get("ID") if record.get("ID") not in (None, "") else record.get("MessageID")
    if rid in (None, "") or isinstance(rid, (dict, list)):
        raise WebhookRejected("Postmark payload has neither ID nor MessageID", 400)
    return f"{_text(record.get('RecordType'), 30)}:{_text(rid, 200)}"


def postmark_events(record: dict, secret: bytes) -> tuple[list[Bounce], int]:
    """Bounces for one Postmark webhook record (Bounce, SpamComplaint, Delivery)."""
    _need(record, dict, "Postmark payload")
    what = str(record.get("RecordType", ""))
    meta = _object_at(record, "Metadata")
    ref = attribution(secret, [], [meta.get("newsletter_ref"), meta.get("newsletter-ref")], [record.get("Content")])
    details = _text(record.get("Details")) or _text(record.get("Description"))
    status = parse_enhanced(details)
    eid = postmark_event_id(record)
    if what == "Bounce" or (what == "SpamComplaint"):
        btype = str(record.get("Type", ""))
        if what == "SpamComplaint" or btype in ("SpamComplaint", "SpamNotification"):
            kind = BounceKind.COMPLAINT
        elif btype in POSTMARK_HARD:
            kind = BounceKind.HARD
        elif btype in POSTMARK_SOFT:
            kind = BounceKind.SOFT
        elif btype == "AutoResponder":
            kind = BounceKind.AUTO_REPLY
        else:
            kind = BounceKind.UNKNOWN
        return [_bounce(kind, "postmark", eid, _address(record.get("Email")), status=status,
                        reason=f"{btype}: {details}".strip(": "), when=_when_iso(record.get("BouncedAt")), ref=ref)], 0
    if what == "Delivery":
        return [_bounce(BounceKind.DELIVERED, "postmark", eid, _address(record.get("Recipient")), status=status,
                        reason=details, when=_when_iso(record.get("DeliveredAt")), ref=ref)], 0
    return [], 1
