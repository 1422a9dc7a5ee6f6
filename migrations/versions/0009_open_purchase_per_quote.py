"""billing: one open purchase per account and quote, so a stale confirmation page returns it (issue 11)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01 15:40:00
"""

from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # purchases left open by double submits before this revision: only the newest of each quote stays open
    op.execute(
        "UPDATE purchases SET status = 'expired' WHERE status = 'open' AND id NOT IN "
        "(SELECT MAX(id) FROM purchases WHERE status = 'open' GROUP BY account_id, amount_yen, total_yen)"
    )
    op.create_index('uq_open_purchase_per_quote', 'purchases', ['account_id', 'amount_yen', 'total_yen'], unique=True,
                    sqlite_where=sa.text("status = 'open'"), postgresql_where=sa.text("status = 'open'"))


def downgrade() -> None:
    op.drop_index('uq_open_purchase_per_quote', table_name='purchases')
