"""credentials: per-credential callback signing secrets with rotation overlap (issue 9)

Callbacks used to be signed with a key derived from PORTAL_SECRET_KEY; every existing
credential gets a fresh random secret instead.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 09:40:00
"""

import secrets
from datetime import datetime, timezone

from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def _new_secret() -> str:
    return "chotto_whsec_" + "".join(secrets.choice(BASE62) for _ in range(32))


def upgrade() -> None:
    table = op.create_table('api_callback_secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('secret', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('secret')
    )
    with op.batch_alter_table('api_callback_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_callback_secrets_credential_id'), ['credential_id'], unique=False)

    connection = op.get_bind()
    now = datetime.now(timezone.utc)
    if connection.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # the models keep naive UTC on SQLite
    ids = connection.execute(sa.text("SELECT id FROM api_credentials ORDER BY id")).scalars().all()
    if ids:
        op.bulk_insert(table, [{"credential_id": id_, "secret": _new_secret(), "created_at": now} for id_ in ids])


def downgrade() -> None:
    with op.batch_alter_table('api_callback_secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_callback_secrets_credential_id'))
    op.drop_table('api_callback_secrets')
