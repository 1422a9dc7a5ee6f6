"""otp_tallies by hour: the daily retention pass purges the tallies past the completion guard's
window in batches, oldest hour first, through this index instead of scanning every site's hours

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-01 22:30:00

An index only (no batch_alter_table): the tally triggers on otp_codes are untouched.
"""

from alembic import op


revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index('ix_otp_tallies_hour', 'otp_tallies', ['hour'], unique=False)


def downgrade() -> None:
    op.drop_index('ix_otp_tallies_hour', table_name='otp_tallies')
