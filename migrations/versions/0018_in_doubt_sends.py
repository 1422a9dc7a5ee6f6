"""sends whose outcome is unknown (R12): status UNKNOWN for messages and calls, `in_doubt_since`
on both (a hand-over that may have reached the carrier began then), and the test inbox's
`reference` (the msgid or callid: the carrier's idempotency key and what the worker's
reconcile pass looks a send up by); the sends left queued by the worker before it are put in
doubt, and those past the retry span held as UNKNOWN for the reconcile pass

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-01 22:45:00

On SQLite, changing a CHECK recreates sms_messages and voice_calls, which drops the usage
rollup's triggers of migration 0013: they are created again here.
"""

import importlib.util
import json
from datetime import datetime, timedelta, timezone
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


RETRY_SPAN = timedelta(seconds=18_210)
"""portal.outbox.RETRY_SPAN when this was written (a test keeps them equal): the eleven back-offs
between the outbox's twelve attempts (30 s doubling, capped at 1 h): 5 h 3 min 30 s, the least
time after a send was queued before its job can have been given up."""

SENDS = {"sms_messages": ("api_sms", "message_id"), "voice_calls": ("api_call", "call_id")}


def _sends_left_queued(now: datetime) -> None:
    """Sends queued before this revision: their attempts ran when any error left the outcome
    unknown, so each is in doubt since it was created. One older than the retry span whose job
    is no longer live was given up by the old worker (its payload redacted), which left it
    queued and charged for ever: it becomes UNKNOWN, and the reconcile pass asks the carrier
    about it. One whose job is still live (its payload names it) is left to that job."""
    sqlite = op.get_bind().dialect.name == "sqlite"
    cutoff = now - RETRY_SPAN
    cutoff = cutoff.replace(tzinfo=None) if sqlite else cutoff
    jobs = sa.table("outbox", sa.column("kind", sa.String), sa.column("payload", sa.Text),
                    sa.column("sent_at", sa.DateTime(timezone=True)), sa.column("failed_at", sa.DateTime(timezone=True)))
    for name, (kind, key) in SENDS.items():
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("status", sa.String),
                         sa.column("created_at", sa.DateTime(timezone=True)),
                         sa.column("in_doubt_since", sa.DateTime(timezone=True)))
        op.execute(table.update().where(table.c.status == "QUEUED", table.c.in_doubt_since.is_(None))
                   .values(in_doubt_since=table.c.created_at))
        payloads = op.get_bind().execute(sa.select(jobs.c.payload).where(
            jobs.c.kind == kind, jobs.c.sent_at.is_(None), jobs.c.failed_at.is_(None))).scalars()
        live = {data[key] for data in map(json.loads, payloads) if key in data}
        op.execute(table.update().where(table.c.status == "QUEUED", table.c.created_at < cutoff,
                                        table.c.id.not_in(live)).values(status="UNKNOWN"))
    _keep_unknown_call_holds(now if not sqlite else now.replace(tzinfo=None))


UNKNOWN_CALL_HOLD = timedelta(days=30)  # portal.messaging.delivery.UNKNOWN_CALL_HOLD when this was written


def _keep_unknown_call_holds(now: datetime) -> None:
    """An UNKNOWN call's open hold is kept from the 24-hour expiry sweep, as the give-up now does:
    the call may have taken place. A hold the sweep released already stays released."""
    holds = sa.table("credit_holds", sa.column("id", sa.Integer), sa.column("expires_at", sa.DateTime(timezone=True)),
                     sa.column("closed_at", sa.DateTime(timezone=True)))
    calls = sa.table("voice_calls", sa.column("hold_id", sa.Integer), sa.column("status", sa.String))
    op.execute(holds.update().where(holds.c.closed_at.is_(None), holds.c.id.in_(
        sa.select(calls.c.hold_id).where(calls.c.status == "UNKNOWN"))).values(expires_at=now + UNKNOWN_CALL_HOLD))


def upgrade() -> None:
    _change(("UNKNOWN",), add=True)
    _sends_left_queued(datetime.now(timezone.utc))
    with op.batch_alter_table('test_inbox_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('reference', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint('uq_inbox_reference', ['channel', 'reference'])


def downgrade() -> None:
    """A send still UNKNOWN goes back to QUEUED, the state the code before this revision left
    such a send in (charged, never retried: reconcile them first to settle them)."""
    for name in SENDS:
        table = sa.table(name, sa.column("status", sa.String))
        op.execute(table.update().where(table.c.status == "UNKNOWN").values(status="QUEUED"))
    with op.batch_alter_table('test_inbox_messages', schema=None) as batch_op:
        batch_op.drop_constraint('uq_inbox_reference', type_='unique')
        batch_op.drop_column('reference')
    _change((), add=False)
