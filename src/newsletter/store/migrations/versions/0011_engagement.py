"""Engagement: the links a tracked campaign rewrote (tracked_links) and an append-only table of
classified opens and clicks (engagement_events).

Revision ID: 0011
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0011"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tracked_links",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("idx", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id", "idx"),
    )
    op.create_table(
        "engagement_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("link_idx", sa.Integer(), nullable=True),
        sa.Column("agent", sa.String(length=16), nullable=False),
        sa.Column("why", sa.String(length=32), nullable=False),
        sa.Column("ip_class", sa.String(length=16), nullable=False),
        sa.Column("ip", sa.String(length=45), nullable=True),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("kind in ('open', 'click')", name="ck_engagement_events_kind"),
        sa.CheckConstraint("agent in ('human', 'apple-mpp', 'proxy', 'scanner')", name="ck_engagement_events_agent"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_engagement_events_campaign", "engagement_events", ["campaign_id", "kind", "agent"], unique=False)
    op.create_index("ix_engagement_events_subscriber_time", "engagement_events", ["subscriber_id", "occurred_at"], unique=False)
    op.create_index("ix_engagement_events_time", "engagement_events", ["occurred_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_engagement_events_time", table_name="engagement_events")
    op.drop_index("ix_engagement_events_subscriber_time", table_name="engagement_events")
    op.drop_index("ix_engagement_events_campaign", table_name="engagement_events")
    op.drop_table("engagement_events")
    op.drop_table("tracked_links")
