"""Local-time delivery: a copy's due time (its reader's local-time bucket) on the ledger, and a
list's default time zone (for readers who did not give theirs).

Revision ID: 0016
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("due_at", UtcDateTime(), nullable=True))
    op.create_index("ix_deliveries_campaign_state_due", "deliveries", ["campaign_id", "state", "due_at"], unique=False)
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("timezone", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("timezone")
    op.drop_index("ix_deliveries_campaign_state_due", table_name="deliveries")
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("due_at")
