"""billing: profiles, purchases, gateway events and refunds, invoices and their PDFs, sandbox

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 07:28:53.067017
"""

from alembic import op
import sqlalchemy as sa



revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


IMMUTABLE = ("invoices", "invoice_renditions")


def _forbid_changes(table: str) -> None:
    """Issued documents never change: the database refuses UPDATE and DELETE on them."""
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
    op.create_table('document_counters',
    sa.Column('series', sa.String(length=10), nullable=False),
    sa.Column('last_number', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('series')
    )
    op.create_table('sandbox_payments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('session_id', sa.String(length=64), nullable=False),
    sa.Column('payment_intent_id', sa.String(length=64), nullable=False),
    sa.Column('purchase_ref', sa.String(length=40), nullable=False),
    sa.Column('amount_total', sa.Integer(), nullable=False),
    sa.Column('description', sa.String(length=200), nullable=False),
    sa.Column('konbini_allowed', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('payment_status', sa.String(length=10), nullable=False),
    sa.Column('intent_status', sa.String(length=30), nullable=False),
    sa.Column('method', sa.String(length=20), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('voucher_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('payment_intent_id'),
    sa.UniqueConstraint('purchase_ref'),
    sa.UniqueConstraint('session_id')
    )
    op.create_table('billing_profiles',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('legal_name', sa.String(length=200), nullable=False),
    sa.Column('postal_code', sa.String(length=20), nullable=False),
    sa.Column('address', sa.String(length=300), nullable=False),
    sa.Column('billing_email', sa.String(length=254), nullable=False),
    sa.Column('registration_number', sa.String(length=14), nullable=True),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('account_id')
    )
    op.create_table('purchases',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('public_id', sa.String(length=40), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.Integer(), nullable=False),
    sa.Column('amount_yen', sa.Integer(), nullable=False),
    sa.Column('tax_rate', sa.Integer(), nullable=False),
    sa.Column('tax_yen', sa.Integer(), nullable=False),
    sa.Column('total_yen', sa.Integer(), nullable=False),
    sa.Column('recipient_name', sa.String(length=200), nullable=False),
    sa.Column('recipient_address', sa.String(length=330), nullable=False),
    sa.Column('recipient_registration_number', sa.String(length=14), nullable=True),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('gateway', sa.String(length=20), nullable=False),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('checkout_session_id', sa.String(length=255), nullable=True),
    sa.Column('checkout_url', sa.Text(), nullable=True),
    sa.Column('payment_intent_id', sa.String(length=255), nullable=True),
    sa.Column('method', sa.String(length=20), nullable=True),
    sa.Column('voucher_expires_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('paid_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('lot_id', sa.Integer(), nullable=True),
    sa.Column('refunded_yen', sa.Integer(), nullable=False),
    sa.Column('taken_back', sa.BigInteger(), nullable=False),
    sa.Column('dispute_id', sa.String(length=255), nullable=True),
    sa.Column('dispute_status', sa.String(length=10), nullable=True),
    sa.Column('dispute_hold_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint("dispute_status IS NULL OR dispute_status IN ('open', 'won', 'lost')", name='purchase_dispute'),
    sa.CheckConstraint("status = 'paid' OR lot_id IS NULL", name='purchase_lot_only_when_paid'),
    sa.CheckConstraint("status IN ('open', 'awaiting', 'paid', 'failed', 'expired')", name='purchase_status'),
    sa.CheckConstraint('amount_yen > 0 AND amount_yen <= 1000000', name='purchase_amount_range'),
    sa.CheckConstraint('refunded_yen >= 0 AND refunded_yen <= total_yen', name='purchase_refund_range'),
    sa.CheckConstraint('tax_rate IN (0, 10)', name='purchase_tax_rate'),
    sa.CheckConstraint('total_yen = amount_yen + tax_yen', name='purchase_total'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['created_by'], ['users.id'], ),
    sa.ForeignKeyConstraint(['dispute_hold_id'], ['credit_holds.id'], ),
    sa.ForeignKeyConstraint(['lot_id'], ['credit_lots.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('checkout_session_id'),
    sa.UniqueConstraint('lot_id'),
    sa.UniqueConstraint('payment_intent_id'),
    sa.UniqueConstraint('public_id')
    )
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_purchases_account_id'), ['account_id'], unique=False)

    op.create_table('payment_refunds',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('gateway_refund_id', sa.String(length=255), nullable=False),
    sa.Column('amount_yen', sa.Integer(), nullable=False),
    sa.Column('refunded_at', sa.DateTime(timezone=True), nullable=False),
    sa.CheckConstraint('amount_yen > 0', name='refund_amount_positive'),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('gateway_refund_id')
    )
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_payment_refunds_purchase_id'), ['purchase_id'], unique=False)

    op.create_table('webhook_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('event_id', sa.String(length=255), nullable=False),
    sa.Column('type', sa.String(length=100), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=True),
    sa.Column('received_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('event_id')
    )
    op.create_table('invoices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('number', sa.String(length=20), nullable=False),
    sa.Column('kind', sa.String(length=10), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('purchase_id', sa.Integer(), nullable=False),
    sa.Column('refund_id', sa.Integer(), nullable=True),
    sa.Column('reissue_of', sa.Integer(), nullable=True),
    sa.Column('reissue_reason', sa.String(length=300), nullable=True),
    sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('transaction_date', sa.DateTime(timezone=True), nullable=False),
    sa.Column('original_date', sa.DateTime(timezone=True), nullable=True),
    sa.Column('issuer_name', sa.String(length=200), nullable=False),
    sa.Column('issuer_registration_number', sa.String(length=14), nullable=False),
    sa.Column('recipient_name', sa.String(length=200), nullable=False),
    sa.Column('recipient_address', sa.String(length=330), nullable=False),
    sa.Column('recipient_registration_number', sa.String(length=14), nullable=True),
    sa.Column('credit_yen', sa.Integer(), nullable=False),
    sa.Column('amount_yen', sa.Integer(), nullable=False),
    sa.Column('tax_rate', sa.Integer(), nullable=False),
    sa.Column('tax_yen', sa.Integer(), nullable=False),
    sa.Column('total_yen', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind IN ('invoice', 'return')", name='invoice_kind'),
    sa.CheckConstraint('tax_rate IN (0, 10)', name='invoice_tax_rate'),
    sa.CheckConstraint('total_yen = amount_yen + tax_yen', name='invoice_total'),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.ForeignKeyConstraint(['purchase_id'], ['purchases.id'], ),
    sa.ForeignKeyConstraint(['refund_id'], ['payment_refunds.id'], ),
    sa.ForeignKeyConstraint(['reissue_of'], ['invoices.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('number')
    )
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_invoices_account_id'), ['account_id'], unique=False)
        batch_op.create_index('uq_invoice_per_purchase', ['purchase_id'], unique=True, sqlite_where=sa.text("kind = 'invoice' AND reissue_of IS NULL"), postgresql_where=sa.text("kind = 'invoice' AND reissue_of IS NULL"))
        batch_op.create_index('uq_return_invoice_per_refund', ['refund_id'], unique=True, sqlite_where=sa.text("kind = 'return' AND reissue_of IS NULL"), postgresql_where=sa.text("kind = 'return' AND reissue_of IS NULL"))

    op.create_table('invoice_renditions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('invoice_id', sa.Integer(), nullable=False),
    sa.Column('language', sa.String(length=2), nullable=False),
    sa.Column('pdf', sa.LargeBinary(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('rendered_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['invoice_id'], ['invoices.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('invoice_id', 'language', name='uq_invoice_rendition')
    )
    for table in IMMUTABLE:
        _forbid_changes(table)


def downgrade() -> None:
    op.drop_table('invoice_renditions')
    with op.batch_alter_table('invoices', schema=None) as batch_op:
        batch_op.drop_index('uq_return_invoice_per_refund', sqlite_where=sa.text("kind = 'return' AND reissue_of IS NULL"), postgresql_where=sa.text("kind = 'return' AND reissue_of IS NULL"))
        batch_op.drop_index('uq_invoice_per_purchase', sqlite_where=sa.text("kind = 'invoice' AND reissue_of IS NULL"), postgresql_where=sa.text("kind = 'invoice' AND reissue_of IS NULL"))
        batch_op.drop_index(batch_op.f('ix_invoices_account_id'))

    op.drop_table('invoices')
    op.drop_table('webhook_events')
    with op.batch_alter_table('payment_refunds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_payment_refunds_purchase_id'))

    op.drop_table('payment_refunds')
    with op.batch_alter_table('purchases', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_purchases_account_id'))

    op.drop_table('purchases')
    op.drop_table('billing_profiles')
    op.drop_table('sandbox_payments')
    op.drop_table('document_counters')
