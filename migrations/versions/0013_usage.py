"""usage history (issue 14): what each message and call was (product, OTP site), when a message
was handed to the carrier, keyset indexes (account, time, id), the callbacks' answers, and the
exact daily rollup `usage_daily` kept by triggers on both engines

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01 19:40:00

The triggers are the only writers of usage_daily besides the purge, so every write path (the
send path's one-statement rider, the worker, an operator's fix in psql) keeps it exact.
SQLite: row triggers with UPSERT. PostgreSQL: statement triggers over transition tables, so a
set-based insert (the demo seed) rolls up once per statement, and each statement's changes are
applied in key order (two workers never take two rollup rows in opposite orders).

Note for later migrations: on SQLite, `batch_alter_table` on sms_messages or voice_calls
recreates the table and drops these triggers; such a migration must create them again
(with `sqlite_statements()` of this migration).
"""

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

KEY = ("account_id", "day", "product", "credential_id", "site_id", "mode", "status", "country")
FIGURES = ("events", "segments", "seconds", "minutes", "cost")
WATCHED = {  # the columns whose change moves a figure or a key
    "sms_messages": ("account_id", "created_at", "product", "credential_id", "otp_site_id", "mode", "status",
                     "country", "segments", "cost", "refunded_at"),
    "voice_calls": ("account_id", "created_at", "product", "credential_id", "otp_site_id", "mode", "status",
                    "country", "duration", "cost"),
}


def _values(table: str, row: str, sign: str, day: str) -> list[str]:
    """The rollup key and the row's figures (times `sign`), as SQL expressions over `row`."""
    key = [f"{row}.account_id", day, f"{row}.product", f"COALESCE({row}.credential_id, 0)",
           f"COALESCE({row}.otp_site_id, 0)", f"{row}.mode", f"{row}.status", f"{row}.country"]
    if table == "sms_messages":
        figures = [f"{sign}1", f"{sign}{row}.segments", "0", "0",
                   f"{sign}(CASE WHEN {row}.refunded_at IS NULL THEN {row}.cost ELSE 0 END)"]
    else:
        figures = [f"{sign}1", "0", f"{sign}COALESCE({row}.duration, 0)",
                   f"{sign}((COALESCE({row}.duration, 0) + 59) / 60)", f"{sign}{row}.cost"]
    return key + figures


_UPSERT_SET = ", ".join(f"{name} = usage_daily.{name} + excluded.{name}" for name in FIGURES)
_COLUMNS = ", ".join(KEY + FIGURES)


# -- SQLite: row triggers -------------------------------------------------------------------------


def _sqlite_upsert(table: str, row: str, sign: str) -> str:
    values = ", ".join(_values(table, row, sign, f"date({row}.created_at, '+9 hours')"))
    return (f"INSERT INTO usage_daily ({_COLUMNS}) VALUES ({values}) "
            f"ON CONFLICT ({', '.join(KEY)}) DO UPDATE SET {_UPSERT_SET};")


def sqlite_statements() -> list[str]:
    statements = []
    for table, watched in WATCHED.items():
        changed = " OR ".join(f"old.{column} IS NOT new.{column}" for column in watched)
        statements += [
            f"CREATE TRIGGER usage_{table}_insert AFTER INSERT ON {table} BEGIN "
            f"{_sqlite_upsert(table, 'new', '')} END",
            f"CREATE TRIGGER usage_{table}_update AFTER UPDATE ON {table} WHEN {changed} BEGIN "
            f"{_sqlite_upsert(table, 'old', '-')} {_sqlite_upsert(table, 'new', '')} END",
            f"CREATE TRIGGER usage_{table}_delete AFTER DELETE ON {table} BEGIN "
            f"{_sqlite_upsert(table, 'old', '-')} END",
        ]
    return statements


# -- PostgreSQL: statement triggers over transition tables ----------------------------------------


