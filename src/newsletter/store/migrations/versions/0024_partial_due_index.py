"""The local-time claim index holds local-time rows only (``WHERE due_at IS NOT NULL``).

Every copy's three state changes (claimed, sending, sent) insert into each index on
``deliveries`` (``state`` is indexed, so none is a HOT update); rows of an ordinary campaign
have no ``due_at`` and never use this index, so they no longer pay for it. The local-time claim
(``due_at <= :due_by``) implies the predicate, so both PostgreSQL and SQLite still use it.

Revision ID: 0024
Revises: 0020
Create Date: 2026-12-04
"""

from alembic import op
import sqlalchemy as sa

revision = "0024"
down_revision = "0020"
branch_labels = None
depends_on = None

_COLS = ["campaign_id", "state", "due_at", "id"]


def upgrade() -> None:
    op.drop_index("ix_deliveries_campaign_state_due", table_name="deliveries")
    op.create_index("ix_deliveries_campaign_state_due", "deliveries", _COLS, unique=False,
                    postgresql_where=sa.text("due_at IS NOT NULL"), sqlite_where=sa.text("due_at IS NOT NULL"))


def downgrade() -> None:
    op.drop_index("ix_deliveries_campaign_state_due", table_name="deliveries")
    op.create_index("ix_deliveries_campaign_state_due", "deliveries", _COLS, unique=False)
