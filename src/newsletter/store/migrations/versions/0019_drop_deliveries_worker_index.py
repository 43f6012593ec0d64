"""Drop the ledger's index on worker_id: every statement that filters on worker_id also names the
campaign and the state (or the row ids), which ix_deliveries_campaign_state (or the primary key)
serves, while each of the three state changes of a copy paid an insertion into it.

Revision ID: 0019
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op

revision = "0019"
down_revision = "0017"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_worker", table_name="deliveries")


def downgrade() -> None:
    op.create_index("ix_deliveries_worker", "deliveries", ["worker_id"], unique=False)