def _pg_delta(table: str, source: str, row: str, sign: str, where: str = "") -> str:
    day = f"({row}.created_at AT TIME ZONE 'Asia/Tokyo')::date"
    names = list(KEY + FIGURES)
    values = ", ".join(f"{expression} AS {name}" for expression, name in zip(_values(table, row, sign, day), names))
    return f"SELECT {values} FROM {source}{where}"


def _pg_function(table: str, operation: str) -> str:
    if operation == "insert":
        delta = _pg_delta(table, "new_rows r", "r", "")
    elif operation == "delete":
        delta = _pg_delta(table, "old_rows r", "r", "-")
    else:
        watched = WATCHED[table]
        differ = (f" WHERE ({', '.join(f'o.{c}' for c in watched)}) IS DISTINCT FROM "
                  f"({', '.join(f'n.{c}' for c in watched)})")
        delta = (_pg_delta(table, "old_rows o JOIN new_rows n ON n.id = o.id", "o", "-", differ) + " UNION ALL "
                 + _pg_delta(table, "old_rows o JOIN new_rows n ON n.id = o.id", "n", "", differ))
    key = ", ".join(KEY)
    sums = ", ".join(f"sum({name})" for name in FIGURES)
    return (f"CREATE FUNCTION usage_{table}_{operation}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"INSERT INTO usage_daily ({_COLUMNS}) SELECT {key}, {sums} FROM ({delta}) AS delta "
            f"GROUP BY {key} ORDER BY {key} ON CONFLICT ({key}) DO UPDATE SET {_UPSERT_SET}; "
            f"RETURN NULL; END $$")


def postgresql_statements() -> list[str]:
    statements = []
    for table in WATCHED:
        for operation, referencing in (("insert", "NEW TABLE AS new_rows"), ("delete", "OLD TABLE AS old_rows"),
                                       ("update", "OLD TABLE AS old_rows NEW TABLE AS new_rows")):
            statements += [
                _pg_function(table, operation),
                f"CREATE TRIGGER usage_{table}_{operation} AFTER {operation.upper()} ON {table} "
                f"REFERENCING {referencing} FOR EACH STATEMENT EXECUTE FUNCTION usage_{table}_{operation}()",
            ]
    return statements


def _backfill_statements() -> list[str]:
    """What existing rows were (OTP codes name their SMS or call), then their rollup, once."""
    return [
        "UPDATE sms_messages SET product = 'otp', otp_site_id = (SELECT c.site_id FROM otp_codes c "
        "WHERE c.msgid = sms_messages.msgid) WHERE msgid IN (SELECT msgid FROM otp_codes)",
        "UPDATE voice_calls SET product = 'otp_call', otp_site_id = (SELECT c.site_id FROM otp_codes c "
        "WHERE c.msgid = voice_calls.callid OR c.fallback_callid = voice_calls.callid LIMIT 1) "
        "WHERE callid IN (SELECT msgid FROM otp_codes UNION SELECT fallback_callid FROM otp_codes "
        "WHERE fallback_callid IS NOT NULL)",
    ]


def _rollup_existing(dialect: str) -> list[str]:
    statements = []
    for table in WATCHED:
        day = ("(r.created_at AT TIME ZONE 'Asia/Tokyo')::date" if dialect == "postgresql"
               else "date(r.created_at, '+9 hours')")
        delta = ", ".join(f"{expression} AS {name}"
                          for expression, name in zip(_values(table, "r", "", day), KEY + FIGURES))
        key = ", ".join(KEY)
        sums = ", ".join(f"sum({name})" for name in FIGURES)
        statements.append(f"INSERT INTO usage_daily ({_COLUMNS}) SELECT {key}, {sums} FROM "
                          f"(SELECT {delta} FROM {table} r) AS delta GROUP BY {key} "
                          f"ON CONFLICT ({key}) DO UPDATE SET {_UPSERT_SET}")
    return statements


