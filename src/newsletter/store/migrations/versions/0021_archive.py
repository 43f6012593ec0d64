"""The public archive's choice: ``campaigns.archive`` (NULL: follow its lists; true/false: this
campaign's own choice) and ``lists.archive`` (the default for its campaigns). Existing lists take
their visibility as the default, so a private list's issues do not become public by this change.

Revision ID: 0021
Revises: 0022
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

revision = "0021"
down_revision = "0022"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # plain ADD COLUMNs, not batches: on SQLite a batch rebuilds the table, and dropping the old
    # "lists" or "campaigns" would cascade to subscriptions and deliveries
    op.add_column("campaigns", sa.Column("archive", sa.Boolean(), nullable=True))
    op.add_column("lists", sa.Column("archive", sa.Boolean(), server_default=sa.true(), nullable=False))
    op.execute("UPDATE lists SET archive = public")


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("archive")
    with op.batch_alter_table("campaigns") as batch:
        batch.drop_column("archive")
