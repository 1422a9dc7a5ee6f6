"""otp: sites, codes and blocked requests (issue 12)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:20:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('otp_sites',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=253), nullable=False),
    sa.Column('display_name', sa.String(length=40), nullable=False),
    sa.Column('ownership_token', sa.String(length=64), nullable=False),
    sa.Column('proven_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('checked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('template_language', sa.String(length=2), nullable=False),
    sa.Column('template', sa.Text(), nullable=False),
    sa.Column('code_length', sa.Integer(), nullable=False),
    sa.Column('lifetime_minutes', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('resend_cooldown_seconds', sa.Integer(), nullable=False),
    sa.Column('fallback', sa.String(length=12), nullable=False),
    sa.Column('fallback_seconds', sa.Integer(), nullable=False),
    sa.Column('fallback_language', sa.String(length=2), nullable=False),
    sa.Column('allowed_countries', sa.String(length=200), nullable=False),
    sa.Column('per_number_limit', sa.Integer(), nullable=False),
    sa.Column('per_ip_limit', sa.Integer(), nullable=False),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('resumed_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("fallback IN ('off', 'after_delay', 'on_failure')", name='otp_fallback'),
    sa.CheckConstraint("fallback_language IN ('ja', 'en')", name='otp_fallback_language'),
    sa.CheckConstraint("template_language IN ('ja', 'en')", name='otp_template_language'),
    sa.CheckConstraint('code_length BETWEEN 4 AND 8', name='otp_code_length'),
    sa.CheckConstraint('fallback_seconds BETWEEN 10 AND 600', name='otp_fallback_seconds'),
    sa.CheckConstraint('lifetime_minutes BETWEEN 1 AND 30', name='otp_lifetime'),
    sa.CheckConstraint('max_attempts BETWEEN 1 AND 10', name='otp_attempts'),
    sa.CheckConstraint('per_ip_limit BETWEEN 1 AND 1000', name='otp_ip_limit'),
    sa.CheckConstraint('per_number_limit BETWEEN 1 AND 5', name='otp_number_limit'),
    sa.CheckConstraint('resend_cooldown_seconds BETWEEN 0 AND 600', name='otp_cooldown'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'domain', name='uq_otp_site_domain')
    )
    with op.batch_alter_table('otp_sites', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_otp_sites_account_id'), ['account_id'], unique=False)

    op.create_table('otp_blocked',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('phone_number', sa.String(length=16), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('reason', sa.String(length=20), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('lifted_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lifted_by', sa.Integer(), nullable=True),
    sa.CheckConstraint("mode IN ('live', 'test')", name='otp_blocked_mode'),
    sa.CheckConstraint("reason IN ('country_not_allowed', 'unproven_site', 'number_limit', 'ip_limit', 'prefix_limit', 'site_paused', 'number_locked')", name='otp_blocked_reason'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['lifted_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['otp_sites.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('otp_blocked', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_otp_blocked_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_otp_blocked_site_time', ['site_id', 'created_at'], unique=False)

    op.create_table('otp_credential_sites',
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['otp_sites.id'], ),
    sa.PrimaryKeyConstraint('credential_id', 'site_id')
    )
    op.create_table('otp_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('msgid', sa.String(length=32), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('phone_number', sa.String(length=16), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=5), nullable=False),
    sa.Column('code_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('max_attempts', sa.Integer(), nullable=False),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('verified_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('fallback_text', sa.Text(), nullable=True),
    sa.Column('fallback_callid', sa.String(length=32), nullable=True),
    sa.Column('delivery_event', sa.String(length=10), nullable=True),
    sa.Column('masked_body', sa.Text(), nullable=True),
    sa.CheckConstraint("channel IN ('sms', 'voice')", name='otp_code_channel'),
    sa.CheckConstraint("mode IN ('live', 'test')", name='otp_code_mode'),
    sa.CheckConstraint("status IN ('active', 'verified', 'replaced', 'locked')", name='otp_code_status'),
    sa.CheckConstraint('failures >= 0 AND failures <= max_attempts', name='otp_code_failures'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.ForeignKeyConstraint(['site_id'], ['otp_sites.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('msgid')
    )
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_otp_codes_account_id'), ['account_id'], unique=False)
        batch_op.create_index('ix_otp_codes_site_time', ['site_id', 'created_at'], unique=False)
        batch_op.create_index('uq_otp_active_code', ['site_id', 'mode', 'phone_number'], unique=True, sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))



def downgrade() -> None:
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.drop_index('uq_otp_active_code', sqlite_where=sa.text("status = 'active'"), postgresql_where=sa.text("status = 'active'"))
        batch_op.drop_index('ix_otp_codes_site_time')
        batch_op.drop_index(batch_op.f('ix_otp_codes_account_id'))

    op.drop_table('otp_codes')
    op.drop_table('otp_credential_sites')
    with op.batch_alter_table('otp_blocked', schema=None) as batch_op:
        batch_op.drop_index('ix_otp_blocked_site_time')
        batch_op.drop_index(batch_op.f('ix_otp_blocked_account_id'))

    op.drop_table('otp_blocked')
    with op.batch_alter_table('otp_sites', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_otp_sites_account_id'))

    op.drop_table('otp_sites')