def upgrade() -> None:
    op.create_table('usage_daily',
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('product', sa.String(length=8), nullable=False),
    sa.Column('credential_id', sa.Integer(), nullable=False),
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(length=4), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=False),
    sa.Column('events', sa.BigInteger(), nullable=False),
    sa.Column('segments', sa.BigInteger(), nullable=False),
    sa.Column('seconds', sa.BigInteger(), nullable=False),
    sa.Column('minutes', sa.BigInteger(), nullable=False),
    sa.Column('cost', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('account_id', 'day', 'product', 'credential_id', 'site_id', 'mode', 'status',
                            'country', name='pk_usage_daily')
    )
    op.create_table('callback_attempts',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('ref', sa.String(length=32), nullable=False),
    sa.Column('event', sa.String(length=20), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('status_code', sa.Integer(), nullable=True),
    sa.Column('error', sa.String(length=200), nullable=True),
    sa.Column('attempted_at', sa.DateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['account_id'], ['accounts.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('callback_attempts', schema=None) as batch_op:
        batch_op.create_index('ix_callback_attempts_ref', ['ref'], unique=False)
        batch_op.create_index('ix_callback_attempts_time', ['attempted_at'], unique=False)

    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('product', sa.String(length=8), server_default='sms', nullable=False))
        batch_op.add_column(sa.Column('otp_site_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('handed_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_foreign_key('fk_sms_messages_otp_site', 'otp_sites', ['otp_site_id'], ['id'])
        batch_op.create_check_constraint('sms_product', "product IN ('sms', 'otp')")
        batch_op.drop_index('ix_sms_messages_account_time')
        batch_op.create_index('ix_sms_messages_account_time', ['account_id', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('voice_calls', schema=None) as batch_op:
        batch_op.add_column(sa.Column('product', sa.String(length=8), server_default='voice', nullable=False))
        batch_op.add_column(sa.Column('otp_site_id', sa.Integer(), nullable=True))
        batch_op.create_foreign_key('fk_voice_calls_otp_site', 'otp_sites', ['otp_site_id'], ['id'])
        batch_op.create_check_constraint('call_product', "product IN ('voice', 'otp_call')")
        batch_op.drop_index('ix_voice_calls_account_time')
        batch_op.create_index('ix_voice_calls_account_time', ['account_id', 'created_at', 'id'], unique=False)

    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.create_index('ix_otp_codes_fallback_call', ['fallback_callid'], unique=False)

    dialect = op.get_bind().dialect.name
    for statement in _backfill_statements() + _rollup_existing(dialect):
        op.execute(statement)
    for statement in postgresql_statements() if dialect == "postgresql" else sqlite_statements():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for table in WATCHED:
        for operation in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER IF EXISTS usage_{table}_{operation}" + (f" ON {table}" if dialect == "postgresql"
                                                                               else ""))
            if dialect == "postgresql":
                op.execute(f"DROP FUNCTION IF EXISTS usage_{table}_{operation}()")
    with op.batch_alter_table('otp_codes', schema=None) as batch_op:
        batch_op.drop_index('ix_otp_codes_fallback_call')
    with op.batch_alter_table('voice_calls', schema=None) as batch_op:
        batch_op.drop_index('ix_voice_calls_account_time')
        batch_op.create_index('ix_voice_calls_account_time', ['account_id', 'created_at'], unique=False)
        batch_op.drop_constraint('call_product', type_='check')
        batch_op.drop_constraint('fk_voice_calls_otp_site', type_='foreignkey')
        batch_op.drop_column('otp_site_id')
        batch_op.drop_column('product')
    with op.batch_alter_table('sms_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_sms_messages_account_time')
        batch_op.create_index('ix_sms_messages_account_time', ['account_id', 'created_at'], unique=False)
        batch_op.drop_constraint('sms_product', type_='check')
        batch_op.drop_constraint('fk_sms_messages_otp_site', type_='foreignkey')
        batch_op.drop_column('handed_at')
        batch_op.drop_column('otp_site_id')
        batch_op.drop_column('product')
    op.drop_table('callback_attempts')
    op.drop_table('usage_daily')
