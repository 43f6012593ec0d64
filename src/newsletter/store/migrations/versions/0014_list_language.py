"""A list's language: the public pages, confirmation email and digest words its readers get.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("language", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.drop_column("language")
