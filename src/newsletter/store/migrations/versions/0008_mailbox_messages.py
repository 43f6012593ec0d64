"""The messages read from the bounce and unsubscribe mailboxes (``mailbox_messages``): what each
one was and what was done, so processing is idempotent and resumable, and email unsubscribes
keep their evidence.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0008"
down_revision = "0006"  # written against "0005"; re-chained after i13-store's 0006 (one head)
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mailbox_messages",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("mailbox", sa.String(500), nullable=False),
        sa.Column("message_key", sa.String(300), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(24), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=True),
        sa.Column("from_address", sa.String(320), nullable=True),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("sent_at", UtcDateTime(), nullable=True),
        sa.Column("subscriber_id", sa.Integer(), sa.ForeignKey("subscribers.id", ondelete="SET NULL"), nullable=True),
        sa.Column("list_id", sa.Integer(), sa.ForeignKey("lists.id", ondelete="SET NULL"), nullable=True),
        sa.Column("events_new", sa.Integer(), nullable=False),
        sa.Column("events_duplicate", sa.Integer(), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("processed_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("mailbox", "message_key", name="uq_mailbox_messages_mailbox_key"),
        sa.CheckConstraint(
            "kind in ('bounce', 'unsubscribe', 'unsubscribe-request', 'duplicate', 'left')",
            name="ck_mailbox_messages_kind",
        ),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_mailbox_messages_digest", "mailbox_messages", ["digest"])
    op.create_index("ix_mailbox_messages_kind", "mailbox_messages", ["kind"])


def downgrade() -> None:
    op.drop_index("ix_mailbox_messages_kind", table_name="mailbox_messages")
    op.drop_index("ix_mailbox_messages_digest", table_name="mailbox_messages")
    op.drop_table("mailbox_messages")
