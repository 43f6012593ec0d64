"""A list's visibility: a public list has a signup page and is offered on every reader's preference
centre; a private one (staff, press, an imported segment) is neither, and only its own readers see it.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0020"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # a plain ADD COLUMN, not a batch: on SQLite a batch rebuilds "lists", and dropping the old table
    # would cascade to every subscription
    op.add_column("lists", sa.Column("public", sa.Boolean(), server_default=sa.true(), nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("public")
