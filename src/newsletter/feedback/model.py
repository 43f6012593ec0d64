"""The closed vocabulary of feedback: what kind of event a report is, and where it was read.

Every producer (mailbox parser, webhook, SMTP reply during a send) yields :class:`Bounce`
records; every consumer (the rules, ``bounces list``, the web pages) reads them. Adding a kind
or a source means adding it here, nowhere else.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class BounceKind(StrEnum):
    """What a report says happened to one copy for one recipient."""

    HARD = "hard"  # permanent: the address does not work (5.1.1 and the like)
    SOFT = "soft"  # temporary: mailbox full, try later; counts toward a threshold
    COMPLAINT = "complaint"  # the reader marked it as spam (ARF feedback loop, provider event)
    AUTO_REPLY = "auto-reply"  # out of office and other RFC 3834 replies: never counted
    DELIVERED = "delivered"  # a positive DSN (Action: delivered/relayed/expanded)
    UNKNOWN = "unknown"  # a report we could not classify: kept, never acted on


class BounceSource(StrEnum):
    """How the kind and recipient were read."""

    DSN = "dsn"  # RFC 3464 message/delivery-status, field by field
    ARF = "arf"  # RFC 5965 feedback report
    HEURISTIC = "heuristic"  # non-standard bounce text (Exim, qmail, Exchange, ...)
    VERP = "verp"  # only the signed envelope address told us who it was
    SMTP = "smtp"  # a 5xx/4xx reply during our own send
    WEBHOOK = "webhook"  # a provider's signed event (SES, SendGrid, Postmark, Mailgun)


@dataclass(frozen=True)
class Bounce:
    """One event for one recipient, as read from a report; no database involved."""

    kind: BounceKind
    source: BounceSource
    recipient: str | None = None
    status: str | None = None  # enhanced status code such as "5.1.1", when known
    reason: str = ""  # short human text (diagnostic code, feedback type, ...)
    campaign_id: int | None = None
    subscriber_id: int | None = None
    report_id: str | None = None  # identity of the report (Message-ID, provider event id) for idempotency
    occurred_at: datetime | None = None
    provider: str | None = None  # "ses", "sendgrid", ... for webhook events
    attribution: str | None = None  # how campaign/subscriber were found: "verp", "envid", "quoted" (None: not tied)

    def as_json(self) -> dict:
        """The fields as plain JSON values (``bounces parse --format json``)."""
        return {
            "recipient": self.recipient,
            "kind": self.kind.value,
            "status": self.status,
            "reason": self.reason,
            "campaign_id": self.campaign_id,
            "subscriber_id": self.subscriber_id,
            "source": self.source.value,
        }
