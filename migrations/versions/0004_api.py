"""api: credentials, SMS messages and calls, prices, idempotency records, audit events

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 07:57:53.413566
"""

from alembic import op
import sqlalchemy as sa



revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


DEFAULT_PRICES = [
    ("sms", "JP", 10_000), ("otp", "JP", 3_000), ("voice", "JP", 10_000),
    ("sms", "US", 12_000), ("sms", "GB", 15_000), ("sms", "SG", 9_000), ("sms", "KR", 9_000), ("sms", "TW", 11_000),
    ("voice", "US", 12_000), ("voice", "GB", 15_000),
]


def upgrade() -> None:
    op.create_table('prices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=10), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.CheckConstraint("product IN ('sms', 'otp', 'voice')", name='price_product'),
    sa.CheckConstraint('unit_price > 0', name='price_positive'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('product', 'country', name='uq_price')
    )
    op.create_table('api_credentials',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sid', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('scopes', sa.String(length=40), nullable=False),
    sa.Column('allowed_networks', sa.Text(), nullable=False),
    sa.Column('monthly_cap', sa.BigInteger(), nullable=True),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('last_used_ip', sa.String(length=45), nullable=True),
    sa.CheckConstraint("mode IN ('live', 'test')", name='credential_mode'),
    sa.CheckConstraint('monthly_cap IS NULL OR monthly_cap > 0', name='credential_cap_positive'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('sid')
    )
    with op.batch_alter_table('api_credentials', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_credentials_account_id'), ['account_id'], unique=False)

    op.create_table('api_idempotency',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('key', sa.String(length=255), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('status', sa.Integer(), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'key', name='uq_api_idempotency')
    )
    op.create_table('audit_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('action', sa.String(length=40), nullable=False),
    sa.Column('detail', sa.String(length=300), nullable=False),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.create_index('ix_audit_events_account_time', ['account_id', 'occurred_at'], unique=False)

    op.create_table('api_credential_secrets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('digest', sa.String(length=64), nullable=False),
    sa.Column('prefix', sa.String(length=12), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('digest')
    )
    with op.batch_alter_table('api_credential_secrets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_credential_secrets_credential_id'), ['credential_id'], unique=False)

    op.create_table('sms_messages',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('msgid', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('sender', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('encoding', sa.String(length=5), nullable=False),
    sa.Column('segments', sa.Integer(), nullable=False),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('carrier_ref', sa.String(length=100), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("mode IN ('live', 'test')", name='sms_mode'),
    sa.CheckConstraint("status IN ('QUEUED', 'DELIVERING', 'DELIVERED', 'FAIL')", name='sms_status'),
    sa.CheckConstraint('cost >= 0', name='sms_cost'),
    sa.CheckConstraint('segments BETWEEN 1 AND 10', name='sms_segments'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('msgid')
    )
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.create_index('ix_sms_messages_account_time', ['account_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_sms_messages_credential_id'), ['credential_id'], unique=False)

    op.create_table('voice_calls',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('callid', sa.String(length=32), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('caller', sa.String(length=16), nullable=False),
    sa.Column('recipient', sa.String(length=16), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('tts_message', sa.Text(), nullable=True),
    sa.Column('tts_lang', sa.String(length=10), nullable=True),
    sa.Column('recording_url', sa.Text(), nullable=True),
    sa.Column('unit_price', sa.BigInteger(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('duration', sa.Integer(), nullable=True),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.Column('tags', sa.Text(), nullable=False),
    sa.Column('callback_url', sa.Text(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('started_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("mode IN ('live', 'test')", name='call_mode'),
    sa.CheckConstraint("status IN ('QUEUED', 'IN PROGRESS', 'ANSWERED', 'FAILED')", name='call_status'),
    sa.CheckConstraint('cost >= 0', name='call_cost'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['credential_id'], ['api_credentials.id'], ),
    sa.ForeignKeyConstraint(['hold_id'], ['credit_holds.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('callid')
    )
    with op.batch_alter_table('voice_calls', schema=None) as batch_op:
        batch_op.create_index('ix_voice_calls_account_time', ['account_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_voice_calls_credential_id'), ['credential_id'], unique=False)

    op.create_table('spend_counters',
    sa.Column('scope', sa.String(length=40), nullable=False),
    sa.Column('period', sa.String(length=10), nullable=False),
    sa.Column('spent', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('scope', 'period')
    )
    op.add_column('accounts', sa.Column('allowed_countries', sa.String(length=100), server_default='JP', nullable=False))
    # The default price table (milli-yen per unit): operators edit it; an unlisted country is refused.
    prices = sa.table('prices', sa.column('product', sa.String), sa.column('country', sa.String),
                      sa.column('unit_price', sa.BigInteger))
    op.bulk_insert(prices, [
        {"product": product, "country": country, "unit_price": price}
        for product, country, price in DEFAULT_PRICES
    ])


def downgrade() -> None:
    with op.batch_alter_table('accounts', schema=None) as batch_op:
        batch_op.drop_column('allowed_countries')

    with op.batch_alter_table('voice_calls', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_voice_calls_credential_id'))
        batch_op.drop_index('ix_voice_calls_account_time')

    op.drop_table('spend_counters')
    op.drop_table('voice_calls')
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_messages_credential_id'))
        batch_op.drop_index('ix_sms_messages_account_time')

    op.drop_table('sms_messages')
    with op.batch_alter_table('api_credential_secrets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_credential_secrets_credential_id'))

    op.drop_table('api_credential_secrets')
    with op.batch_alter_table('audit_events', schema=None) as batch_op:
        batch_op.drop_index('ix_audit_events_account_time')

    op.drop_table('audit_events')
    op.drop_table('api_idempotency')
    with op.batch_alter_table('api_credentials', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_credentials_account_id'))

    op.drop_table('api_credentials')
    op.drop_table('prices')
