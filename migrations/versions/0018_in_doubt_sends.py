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


SENDS = {"sms_messages": ("api_sms", "message_id"), "voice_calls": ("api_call", "call_id")}


def _sends_left_queued(now: datetime) -> None:
    """Sends queued before this revision, settled by what their jobs say (a QUEUED send's job is
    written in its own transaction, so every one had a job):
    - no live job names it: the old worker gave up on it (and redacted the job's payload) and
      left it QUEUED and charged for ever. Any of its attempts may have reached the carrier (any
      error then was an unknown outcome), so it is in doubt since it was created and becomes
      UNKNOWN: the reconcile pass asks the carrier about it;
    - a live job that made attempts names it: in doubt since it was created, left to that job;
    - a live job not tried yet names it: nothing to doubt, left as it is.
    No age is looked at: a job that ran out its leases without back-off (a carrier that hung)
    was given up well inside the back-offs' span."""
    jobs = sa.table("outbox", sa.column("kind", sa.String), sa.column("payload", sa.Text),
                    sa.column("attempts", sa.Integer), sa.column("sent_at", sa.DateTime(timezone=True)),
                    sa.column("failed_at", sa.DateTime(timezone=True)))
    for name, (kind, key) in SENDS.items():
        table = sa.table(name, sa.column("id", sa.Integer), sa.column("status", sa.String),
                         sa.column("created_at", sa.DateTime(timezone=True)),
                         sa.column("in_doubt_since", sa.DateTime(timezone=True)))
        rows = op.get_bind().execute(sa.select(jobs.c.payload, jobs.c.attempts).where(
            jobs.c.kind == kind, jobs.c.sent_at.is_(None), jobs.c.failed_at.is_(None))).all()
        live = {json.loads(payload).get(key): attempts for payload, attempts in rows}
        untried = [row_id for row_id, attempts in live.items() if row_id is not None and not attempts]
        op.execute(table.update().where(table.c.status == "QUEUED", table.c.in_doubt_since.is_(None),
                                        table.c.id.not_in(untried)).values(in_doubt_since=table.c.created_at))
        op.execute(table.update().where(table.c.status == "QUEUED", table.c.id.not_in(
            [row_id for row_id in live if row_id is not None])).values(status="UNKNOWN"))
    _keep_unknown_call_holds(now if op.get_bind().dialect.name != "sqlite" else now.replace(tzinfo=None))


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
