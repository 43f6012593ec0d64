"""Campaigns, their target lists and inline images, and the delivery ledger.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24
"""

from alembic import op
import sqlalchemy as sa

from newsletter.store.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('subject', sa.Text(), nullable=False),
    sa.Column('from_address', sa.Text(), nullable=False),
    sa.Column('reply_to', sa.Text(), nullable=True),
    sa.Column('preheader', sa.Text(), nullable=False),
    sa.Column('html', sa.Text(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('headers', sa.JSON(), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('status_reason', sa.Text(), nullable=False),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('scheduled_at', UtcDateTime(), nullable=True),
    sa.Column('started_at', UtcDateTime(), nullable=True),
    sa.Column('finished_at', UtcDateTime(), nullable=True),
    sa.Column('ledger_created_at', UtcDateTime(), nullable=True),
    sa.Column('lock_owner', sa.String(length=200), nullable=True),
    sa.Column('lock_heartbeat_at', UtcDateTime(), nullable=True),
    sa.CheckConstraint("status in ('draft', 'scheduled', 'running', 'paused', 'finished', 'cancelled')", name='ck_campaigns_status'),
    sa.PrimaryKeyConstraint('id'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_campaigns_status', 'campaigns', ['status'], unique=False)
    op.create_table('campaign_images',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('cid', sa.String(length=200), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'cid', name='uq_campaign_images_campaign_cid'),
    sqlite_autoincrement=True
    )
    op.create_table('campaign_lists',
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['list_id'], ['lists.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('campaign_id', 'list_id')
    )
    op.create_table('deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('subscriber_id', sa.Integer(), nullable=False),
    sa.Column('list_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=320), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('next_attempt_at', UtcDateTime(), nullable=True),
    sa.Column('last_reply', sa.Text(), nullable=True),
    sa.Column('message_id', sa.String(length=255), nullable=True),
    sa.Column('worker_id', sa.String(length=200), nullable=True),
    sa.Column('server', sa.String(length=100), nullable=True),
    sa.Column('created_at', UtcDateTime(), nullable=False),
    sa.Column('updated_at', UtcDateTime(), nullable=False),
    sa.Column('sent_at', UtcDateTime(), nullable=True),
    sa.CheckConstraint("state in ('pending', 'claimed', 'sending', 'sent', 'failed', 'deferred', 'skipped')", name='ck_deliveries_state'),
    sa.ForeignKeyConstraint(['campaign_id'], ['campaigns.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['subscriber_id'], ['subscribers.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('campaign_id', 'subscriber_id', name='uq_deliveries_campaign_subscriber'),
    sqlite_autoincrement=True
    )
    op.create_index('ix_deliveries_campaign_state', 'deliveries', ['campaign_id', 'state', 'id'], unique=False)
    op.create_index('ix_deliveries_worker', 'deliveries', ['worker_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_deliveries_worker', table_name='deliveries')
    op.drop_index('ix_deliveries_campaign_state', table_name='deliveries')
    op.drop_table('deliveries')
    op.drop_table('campaign_lists')
    op.drop_table('campaign_images')
    op.drop_index('ix_campaigns_status', table_name='campaigns')
    op.drop_table('campaigns')
