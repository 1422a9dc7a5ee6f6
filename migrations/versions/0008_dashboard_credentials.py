"""onboarding: the test credentials the dashboard creates to send a test SMS (issue 11)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 12:30:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('dashboard_credentials',
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.PrimaryKeyConstraint('credential_id')
    )
    op.create_index('ix_dashboard_credentials_account_id', 'dashboard_credentials', ['account_id'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_dashboard_credentials_account_id', table_name='dashboard_credentials')
    op.drop_table('dashboard_credentials')
