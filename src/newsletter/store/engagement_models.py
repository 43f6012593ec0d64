"""Engagement tables: the links a tracked campaign rewrote, and one append-only table of opens
and clicks.

An event row is one hit on a tracking URL, already classified (``agent``: a person, Apple's Mail
Privacy Protection, a mail provider's image proxy, or a link scanner) so the campaign report is
one aggregate query. Rows go with their subscriber (``ON DELETE CASCADE``): erasing a person
leaves no engagement behind. No IP address is kept unless ``store_ip`` is on; ``ip_class`` is a
coarse label instead.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow

EVENT_KINDS = ("open", "click")
AGENTS = ("human", "apple-mpp", "proxy", "scanner")


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class TrackedLink(SQLModel, table=True):
    """Link ``idx`` of a tracked campaign's HTML; a click token names (campaign, subscriber, idx),
    so a redirect only ever goes to a URL the campaign itself held."""

    __tablename__ = "tracked_links"

    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], primary_key=True)
    idx: int = Field(primary_key=True)
    url: str = Field(sa_type=sa.Text(), nullable=False)


class EngagementEvent(SQLModel, table=True):
    """One open or click by one subscriber of one campaign, with who made it (``agent``) and why."""

    __tablename__ = "engagement_events"
    __table_args__ = (
        sa.CheckConstraint(f"kind in ({_in(EVENT_KINDS)})", name="ck_engagement_events_kind"),
        sa.CheckConstraint(f"agent in ({_in(AGENTS)})", name="ck_engagement_events_agent"),
        # the report: WHERE campaign_id = :c GROUP BY kind, agent
        sa.Index("ix_engagement_events_campaign", "campaign_id", "kind", "agent", "subscriber_id"),
        # the burst and canary rules, erasure: WHERE subscriber_id = :s AND occurred_at > :t
        sa.Index("ix_engagement_events_subscriber_time", "subscriber_id", "occurred_at"),
        # retention: DELETE WHERE occurred_at < :cutoff
        sa.Index("ix_engagement_events_time", "occurred_at"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, sa_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True)
    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], nullable=False)
    subscriber_id: int = Field(sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=False)
    kind: str = Field(sa_type=sa.String(8), nullable=False)
    link_idx: Optional[int] = Field(default=None, nullable=True)  # clicks: tracked_links.idx (0 = the canary)
    agent: str = Field(sa_type=sa.String(16), nullable=False)
    why: str = Field(default="", sa_type=sa.String(32), nullable=False)  # the rule that decided the agent
    ip_class: str = Field(default="", sa_type=sa.String(16), nullable=False)
    ip: Optional[str] = Field(default=None, sa_type=sa.String(45), nullable=True)  # only with store_ip = true
    occurred_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
