"""One table of bounce events (bounces, complaints, auto-replies, delivery reports), whatever
their source, and an index on deliveries.subscriber_id (the soft-bounce rule and the "did we
ever mail this address" check look copies up by subscriber).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "bounce_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=True),
        sa.Column("campaign_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("provider", sa.String(length=32), nullable=True),
        sa.Column("report_id", sa.String(length=255), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", UtcDateTime(), nullable=False),
        sa.Column("recorded_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("kind in ('hard', 'soft', 'complaint', 'auto-reply', 'delivered', 'unknown')",
                           name="ck_bounce_events_kind"),
        sa.CheckConstraint("source in ('dsn', 'arf', 'heuristic', 'verp', 'smtp', 'webhook')",
                           name="ck_bounce_events_source"),
        sa.CheckConstraint("outcome in ('bounced', 'complained', 'counted', 'none', 'unmatched')",
                           name="ck_bounce_events_outcome"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("report_id", "recipient", name="uq_bounce_events_report_recipient"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_bounce_events_campaign_kind", "bounce_events", ["campaign_id", "kind"], unique=False)
    op.create_index("ix_bounce_events_subscriber_time", "bounce_events", ["subscriber_id", "occurred_at"], unique=False)
    op.create_index("ix_bounce_events_recipient", "bounce_events", ["recipient"], unique=False)
    op.create_index("ix_deliveries_subscriber", "deliveries", ["subscriber_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_deliveries_subscriber", table_name="deliveries")
    op.drop_index("ix_bounce_events_recipient", table_name="bounce_events")
    op.drop_index("ix_bounce_events_subscriber_time", table_name="bounce_events")
    op.drop_index("ix_bounce_events_campaign_kind", table_name="bounce_events")
    op.drop_table("bounce_events")
