"""Segments (SQLModel table): a named filter that narrows one list.

The filter is stored as the JSON text the user gave (checked and made compact); it is compiled
to SQL each time it is used, so a count is always live and ``within 30d`` moves with the clock.
A segment belongs to its list: deleting the list deletes its segments.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow


class Segment(SQLModel, table=True):
    """A named filter over the subscribers of one list (``match_all``: the whole list, on purpose)."""

    __tablename__ = "segments"
    __table_args__ = ({"sqlite_autoincrement": True},)

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(64), nullable=False, unique=True)
    list_id: int = Field(sa_column_args=[sa.ForeignKey("lists.id", ondelete="CASCADE")], nullable=False)
    filter: str = Field(sa_type=sa.Text(), nullable=False)  # compact JSON; "{}" only with match_all
    match_all: bool = Field(default=False, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
