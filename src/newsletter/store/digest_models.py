"""Recurring digests, their occurrences and the articles they already sent (SQLModel tables).

The unique key (digest_id, scheduled_for) on ``digest_runs`` is what makes a second worker,
a restart or a clock jump unable to produce a second campaign for one occurrence: whoever
inserts the row owns the occurrence. ``digest_sent_articles`` remembers every article key a
digest sent, so no later occurrence sends it again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Optional

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from . import campaign_models  # noqa: F401  (digest_runs.campaign_id refers to campaigns)
from .models import UtcDateTime, utcnow

CATCH_UP_POLICIES = ("latest", "all", "none")
# running: claimed, being composed/created (a crash leaves it here; see schedule.occurrences)
RUN_STATUSES = ("running", "created", "skipped", "failed")


class RecurringDigest(SQLModel, table=True):
    """A recurring digest: where its articles come from, how they are chosen and rendered, who gets
    it and when. ``handled_until`` is the newest occurrence already dealt with (run, skipped or passed
    over); ``next_run_at`` the next one (NULL while paused) so that due digests are one indexed query."""

    __tablename__ = "digests"
    __table_args__ = (
        sa.CheckConstraint("catch_up in ('latest', 'all', 'none')", name="ck_digests_catch_up"),
        sa.Index("ix_digests_due", "paused", "next_run_at"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    name: str = Field(sa_type=sa.String(100), nullable=False, unique=True)
    sources: list = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    list_ids: list = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    template_dir: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    subject: str = Field(default="", sa_type=sa.Text(), nullable=False)  # Jinja template, "" = the template's
    max_articles: Optional[int] = Field(default=10, nullable=True)
    min_articles: int = Field(default=1, nullable=False)
    category: Optional[str] = Field(default=None, sa_type=sa.Text(), nullable=True)
    tags: list = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    schedule: str = Field(sa_type=sa.String(200), nullable=False)  # cron or simple form, as given
    timezone: str = Field(default="UTC", sa_type=sa.String(64), nullable=False)
    catch_up: str = Field(default="latest", sa_type=sa.String(8), nullable=False)
    paused: bool = Field(default=False, nullable=False)
    handled_until: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    next_run_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    last_run_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)
    articles_sent: int = Field(default=0, nullable=False)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    updated_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)


class DigestRun(SQLModel, table=True):
    """One occurrence of a digest: created a campaign, was skipped (too few new articles), or failed."""

    __tablename__ = "digest_runs"
    __table_args__ = (
        sa.UniqueConstraint("digest_id", "scheduled_for", name="uq_digest_runs_occurrence"),
        sa.CheckConstraint("status in ('running', 'created', 'skipped', 'failed')", name="ck_digest_runs_status"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    digest_id: int = Field(sa_column_args=[sa.ForeignKey("digests.id", ondelete="CASCADE")], nullable=False)
    scheduled_for: datetime = Field(sa_type=UtcDateTime(), nullable=False)
    status: str = Field(default="running", sa_type=sa.String(8), nullable=False)
    campaign_id: Optional[int] = Field(
        default=None, sa_column_args=[sa.ForeignKey("campaigns.id", ondelete="SET NULL")], nullable=True
    )
    article_count: int = Field(default=0, nullable=False)
    reason: str = Field(default="", sa_type=sa.Text(), nullable=False)
    warnings: list = Field(default_factory=list, sa_type=sa.JSON(), nullable=False)
    manual: bool = Field(default=False, nullable=False)  # `digests run NAME --now`
    started_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
    finished_at: Optional[datetime] = Field(default=None, sa_type=UtcDateTime(), nullable=True)


class DigestSentArticle(SQLModel, table=True):
    """An article (by ``Article.key``: guid, else canonical URL) a digest has sent; never sent again."""

    __tablename__ = "digest_sent_articles"
    __table_args__ = (
        sa.UniqueConstraint("digest_id", "article_key", name="uq_digest_sent_articles_key"),
        {"sqlite_autoincrement": True},
    )

    id: Optional[int] = Field(default=None, primary_key=True)
    digest_id: int = Field(sa_column_args=[sa.ForeignKey("digests.id", ondelete="CASCADE")], nullable=False)
    run_id: Optional[int] = Field(
        default=None, sa_column_args=[sa.ForeignKey("digest_runs.id", ondelete="SET NULL")], nullable=True
    )
    article_key: str = Field(sa_type=sa.Text(), nullable=False)
    sent_at: datetime = Field(default_factory=utcnow, sa_type=UtcDateTime(), nullable=False)
