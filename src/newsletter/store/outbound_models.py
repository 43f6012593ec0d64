"""Outgoing event webhooks: one row per (operator URL, event) to POST, with its retry state, and a
cursor per event source saying how far the collector has read.

``(url, event_key)`` is unique, so reading a source again (the collector re-reads a short
overlap to catch rows committed late) never posts an event twice.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow


class WebhookDelivery(SQLModel, table=True):
    """One event to POST to one URL: pending until delivered (2xx) or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("url", "event_key", name="uq_webhook_deliveries_url_key"),
        # the deliverer: WHERE delivered_at IS NULL AND failed_at IS NULL AND next_attempt_at <= :now
        sa.Index("ix_webhook_deliveries_due", "next_attempt_at"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    url: str = Field(sa_type=sa.Text(), nullable=False)
    event: str = Field(sa_type=sa.String(32), nullable=False)
    event_key: str = Field(sa_type=sa.String(200), nullable=False)
    payload: str = Field(sa_type=sa.Text(), nullable=False)  # the JSON body, exactly as signed and sent
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    attempts: int = Field(default=0, nullable=False)
    next_attempt_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    delivered_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    failed_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    last_error: str = Field(default="", sa_type=sa.Text(), nullable=False)


class EventCursor(SQLModel, table=True):
    """How far the collector has read one event source (a time, or an id for append-only tables)."""

    __tablename__ = "event_cursors"

    source: str = Field(sa_type=sa.String(32), primary_key=True)
    at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    last_id: int = Field(default=0, sa_type=sa.BigInteger(), nullable=False)
