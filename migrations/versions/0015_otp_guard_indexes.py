"""OTP request guards without scanning a day of codes (issue 16): indexes for the number's newest
code, the sends to a prefix or from an IP, the decided codes; and `otp_tallies`, each site's live
codes sent and verified by the hour, kept by triggers on otp_codes on both engines

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-01 20:30:00

The triggers are the only writers of otp_tallies, so every path that writes a code (the request,
the verification, the retention purge, an operator in psql) keeps the figures exact, in the
transaction that writes the code: concurrent requests and verifications add to a tally with an
upsert (PostgreSQL: the row's lock; SQLite: the database lock), never a read-then-write.

Note for later migrations: on SQLite, `batch_alter_table` on otp_codes recreates the table and
drops these triggers; such a migration must create them again (with `sqlite_statements()`).
"""

from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

INDEXES = {
    "ix_otp_codes_number": ["site_id", "mode", "phone_number", "id"],
    "ix_otp_codes_prefix_time": ["site_id", "mode", "prefix", "created_at"],
    "ix_otp_codes_ip_time": ["site_id", "mode", "ip", "created_at"],
    "ix_otp_codes_status_expiry": ["site_id", "mode", "status", "expires_at"],
}
HOUR = {  # the UTC hour a code was sent, as each engine stores a UTC timestamp
    "postgresql": "(date_trunc('hour', {row}.created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')",
    "sqlite": "strftime('%Y-%m-%d %H:00:00.000000', {row}.created_at)",
}
_WATCHED = ("site_id", "mode", "created_at")  # with whether the code is verified
_LIVE = {"sqlite": "new.mode = 'live'", "postgresql": "NEW.mode = 'live'"}


def _add(dialect: str, row: str, where: str) -> str:
    hour = HOUR[dialect].format(row=row)
    return (f"INSERT INTO otp_tallies (site_id, hour, sent, verified) "
            f"SELECT {row}.site_id, {hour}, 1, CASE WHEN {row}.status = 'verified' THEN 1 ELSE 0 END "
            f"WHERE {where} ON CONFLICT (site_id, hour) DO UPDATE "
            f"SET sent = otp_tallies.sent + excluded.sent, verified = otp_tallies.verified + excluded.verified;")


def _take(dialect: str, row: str) -> str:
    hour = HOUR[dialect].format(row=row)
    return (f"UPDATE otp_tallies SET sent = sent - 1, "
            f"verified = verified - CASE WHEN {row}.status = 'verified' THEN 1 ELSE 0 END "
            f"WHERE {row}.mode = 'live' AND site_id = {row}.site_id AND hour = {hour};")


def _changed() -> str:
    return " OR ".join([f"old.{column} IS DISTINCT FROM new.{column}" for column in _WATCHED]
                       + ["(old.status = 'verified') IS DISTINCT FROM (new.status = 'verified')"])


def sqlite_statements() -> list[str]:
    changed = _changed().replace("IS DISTINCT FROM", "IS NOT")
    return [
        f"CREATE TRIGGER otp_tally_insert AFTER INSERT ON otp_codes BEGIN "
        f"{_add('sqlite', 'new', _LIVE['sqlite'])} END",
        f"CREATE TRIGGER otp_tally_update AFTER UPDATE ON otp_codes WHEN {changed} BEGIN "
        f"{_take('sqlite', 'old')} {_add('sqlite', 'new', _LIVE['sqlite'])} END",
        f"CREATE TRIGGER otp_tally_delete AFTER DELETE ON otp_codes BEGIN {_take('sqlite', 'old')} END",
    ]


def postgresql_statements() -> list[str]:
    return [
        "CREATE FUNCTION otp_tally() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        f"IF TG_OP IN ('UPDATE', 'DELETE') THEN {_take('postgresql', 'OLD')} END IF; "
        f"IF TG_OP IN ('INSERT', 'UPDATE') THEN {_add('postgresql', 'NEW', _LIVE['postgresql'])} END IF; "
        "RETURN NULL; END $$",
        "CREATE TRIGGER otp_tally_insert AFTER INSERT OR DELETE ON otp_codes FOR EACH ROW EXECUTE FUNCTION otp_tally()",
        f"CREATE TRIGGER otp_tally_update AFTER UPDATE ON otp_codes FOR EACH ROW WHEN ({_changed()}) "
        "EXECUTE FUNCTION otp_tally()",
    ]


def _tally_existing(dialect: str) -> str:
    hour = HOUR[dialect].format(row="c")
    return (f"INSERT INTO otp_tallies (site_id, hour, sent, verified) "
            f"SELECT c.site_id, {hour}, count(*), sum(CASE WHEN c.status = 'verified' THEN 1 ELSE 0 END) "
            f"FROM otp_codes c WHERE c.mode = 'live' GROUP BY c.site_id, {hour}")


def upgrade() -> None:
    dialect = op.get_bind().dialect.name
    op.create_table('otp_tallies',
    sa.Column('site_id', sa.Integer(), nullable=False),
    sa.Column('hour', sa.DateTime(timezone=True), nullable=False),
    sa.Column('sent', sa.Integer(), nullable=False),
    sa.Column('verified', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['site_id'], ['otp_sites.id'], ),
    sa.PrimaryKeyConstraint('site_id', 'hour')
    )
    for name, columns in INDEXES.items():
        op.create_index(name, 'otp_codes', columns, unique=False)
    op.execute(_tally_existing(dialect))
    for statement in postgresql_statements() if dialect == "postgresql" else sqlite_statements():
        op.execute(statement)


def downgrade() -> None:
    dialect = op.get_bind().dialect.name
    for operation in ("insert", "update", "delete"):
        op.execute(f"DROP TRIGGER IF EXISTS otp_tally_{operation}" + (" ON otp_codes" if dialect == "postgresql"
                                                                        else ""))
    if dialect == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS otp_tally()")
    for name in INDEXES:
        op.drop_index(name, table_name='otp_codes')
    op.drop_table('otp_tallies')
