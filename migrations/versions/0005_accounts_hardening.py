"""accounts: pending sign-ups, per-address mail quota, throttle for re-authentication (issue 9)

Re-authentication and password change reuse login_throttles: no schema change for them.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('signup_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=False),
    sa.Column('password_hash', sa.String(length=200), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('account_name', sa.String(length=200), nullable=False),
    sa.Column('account_kind', sa.String(length=20), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('tax_residency', sa.String(length=10), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("account_kind IN ('company', 'individual')", name='attempt_account_kind'),
    sa.CheckConstraint("language IN ('ja', 'en')", name='attempt_language'),
    sa.CheckConstraint("tax_residency IN ('JP', 'overseas')", name='attempt_tax_residency'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('token_hash')
    )
    with op.batch_alter_table('signup_attempts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signup_attempts_email'), ['email'], unique=False)

    op.create_table('mail_quotas',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('address_hash', sa.String(length=64), nullable=False),
    sa.Column('purpose', sa.String(length=20), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('requests', sa.Integer(), nullable=False),
    sa.CheckConstraint("purpose IN ('signup', 'reset_password', 'invitation')", name='mail_quota_purpose'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('address_hash', 'purpose', 'hour', name='uq_mail_quota')
    )


def downgrade() -> None:
    op.drop_table('mail_quotas')
    with op.batch_alter_table('signup_attempts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signup_attempts_email'))
    op.drop_table('signup_attempts')
