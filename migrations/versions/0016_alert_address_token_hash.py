"""Alert addresses keep only the SHA-256 of their confirmation token (as every other link token
does, portal.accounts.tokens): `alert_addresses.token` becomes `token_hash`

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-01 22:40:00

The raw tokens stored so far are hashed in place, so every confirmation link already mailed
still works (the link carries the raw token; the portal hashes what it is given). The
downgrade cannot recover a raw token from its hash, and the hash must not become a working
token (anyone who read the table could confirm with it): it stores fresh random tokens, which
no link holds, so pending confirmations expire and must be sent again.

The unsubscribe links of the optional notices store nothing: they are HMAC-signed.
"""

import hashlib
import secrets

from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def _rewrite(column: str, value) -> None:
    addresses = sa.table('alert_addresses', sa.column('id', sa.Integer), sa.column(column, sa.String))
    connection = op.get_bind()
    for row_id, current in connection.execute(sa.select(addresses.c.id, addresses.c[column])).all():
        connection.execute(addresses.update().where(addresses.c.id == row_id).values({column: value(current)}))


def upgrade() -> None:
    _rewrite('token', lambda token: hashlib.sha256(token.encode()).hexdigest())
    with op.batch_alter_table('alert_addresses', schema=None) as batch_op:
        batch_op.alter_column('token', new_column_name='token_hash', existing_type=sa.String(length=64),
                              existing_nullable=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_addresses', schema=None) as batch_op:
        batch_op.alter_column('token_hash', new_column_name='token', existing_type=sa.String(length=64),
                              existing_nullable=False)
    _rewrite('token', lambda _hash: secrets.token_urlsafe(32))
