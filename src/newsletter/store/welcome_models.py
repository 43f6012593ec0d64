"""The welcome ledger: one row per (reader, list, series step) a welcome email was or is being sent for.

The unique key (subscriber, list, step) is what makes a welcome go out at most once: the row is
written as ``sending`` before the message leaves (dispatch/welcome.py explains the argument).
Rows go with their subscriber and their list (``ON DELETE CASCADE``), so erasure leaves nothing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow

WELCOME_STATUSES = ("sending", "sent", "failed")


class WelcomeSend(SQLModel, table=True):
    """One step of one reader's welcome on one list: claimed (sending), sent, or refused by the server (failed)."""

    __tablename__ = "welcome_sends"
    __table_args__ = (
        sa.UniqueConstraint("subscriber_id", "list_id", "step", name="uq_welcome_sends_subscriber_list_step"),
        sa.CheckConstraint("status in ('sending', 'sent', 'failed')", name="ck_welcome_sends_status"),
        sa.Index("ix_welcome_sends_list_id", "list_id"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=False)
    list_id: int = Field(sa_column_args=[sa.ForeignKey("lists.id", ondelete="CASCADE")], nullable=False)
    step: int = Field(nullable=False)  # days after joining: 0, 3, 7...
    status: str = Field(default="sending", sa_type=sa.String(8), nullable=False)
    attempts: int = Field(default=1, nullable=False)
    error: str = Field(default="", sa_type=sa.Text(), nullable=False)
    next_attempt_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)  # a failed step's next try
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    sent_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
