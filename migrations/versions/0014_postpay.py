"""postpay: invoice-billing contracts, applications, monthly invoices, payments; the credit line
as a ledger lot of kind 'line' (issue 15)

Revision ID: 0014
Revises: 0011
Create Date: 2026-12-01 19:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


LOT_KINDS = "'trial', 'purchase', 'grant', 'adjustment'"
TRANSACTION_KINDS = "'grant', 'debit', 'hold', 'release', 'expire', 'refund'"
SIX_MONTHS = {"sqlite": "expires_at <= datetime(issued_at, '+6 months')",
              "postgresql": "expires_at <= issued_at + interval '6 months'"}


def _ledger_checks(*, line: bool) -> None:
    """The lots' kind, six-month and remaining checks and the journal's kinds, with or without
    the credit line (kind 'line', which neither expires nor is a prepaid instrument)."""
    dialect = op.get_bind().dialect.name
    lot_checks = {
        "lot_kind": f"kind IN ({LOT_KINDS}{', ' + repr('line') if line else ''})",
        "lot_at_most_six_months": ("kind = 'line' OR " if line else "") + SIX_MONTHS[dialect],
        "lot_remaining_within_amount": ("remaining >= 0 AND (remaining <= amount OR kind = 'line')" if line
                                        else "remaining >= 0 AND remaining <= amount"),
    }
    kinds = f"kind IN ({TRANSACTION_KINDS}{', ' + repr('line') if line else ''})"
    if dialect == "postgresql":
        for name, condition in lot_checks.items():
            op.execute(f"ALTER TABLE credit_lots DROP CONSTRAINT {name}")
            op.execute(f"ALTER TABLE credit_lots ADD CONSTRAINT {name} CHECK ({condition})")
        op.execute("ALTER TABLE credit_transactions DROP CONSTRAINT transaction_kind")
        op.execute(f"ALTER TABLE credit_transactions ADD CONSTRAINT transaction_kind CHECK ({kinds})")
        return
    with op.batch_alter_table('credit_lots', recreate="always") as batch_op:
        for name, condition in lot_checks.items():
            batch_op.drop_constraint(name, type_="check")
            batch_op.create_check_constraint(name, condition)
    with op.batch_alter_table('credit_transactions', recreate="always") as batch_op:
        batch_op.drop_constraint("transaction_kind", type_="check")
        batch_op.create_check_constraint("transaction_kind", kinds)
    for action in ("UPDATE", "DELETE"):  # the journal's guards went with the old table: append-only again
        op.execute(f"DROP TRIGGER IF EXISTS credit_transactions_no_{action.lower()}")
        op.execute(f"CREATE TRIGGER credit_transactions_no_{action.lower()} BEFORE {action} ON credit_transactions "
                   "BEGIN SELECT RAISE(ABORT, 'credit_transactions is append-only'); END")


def upgrade() -> None:
    _ledger_checks(line=True)
    op.create_table('postpay_applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=False),
    sa.Column('legal_name', sa.String(length=200), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('registration_number', sa.String(length=14), nullable=True),
    sa.Column('contact_name', sa.String(length=100), nullable=False),
    sa.Column('contact_email', sa.String(length=254), nullable=False),
    sa.Column('expected_monthly_yen', sa.BigInteger(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('expected_monthly_yen > 0', name='postpay_expected_positive'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('postpay_applications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postpay_applications_account_id'), ['account_id'], unique=False)

    op.create_table('postpay_contracts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('limit_yen', sa.BigInteger(), nullable=True),
    sa.Column('due_days', sa.Integer(), nullable=True),
    sa.Column('terms', sa.String(length=300), nullable=True),
    sa.Column('reason', sa.String(length=300), nullable=True),
    sa.Column('suspended_by', sa.String(length=10), nullable=True),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('warned_percent', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('applied', 'approved', 'declined', 'suspended')", name='postpay_status'),
    sa.CheckConstraint('limit_yen IS NULL OR limit_yen > 0', name='postpay_limit_positive'),
    sa.CheckConstraint('due_days IS NULL OR (due_days >= 1 AND due_days <= 120)', name='postpay_due_days'),
    sa.CheckConstraint("(status IN ('approved', 'suspended')) = (lot_id IS NOT NULL)",
                       name='postpay_line_when_approved'),
    sa.CheckConstraint("(status = 'suspended') = (suspended_by IS NOT NULL)", name='postpay_suspended_by'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['credit_lots.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id'),
    sa.UniqueConstraint('lot_id')
    )
    op.create_table('postpay_invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('month', sa.String(length=7), nullable=False),
    sa.Column('covers_until', sa.DateTime(timezone=True), nullable=False),
    sa.Column('usage', sa.BigInteger(), nullable=False),
    sa.Column('subtotal_yen', sa.BigInteger(), nullable=False),
    sa.Column('tax_rate', sa.Integer(), nullable=False),
    sa.Column('tax_yen', sa.BigInteger(), nullable=False),
    sa.Column('total_yen', sa.BigInteger(), nullable=False),
    sa.Column('paid_yen', sa.BigInteger(), nullable=False),
    sa.Column('restored', sa.BigInteger(), nullable=False),
    sa.Column('issued_on', sa.Date(), nullable=False),
    sa.Column('due_on', sa.Date(), nullable=False),
    sa.Column('issuer_name', sa.String(length=200), nullable=False),
    sa.Column('issuer_registration_number', sa.String(length=14), nullable=False),
    sa.Column('recipient_name', sa.String(length=200), nullable=False),
    sa.Column('recipient_address', sa.String(length=330), nullable=False),
    sa.Column('recipient_registration_number', sa.String(length=14), nullable=True),
    sa.Column('bank_account', sa.Text(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('reminded_again_at', sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint('tax_rate IN (0, 10)', name='postpay_invoice_tax_rate'),
    sa.CheckConstraint('total_yen = subtotal_yen + tax_yen', name='postpay_invoice_total'),
    sa.CheckConstraint('paid_yen >= 0 AND paid_yen <= total_yen', name='postpay_invoice_paid_range'),
    sa.CheckConstraint('usage > 0 AND restored >= 0 AND restored <= usage', name='postpay_invoice_restored_range'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('account_id', 'month', name='uq_postpay_invoice_month'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('postpay_invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postpay_invoices_account_id'), ['account_id'], unique=False)

    op.create_table('postpay_invoice_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('product', sa.String(length=10), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('usage', sa.BigInteger(), nullable=False),
    sa.Column('amount_yen', sa.BigInteger(), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['postpay_invoices.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_id', 'product', name='uq_postpay_line_product')
    )
    with op.batch_alter_table('postpay_invoice_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postpay_invoice_lines_invoice_id'), ['invoice_id'], unique=False)

    op.create_table('postpay_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('amount_yen', sa.BigInteger(), nullable=False),
    sa.Column('paid_on', sa.Date(), nullable=False),
    sa.Column('reference', sa.String(length=200), nullable=False),
    sa.Column('restored', sa.BigInteger(), nullable=False),
    sa.Column('recorded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_yen > 0', name='postpay_payment_positive'),
    sa.ForeignKeyConstraint(['invoice_id'], ['postpay_invoices.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_id', 'reference', name='uq_postpay_payment_reference')
    )
    with op.batch_alter_table('postpay_payments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_postpay_payments_invoice_id'), ['invoice_id'], unique=False)


def downgrade() -> None:
    for table in ('postpay_payments', 'postpay_invoice_lines', 'postpay_invoices', 'postpay_contracts',
                  'postpay_applications'):
        op.drop_table(table)
    _ledger_checks(line=False)
