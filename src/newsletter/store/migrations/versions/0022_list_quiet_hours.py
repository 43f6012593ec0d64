"""A list's quiet hours ("22:00-07:00"): a local-time campaign never plans a copy for one of its
readers inside them, in the reader's zone; the copy moves to the end of the quiet period.

Revision ID: 0022
Revises: 0024
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

revision = "0022"
down_revision = "0024"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN, not a batch: on SQLite a batch rebuilds "lists", and dropping the old table
    # would cascade to every subscription
    op.add_column("lists", sa.Column("quiet_hours", sa.String(11), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("quiet_hours")
