"""One table of bounce events, whatever their source (mailbox, webhook, SMTP reply during a send).

A row is one report about one recipient. ``(report_id, recipient)`` is unique, so the same
message read twice (a crash between recording and moving it, a webhook retried) counts once.
Rows tied to a subscriber go with them (``ON DELETE CASCADE``): erasing a person leaves no
bounce history and no address behind. ``outcome`` says what the rules did with the event.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from ..feedback.model import BounceKind, BounceSource
from .models import UtcDateTime, utcnow

BOUNCE_KINDS = tuple(k.value for k in BounceKind)
BOUNCE_SOURCES = tuple(s.value for s in BounceSource)
# What recording an event did: "bounced"/"complained" (the subscriber was taken off every list
# and suppressed), "counted" (a soft bounce below the limit), "none" (stored only: auto-reply,
# delivered, unknown, or the person had already left), "unmatched" (no subscriber we ever mailed).
BOUNCE_OUTCOMES = ("bounced", "complained", "counted", "none", "unmatched")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class BounceEvent(SQLModel, table=True):
    """One bounce, complaint, auto-reply or delivery report for one recipient."""

    __tablename__ = "bounce_events"
    __table_args__ = (
        sa.UniqueConstraint("report_id", "recipient", name="uq_bounce_events_report_recipient"),
        sa.CheckConstraint(f"kind in ({_in(BOUNCE_KINDS)})", name="ck_bounce_events_kind"),
        sa.CheckConstraint(f"source in ({_in(BOUNCE_SOURCES)})", name="ck_bounce_events_source"),
        sa.CheckConstraint(f"outcome in ({_in(BOUNCE_OUTCOMES)})", name="ck_bounce_events_outcome"),
        # per-campaign counts: WHERE campaign_id = :c GROUP BY kind
        sa.Index("ix_bounce_events_campaign_kind", "campaign_id", "kind"),
        # a subscriber's history and the soft-bounce window: WHERE subscriber_id = :s AND occurred_at > :t
        sa.Index("ix_bounce_events_subscriber_time", "subscriber_id", "occurred_at"),
        # erasure and look-ups by address
        sa.Index("ix_bounce_events_recipient", "recipient"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    subscriber_id: Optional[int] = Field(
        default=None, sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=True
    )
    campaign_id: Optional[int] = Field(
        default=None, sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="SET NULL")], nullable=True
    )
    recipient: str = Field(default="", sa_type=sa.String(320), nullable=False)  # lowercased; "" when unknown
    kind: str = Field(sa_type=sa.String(16), nullable=False)
    status: Optional[str] = Field(default=None, sa_type=sa.String(16), nullable=True)  # enhanced code, e.g. 5.1.1
    reason: str = Field(default="", sa_type=sa.Text(), nullable=False)
    source: str = Field(sa_type=sa.String(16), nullable=False)
    provider: Optional[str] = Field(default=None, sa_type=sa.String(32), nullable=True)
    report_id: str = Field(sa_type=sa.String(255), nullable=False)
    outcome: str = Field(default="none", sa_type=sa.String(16), nullable=False)
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    recorded_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
