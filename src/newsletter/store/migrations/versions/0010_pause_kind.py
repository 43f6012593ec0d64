"""Who paused a campaign, as a value code can match on: ``campaigns.pause_kind`` (``user``,
``connections``, ``warmup``, ``bounce-guard``) beside ``status_reason``, which stays the sentence
shown to people.

Paused campaigns get their kind from the beginning of their reason (this migration is the only
place that reads it); other campaigns get NULL.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03
"""

from alembic import op
import sqlalchemy as sa

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

# Reason beginnings written before this column existed, most specific first.
_KINDS = (
    ("auto-paused (warm-up)", "warmup"),
    ("auto-paused", "connections"),
    ("paused by the bounce guard", "bounce-guard"),
)


def upgrade() -> None:
    with op.batch_alter_table("campaigns") as batch_op:
        batch_op.add_column(sa.Column("pause_kind", sa.String(length=16), nullable=True))
    campaigns = sa.table("campaigns", sa.column("status", sa.String), sa.column("status_reason", sa.Text),
                         sa.column("pause_kind", sa.String))
    paused = campaigns.c.status == "paused"
    for prefix, kind in _KINDS:
        op.execute(campaigns.update().where(paused, campaigns.c.pause_kind.is_(None),
                                            campaigns.c.status_reason.startswith(prefix, autoescape=True))
                   .values(pause_kind=kind))
    op.execute(campaigns.update().where(paused, campaigns.c.pause_kind.is_(None)).values(pause_kind="user"))


def downgrade() -> None:
    # SQLite rebuilds the table to drop a column: keep AUTOINCREMENT (ids are never reused).
    with op.batch_alter_table("campaigns", table_kwargs={"sqlite_autoincrement": True}) as batch_op:
        batch_op.drop_column("pause_kind")
