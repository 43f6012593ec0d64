"""The preference centre's log: one row per change a reader made on their preferences page.

It is the consent evidence for what they chose (joined or left a list, paused mail, turned
tracking off...): what changed, the old and new value as short text, where (``source``), when,
and a coarse class of network — never the IP address. Rows go with their subscriber
(``ON DELETE CASCADE``), so erasure leaves nothing behind.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow


class PreferenceChange(SQLModel, table=True):
    """One change of one reader's preferences, with its evidence."""

    __tablename__ = "preference_changes"
    __table_args__ = (
        # a reader's history, newest first: WHERE subscriber_id = :s ORDER BY at
        sa.Index("ix_preference_changes_subscriber_at", "subscriber_id", "at"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    subscriber_id: int = Field(sa_column_args=[sa.ForeignKey("subscribers.id", ondelete="CASCADE")], nullable=False)
    what: str = Field(sa_type=sa.String(80), nullable=False)  # name, pause, timezone, tracking, join:SLUG, leave:SLUG
    old: str = Field(default="", sa_type=sa.String(200), nullable=False)
    new: str = Field(default="", sa_type=sa.String(200), nullable=False)
    source: str = Field(default="preferences", sa_type=sa.String(32), nullable=False)
    ip_class: str = Field(default="", sa_type=sa.String(16), nullable=False)
    at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
