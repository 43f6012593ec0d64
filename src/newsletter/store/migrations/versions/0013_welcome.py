"""Welcome emails: the per-list welcome setting (lists.welcome) and the welcome ledger (welcome_sends).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("lists") as batch:
        batch.add_column(sa.Column("welcome", sa.JSON(), nullable=True))
    op.create_table(
        "welcome_sends",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("subscriber_id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("next_attempt_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.CheckConstraint("status in ('sending', 'sent', 'failed')", name="ck_welcome_sends_status"),
        sa.ForeignKeyConstraint(["subscriber_id"], ["subscribers.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["list_id"], ["lists.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("subscriber_id", "list_id", "step", name="uq_welcome_sends_subscriber_list_step"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_welcome_sends_list_id", "welcome_sends", ["list_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_welcome_sends_list_id", table_name="welcome_sends")
    op.drop_table("welcome_sends")
    with op.batch_alter_table("lists", table_kwargs={"sqlite_autoincrement": True}) as batch:
        batch.drop_column("welcome")
