"""alerts: thresholds, settings, recipients, notices and deliveries (issue 13)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 16:25:34
"""

from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('alert_addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('address', sa.String(length=254), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('token', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('confirmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'address', name='uq_alert_address'),
    sa.UniqueConstraint('token')
    )
    with op.batch_alter_table('alert_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_addresses_account_id'), ['account_id'], unique=False)

    op.create_table('alert_marks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('subject', sa.String(length=40), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'kind', 'subject', name='uq_alert_mark')
    )
    op.create_table('alert_members',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'user_id', name='uq_alert_member')
    )
    with op.batch_alter_table('alert_members', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_members_account_id'), ['account_id'], unique=False)

    op.create_table('alert_notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('uuid', sa.String(length=36), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=20), nullable=False),
    sa.Column('payload', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('uuid')
    )
    with op.batch_alter_table('alert_notices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_notices_account_id'), ['account_id'], unique=False)

    op.create_table('alert_opt_outs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('recipient', sa.String(length=254), nullable=False),
    sa.Column('topic', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'recipient', 'topic', name='uq_alert_opt_out')
    )
    op.create_table('alert_settings',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('email', sa.Boolean(), nullable=False),
    sa.Column('webhook_url', sa.Text(), nullable=True),
    sa.Column('webhook_secret', sa.String(length=80), nullable=True),
    sa.Column('sms', sa.Boolean(), nullable=False),
    sa.Column('sms_number', sa.String(length=16), nullable=True),
    sa.Column('expiry_warnings', sa.Boolean(), nullable=False),
    sa.Column('run_out_days', sa.Integer(), nullable=True),
    sa.Column('all_members', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('balance_thresholds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('armed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('crossed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('rearmed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0', name='threshold_amount_positive'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'amount', name='uq_balance_threshold')
    )
    with op.batch_alter_table('balance_thresholds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_balance_thresholds_account_id'), ['account_id'], unique=False)

    op.create_table('alert_deliveries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=10), nullable=False),
    sa.Column('recipient', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('last_error', sa.Text(), nullable=True),
    sa.Column('last_attempt_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('delivered_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['notice_id'], ['alert_notices.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_deliveries_notice_id'), ['notice_id'], unique=False)

    # every account has the default protection: one ¥100 threshold, armed when the balance is at or above it
    op.execute("INSERT INTO balance_thresholds (account_id, amount, armed, created_at) "
               "SELECT account_id, 100000, balance >= 100000, updated_at FROM credit_states")



def downgrade() -> None:
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_deliveries_notice_id'))

    op.drop_table('alert_deliveries')
    with op.batch_alter_table('balance_thresholds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_balance_thresholds_account_id'))

    op.drop_table('balance_thresholds')
    op.drop_table('alert_settings')
    op.drop_table('alert_opt_outs')
    with op.batch_alter_table('alert_notices', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_notices_account_id'))

    op.drop_table('alert_notices')
    with op.batch_alter_table('alert_members', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_members_account_id'))

    op.drop_table('alert_members')
    op.drop_table('alert_marks')
    with op.batch_alter_table('alert_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_addresses_account_id'))

    op.drop_table('alert_addresses')
