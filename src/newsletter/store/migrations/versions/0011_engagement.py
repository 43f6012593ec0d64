"""Engagement: the links a tracked campaign rewrote (tracked_links), an append-only table of
classified opens and clicks (engagement_events), and outgoing event webhooks (webhook_deliveries,
event_cursors, an index on subscriptions.updated_at for the collector).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0011"
down_revision = "0010"
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
    op.create_index("ix_engagement_events_campaign", "engagement_events", ["campaign_id", "kind", "agent", "subscriber_id"], unique=False)
    op.create_index("ix_engagement_events_subscriber_time", "engagement_events", ["subscriber_id", "occurred_at"], unique=False)
    op.create_index("ix_engagement_events_time", "engagement_events", ["occurred_at"], unique=False)
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("event", sa.String(length=32), nullable=False),
        sa.Column("event_key", sa.String(length=200), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=False),
        sa.Column("delivered_at", UtcDateTime(), nullable=True),
        sa.Column("failed_at", UtcDateTime(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("url", "event_key", name="uq_webhook_deliveries_url_key"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_deliveries_due", "webhook_deliveries", ["next_attempt_at"], unique=False)
    op.create_table(
        "event_cursors",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=True),
        sa.Column("last_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("source"),
    )
    op.create_index("ix_subscriptions_updated_at", "subscriptions", ["updated_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_subscriptions_updated_at", table_name="subscriptions")
    op.drop_table("event_cursors")
    op.drop_index("ix_webhook_deliveries_due", table_name="webhook_deliveries")
    op.drop_table("webhook_deliveries")
    op.drop_index("ix_engagement_events_time", table_name="engagement_events")
    op.drop_index("ix_engagement_events_subscriber_time", table_name="engagement_events")
    op.drop_index("ix_engagement_events_campaign", table_name="engagement_events")
    op.drop_table("engagement_events")
    op.drop_table("tracked_links")
