"""credentials: who issued each token (a member's removal lists the credentials whose working
token they know, including those they rotated) (issue 9)

Existing tokens are attributed to their credential's creator.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 10:15:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('api_credential_secrets', schema=None) as batch_op:
        batch_op.add_column(sa.Column('created_by', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_api_credential_secrets_created_by_users', 'users', ['created_by'], ['id'])
    op.execute("UPDATE api_credential_secrets SET created_by = (SELECT created_by FROM api_credentials "
               "WHERE api_credentials.id = api_credential_secrets.credential_id)")


def downgrade() -> None:
    with op.batch_alter_table('api_credential_secrets', schema=None) as batch_op:
        batch_op.drop_constraint('fk_api_credential_secrets_created_by_users', type_='foreignkey')
        batch_op.drop_column('created_by')
