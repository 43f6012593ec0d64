"""The class of network a person's consent came from (loopback, private, ipv4, ipv6…, never the
address): consent evidence shown on the admin's subscriber page.

Revision ID: 0018
Revises: 0019 (numbered 0018 when it was written; it follows 0019)
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0018"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.add_column(sa.Column("consent_ip_class", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("subscribers") as batch:
        batch.drop_column("consent_ip_class")
