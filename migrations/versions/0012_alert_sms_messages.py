"""alert SMS through the send path: sms_messages.credential_id nullable (NULL = sent by Chotto
for the account, e.g. a balance alert) and alert_deliveries.message_id (the one message an SMS
delivery is sent as, whatever the worker retries)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02 10:00:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.alter_column('credential_id', existing_type=sa.Integer(), nullable=True)

    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('message_id', sa.Integer(), nullable=True))
        batch_op.create_unique_constraint('uq_alert_delivery_message', ['message_id'])
        batch_op.create_foreign_key('fk_alert_delivery_message', 'sms_messages', ['message_id'], ['id'])


def downgrade() -> None:
    """Refused by the database while messages sent by Chotto itself exist (they have no
    credential to go back to): delete or reassign them first."""
    with op.batch_alter_table('alert_deliveries', schema=None) as batch_op:
        batch_op.drop_constraint('fk_alert_delivery_message', type_='foreignkey')
        batch_op.drop_constraint('uq_alert_delivery_message', type_='unique')
        batch_op.drop_column('message_id')

    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.alter_column('credential_id', existing_type=sa.Integer(), nullable=False)
