"""A/B subject tests: the ab_tests table, deliveries.variant and the ledger's ``held`` state.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

OLD_STATES = "state in ('pending', 'claimed', 'sending', 'sent', 'failed', 'deferred', 'skipped')"
NEW_STATES = "state in ('pending', 'claimed', 'sending', 'sent', 'failed', 'deferred', 'skipped', 'held')"


def upgrade() -> None:
    op.create_table(
        "ab_tests",
        sa.Column("campaign_id", sa.Integer(), nullable=False),
        sa.Column("variants", sa.JSON(), nullable=False),
        sa.Column("test_share", sa.Integer(), nullable=False),
        sa.Column("wait_seconds", sa.Integer(), nullable=False),
        sa.Column("winner_by", sa.String(length=8), nullable=False),
        sa.Column("min_sample", sa.Integer(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("tested_at", UtcDateTime(), nullable=True),
        sa.Column("decided_at", UtcDateTime(), nullable=True),
        sa.Column("winner", sa.Integer(), nullable=True),
        sa.Column("decision", sa.JSON(), nullable=True),
        sa.CheckConstraint("winner_by in ('clicks', 'opens')", name="ck_ab_tests_winner_by"),
        sa.CheckConstraint("test_share > 0 and test_share < 10000", name="ck_ab_tests_test_share"),
        sa.ForeignKeyConstraint(["campaign_id"], ["campaigns.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("campaign_id"),
    )
    with op.batch_alter_table("deliveries", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.add_column(sa.Column("variant", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("in_test", sa.Boolean(), nullable=True))
        batch.drop_constraint("ck_deliveries_state", type_="check")
        batch.create_check_constraint("ck_deliveries_state", NEW_STATES)


def downgrade() -> None:
    op.execute("UPDATE deliveries SET state = 'skipped' WHERE state = 'held'")
    with op.batch_alter_table("deliveries", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_constraint("ck_deliveries_state", type_="check")
        batch.create_check_constraint("ck_deliveries_state", OLD_STATES)
        batch.drop_column("in_test")
        batch.drop_column("variant")
    op.drop_table("ab_tests")
