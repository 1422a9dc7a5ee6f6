"""sends whose outcome is unknown (R12): status UNKNOWN for messages and calls, `in_doubt_since`
on both (a hand-over that may have reached the carrier began then), and the test inbox's
`reference` (the msgid or callid: the carrier's idempotency key and what the worker's
reconcile pass looks a send up by)

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 22:45:00

On SQLite, changing a CHECK recreates sms_messages and voice_calls, which drops the usage
rollup's triggers of migration 0013: they are created again here.
"""

import importlib.util
from pathlib import Path

from alembic import op
import sqlalchemy as sa


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

OLD = {
    "sms_messages": ("sms_status", "QUEUED", "DELIVERING", "DELIVERED", "FAIL"),
    "voice_calls": ("call_status", "QUEUED", "IN PROGRESS", "ANSWERED", "FAILED"),
}


def _usage_triggers() -> list[str]:
    """Migration 0013's SQLite triggers (its module, loaded by path: revisions are not a package)."""
    path = Path(__file__).with_name("0013_usage.py")
    spec = importlib.util.spec_from_file_location("migration_0013_usage", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.sqlite_statements()


def _statuses(table: str, extra: tuple[str, ...]) -> tuple[str, str]:
    name, *values = OLD[table]
    quoted = ", ".join(f"'{value}'" for value in (*values, *extra))
    return name, f"status IN ({quoted})"


def _change(extra: tuple[str, ...], add: bool) -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table in OLD:
        name, check = _statuses(table, extra)
        with op.batch_alter_table(table, schema=None, recreate="always" if sqlite else "never") as batch_op:
            if add:
                batch_op.add_column(sa.Column('in_doubt_since', sa.DateTime(timezone=True), nullable=True))
            else:
                batch_op.drop_column('in_doubt_since')
            batch_op.drop_constraint(name, type_='check')
            batch_op.create_check_constraint(name, check)
    if sqlite:
        for statement in _usage_triggers():
            op.execute(statement)


def upgrade() -> None:
    _change(("UNKNOWN",), add=True)
    with op.batch_alter_table('test_inbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint('uq_inbox_reference', ['channel', 'reference'])


def downgrade() -> None:
    """Refused by the database while any message or call is UNKNOWN: reconcile them first."""
    with op.batch_alter_table('test_inbox_messages', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbox_reference', type_='unique')
        batch_op.drop_column('reference')
    _change((), add=False)
