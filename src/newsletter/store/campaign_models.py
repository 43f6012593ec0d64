"""Campaigns (a frozen snapshot of what will be sent) and the delivery ledger (SQLModel tables).

A campaign holds the final HTML and text with merge tags still in them, the envelope
headers, its inline images and target lists. The ledger has exactly one ``deliveries`` row
per (campaign, subscriber) — the unique key is what makes "one copy per reader" a database
fact rather than a hope. Row states::

    pending ──claim──> claimed ──hand to SMTP──> sending ──> sent | failed | deferred
       ^                  │                                       │
       └──release/recover─┘          deferred ──next_attempt_at──>┘ (claimable again)
    pending/deferred ──unsubscribed or suppressed since──> skipped
    held ──A/B test share, or its winner decided──> pending (with ``variant``) | skipped (cancelled)

``claimed`` rows are held by a live worker and were never handed to a server, so a crash
returns them to ``pending``; ``sending`` rows were (or were about to be) handed to a server
and their outcome is unknown after a crash: these are the "ambiguous" ones.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .lifecycle import CampaignStatus, DeliveryState
from .models import UtcDateTime, utcnow

CAMPAIGN_STATUSES = tuple(s.value for s in CampaignStatus)
DELIVERY_STATES = tuple(s.value for s in DeliveryState)


def _in(values) -> str:
    return ", ".join(f"'{v}'" for v in values)


class Campaign(SQLModel, table=True):
    """What will be sent, to which lists, and where sending stands."""

    __tablename__ = "campaigns"
    __table_args__ = (
        sa.CheckConstraint(f"status in ({_in(CAMPAIGN_STATUSES)})", name="ck_campaigns_status"),
        sa.Index("ix_campaigns_status", "status"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(default="", sa_type=sa.Text(), nullable=False)
    subject: str = Field(sa_type=sa.Text(), nullable=False)
    from_address: str = Field(sa_type=sa.Text(), nullable=False)
    reply_to: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    preheader: str = Field(default="", sa_type=sa.Text(), nullable=False)
    html: str = Field(sa_type=sa.Text(), nullable=False)
    text: str = Field(sa_type=sa.Text(), nullable=False)
    # Extra headers given at creation (name -> value), checked for CR/LF like every other value.
    headers: dict = Field(default_factory=dict, sa_type=sa.JSON(), nullable=False)
    # Where the content came from and what it holds (digest folder, article keys) for display.
    meta: dict = Field(default_factory=dict, sa_type=sa.JSON(), nullable=False)
    status: str = Field(default="draft", sa_type=sa.String(16), nullable=False)
    status_reason: str = Field(default="", sa_type=sa.Text(), nullable=False)  # in words, for people
    # Who paused it (``lifecycle.PauseKind``) while ``status`` is paused, else NULL: code matches
    # on this, never on the reason's words.
    pause_kind: Optional[str] = Field(default=None, sa_type=sa.String(16), nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    scheduled_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    started_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    finished_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # Set once the ledger rows exist (sending started): later subscribers are not added.
    ledger_created_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # SQLite allows one sender per campaign: who holds it and when it last said it is alive.
    lock_owner: Optional[str] = Field(default=None, sa_type=sa.String(200), nullable=True)
    lock_heartbeat_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # In the public archive? None: as its lists say (``lists.archive``); else this campaign's own choice.
    archive: Optional[bool] = Field(default=None, nullable=True)


class CampaignList(SQLModel, table=True):
    """A target list of a campaign (a subscriber on several of them gets one copy)."""

    __tablename__ = "campaign_lists"

    campaign_id: int = Field(
        sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], primary_key=True
    )
    list_id: int = Field(sa_column_args=[sa.ForeignKey("lists.id", ondelete="CASCADE")], primary_key=True)


class CampaignImage(SQLModel, table=True):
    """An inline image of a campaign, sent as a CID part next to the HTML."""

    __tablename__ = "campaign_images"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "cid", name="uq_campaign_images_campaign_cid"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], nullable=False)
    cid: str = Field(sa_type=sa.String(200), nullable=False)
    filename: str = Field(sa_type=sa.String(255), nullable=False)
    content_type: str = Field(sa_type=sa.String(100), nullable=False)
    data: bytes = Field(sa_type=sa.LargeBinary(), nullable=False)


class Delivery(SQLModel, table=True):
    """One row per (campaign, subscriber): the ledger that makes sending exactly-once and resumable."""

    __tablename__ = "deliveries"
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "subscriber_id", name="uq_deliveries_campaign_subscriber"),
        sa.CheckConstraint(f"state in ({_in(DELIVERY_STATES)})", name="ck_deliveries_state"),
        # (campaign, state, id): claiming "the next N pending rows in id order" is an index range scan
        sa.Index("ix_deliveries_campaign_state", "campaign_id", "state", "id"),
        # no index on worker_id: every query naming it also names the campaign and state, or ids
        # a local-time campaign claims "pending rows whose bucket is due, in due order": a range scan.
        # Partial: only local-time rows are in it, so the three updates of every other copy skip it.
        sa.Index("ix_deliveries_campaign_state_due", "campaign_id", "state", "due_at", "id",
                 postgresql_where=sa.text("due_at IS NOT NULL"), sqlite_where=sa.text("due_at IS NOT NULL")),
        # a subscriber's copies (bounce rules: "did we ever mail them", "a later copy arrived")
        sa.Index("ix_deliveries_subscriber", "subscriber_id"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], nullable=False)
    subscriber_id: int = Field(
        sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=False
    )
    # The list whose unsubscribe link this copy carries (the first target list the reader is on).
    list_id: int = Field(nullable=False)
    email: str = Field(sa_type=sa.String(320), nullable=False)  # the address at ledger creation
    state: str = Field(default="pending", sa_type=sa.String(16), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    last_reply: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    message_id: Optional[str] = Field(default=None, sa_type=sa.String(255), nullable=True)
    worker_id: Optional[str] = Field(default=None, sa_type=sa.String(200), nullable=True)
    server: Optional[str] = Field(default=None, sa_type=sa.String(100), nullable=True)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    sent_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # Local-time delivery (schedule/localtime.py): not handed to a server before this instant, the
    # reader's bucket; NULL for every other campaign.
    due_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # The first "try later" (4xx, dropped connection, timeout): retries go on until retry_max_age after it.
    first_deferred_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    # A/B subject tests: the variant this copy is built with (0 = A); NULL outside a test and while held.
    variant: Optional[int] = Field(default=None, nullable=True)
    # True: the copy was in the test share; False: the rest, sent the winner; NULL outside a test.
    in_test: Optional[bool] = Field(default=None, nullable=True)
