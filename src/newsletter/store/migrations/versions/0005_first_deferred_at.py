"""When each delivery was first deferred: a copy is retried until ``retry_max_age`` after its
first temporary failure, not after the ledger row was created (a long pause no longer uses up
the retry time of copies that were never tried).

Existing rows get NULL: a copy deferred before this column existed starts its clock at its next
temporary failure.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch_op:
        batch_op.add_column(sa.Column("first_deferred_at", UtcDateTime(), nullable=True))


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column: keep AUTOINCREMENT (ids are never reused).
    with op.batch_alter_table("deliveries", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("first_deferred_at")
