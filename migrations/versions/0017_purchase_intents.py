"""billing: a purchase form's one-time token (purchase_intents), so a stale or re-submitted
confirmation never opens a second checkout; usage: an index of refunded messages and one of calls
by their end, so the monthly statement finds the refunds booked and the calls ended in a month
without reading the month's messages

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-01 22:30:00

Only indexes are added to sms_messages and voice_calls (no batch_alter_table), so migration
0013's usage triggers on SQLite stay in place.
"""

from alembic import op
import sqlalchemy as sa


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('purchase_intents',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'token', name='uq_purchase_intent')
    )
    op.create_index('ix_sms_messages_refunded', 'sms_messages', ['account_id', 'refunded_at'], unique=False,
                    sqlite_where=sa.text('refunded_at IS NOT NULL'),
                    postgresql_where=sa.text('refunded_at IS NOT NULL'))
    op.create_index('ix_voice_calls_ended', 'voice_calls', ['account_id', 'ended_at'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_voice_calls_ended', table_name='voice_calls')
    op.drop_index('ix_sms_messages_refunded', table_name='sms_messages')
    op.drop_table('purchase_intents')
