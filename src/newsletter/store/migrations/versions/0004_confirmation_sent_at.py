"""When each subscription's double-opt-in confirmation email was last sent.

Existing rows get NULL (never recorded): the next ``send-confirmations`` mails whoever is
still unconfirmed once, as it did before this column existed.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("subscriptions") as batch_op:
        batch_op.add_column(sa.Column("confirmation_sent_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column: keep AUTOINCREMENT (ids are never reused).
    with op.batch_alter_table("subscriptions", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("confirmation_sent_at")
