"""What workers tell the admin: a heartbeat row per ``newsletter worker`` process, and why a
campaign a worker tried could not progress (``campaign_stalls``).

The admin pages read these to say "no worker is running" instead of a silent "scheduled", and to
show the reason a worker refused a campaign (e.g. a base_url readers cannot open).
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from .models import UtcDateTime, utcnow


class WorkerHeartbeat(SQLModel, table=True):
    """One row per worker process: refreshed every ``interval`` seconds while it runs; ``stopped_at``
    is set when it stops cleanly (a killed worker's row just goes stale)."""

    __tablename__ = "worker_heartbeats"

    worker_id: str = Field(sa_type=sa.String(200), primary_key=True)
    host: str = Field(default="", sa_type=sa.String(255), nullable=False)
    pid: int = Field(default=0, nullable=False)
    interval: float = Field(default=5.0, nullable=False)  # seconds between beats it promises
    started_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    beat_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    stopped_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)


class CampaignStall(SQLModel, table=True):
    """Why the last worker pass could not send a campaign (the library's one-line error); the row
    goes away when a pass sends it again."""

    __tablename__ = "campaign_stalls"

    campaign_id: int = Field(sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="CASCADE")], primary_key=True)
    reason: str = Field(sa_type=sa.Text(), nullable=False)
    worker_id: str = Field(default="", sa_type=sa.String(200), nullable=False)
    since: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    seen_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
