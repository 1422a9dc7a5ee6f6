"""ledger

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 05:14:15.945743
"""

from alembic import op
import sqlalchemy as sa



revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


APPEND_ONLY = ("credit_transactions", "credit_entries")


# Lock the account's credit row, then read (each statement with a fresh snapshot, so after
# waiting for the lock nothing read is stale) the journal line under the idempotency key and
# the lots with credit left: one round trip for the start of every ledger write.
LOCK_FUNCTION = """
CREATE FUNCTION ledger_lock(p_account integer, p_key varchar)
RETURNS TABLE (balance bigint, held bigint, previous_id integer, previous_hash varchar, previous_amount bigint,
               previous_balance bigint, lot_id integer, lot_kind varchar, lot_amount bigint, lot_remaining bigint,
               lot_issued timestamptz, lot_expires timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    state record;
    previous record;
BEGIN
    SELECT s.balance, s.held INTO state FROM credit_states s WHERE s.account_id = p_account FOR UPDATE;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    SELECT t.id, t.request_hash, t.amount, t.balance_after INTO previous
        FROM credit_transactions t WHERE t.account_id = p_account AND t.idempotency_key = p_key;
    RETURN QUERY
        SELECT state.balance, state.held, previous.id, previous.request_hash, previous.amount, previous.balance_after,
               l.id, l.kind, l.amount, l.remaining, l.issued_at, l.expires_at
        FROM (SELECT 1) AS one
        LEFT JOIN credit_lots l ON l.account_id = p_account AND l.remaining > 0;
END $$
"""


def _six_months() -> sa.CheckConstraint:
    if op.get_bind().dialect.name == "sqlite":
        return sa.CheckConstraint("expires_at <= datetime(issued_at, '+6 months')", name="lot_at_most_six_months")
    return sa.CheckConstraint("expires_at <= issued_at + interval '6 months'", name="lot_at_most_six_months")


def _forbid_changes(table: str) -> None:
    """The journal is append-only: the database itself refuses UPDATE and DELETE."""
    if op.get_bind().dialect.name == "sqlite":
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER {table}_no_{action.lower()} BEFORE {action} ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{table} is append-only'); END"
            )
        return
    op.execute(
        f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
        "FOR EACH ROW EXECUTE FUNCTION ledger_append_only()"
    )


def upgrade() -> None:
    
    op.create_table('credit_holds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('charged', sa.BigInteger(), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('closed_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('amount > 0', name='hold_amount_positive'),
    sa.CheckConstraint('charged IS NULL OR (charged >= 0 AND charged <= amount)', name='hold_charge_within_amount'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('credit_holds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_holds_account_id'), ['account_id'], unique=False)

    op.create_table('credit_lots',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=12), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('remaining', sa.BigInteger(), nullable=False),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('expires_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('source_ref', sa.String(length=120), nullable=False),
    sa.Column('expired_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=True),
    _six_months(),
    sa.CheckConstraint("kind IN ('trial', 'purchase', 'grant', 'adjustment')", name='lot_kind'),
    sa.CheckConstraint('amount > 0', name='lot_amount_positive'),
    sa.CheckConstraint('expires_at > issued_at', name='lot_expires_after_issue'),
    sa.CheckConstraint('remaining >= 0 AND remaining <= amount', name='lot_remaining_within_amount'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('source_ref')
    )
    with op.batch_alter_table('credit_lots', schema=None) as batch_op:
        batch_op.create_index('ix_credit_lots_account_expiry', ['account_id', 'expires_at'], unique=False)

    op.create_table('credit_states',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('balance', sa.BigInteger(), nullable=False),
    sa.Column('held', sa.BigInteger(), nullable=False),
    sa.Column('floor', sa.BigInteger(), nullable=False),
    sa.Column('billing_mode', sa.String(length=10), nullable=False),
    sa.Column('has_purchased', sa.Boolean(), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("billing_mode IN ('prepaid')", name='billing_mode'),
    sa.CheckConstraint('balance >= floor', name='balance_above_floor'),
    sa.CheckConstraint('floor <= 0', name='floor_not_positive'),
    sa.CheckConstraint('held >= 0', name='held_not_negative'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('credit_hold_parts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['hold_id'], ['credit_holds.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['credit_lots.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('credit_hold_parts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_hold_parts_hold_id'), ['hold_id'], unique=False)

    op.create_table('credit_transactions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.Column('balance_after', sa.BigInteger(), nullable=False),
    sa.Column('held_after', sa.BigInteger(), nullable=False),
    sa.Column('idempotency_key', sa.String(length=200), nullable=False),
    sa.Column('request_hash', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.String(length=300), nullable=False),
    sa.Column('hold_id', sa.Integer(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("kind IN ('grant', 'debit', 'hold', 'release', 'expire', 'refund')", name='transaction_kind'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['hold_id'], ['credit_holds.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'idempotency_key', name='uq_transaction_idempotency')
    )
    with op.batch_alter_table('credit_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_credit_transactions_account_time', ['account_id', 'occurred_at'], unique=False)

    op.create_table('credit_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transaction_id', sa.Integer(), nullable=False),
    sa.Column('lot_id', sa.Integer(), nullable=False),
    sa.Column('amount', sa.BigInteger(), nullable=False),
    sa.CheckConstraint('amount <> 0', name='entry_not_zero'),
    sa.ForeignKeyConstraint(['lot_id'], ['credit_lots.id'], ),
    sa.ForeignKeyConstraint(['transaction_id'], ['credit_transactions.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('credit_entries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_credit_entries_lot_id'), ['lot_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_credit_entries_transaction_id'), ['transaction_id'], unique=False)

    


    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "CREATE FUNCTION ledger_append_only() RETURNS trigger LANGUAGE plpgsql AS $$ "
            "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$"
        )
    for table in APPEND_ONLY:
        _forbid_changes(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(LOCK_FUNCTION)
    op.execute(
        "INSERT INTO credit_states (account_id, balance, held, floor, billing_mode, has_purchased, updated_at) "
        "SELECT id, 0, 0, 0, 'prepaid', false, created_at FROM accounts"
    )


def downgrade() -> None:
    
    with op.batch_alter_table('credit_entries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_entries_transaction_id'))
        batch_op.drop_index(batch_op.f('ix_credit_entries_lot_id'))

    op.drop_table('credit_entries')
    with op.batch_alter_table('credit_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_transactions_account_time')

    op.drop_table('credit_transactions')
    with op.batch_alter_table('credit_hold_parts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_hold_parts_hold_id'))

    op.drop_table('credit_hold_parts')
    op.drop_table('credit_states')
    with op.batch_alter_table('credit_lots', schema=None) as batch_op:
        batch_op.drop_index('ix_credit_lots_account_expiry')

    op.drop_table('credit_lots')
    with op.batch_alter_table('credit_holds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_credit_holds_account_id'))

    op.drop_table('credit_holds')
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS ledger_append_only()")
        op.execute("DROP FUNCTION IF EXISTS ledger_lock(integer, varchar)")
