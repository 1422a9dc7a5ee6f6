"""Migration 0006 gives every existing credential its own fresh random callback secret (they
used to be derived from PORTAL_SECRET_KEY)."""

import re
import uuid
from contextlib import contextmanager
from datetime import datetime, timezone

import pytest
from sqlalchemy import Boolean, DateTime, Integer, MetaData, String, create_engine, insert, select, text
from sqlalchemy.engine import make_url

from portal.migrate import upgrade
from tests.conftest import ENGINES, PG_URL

NOW = datetime(2026, 11, 30, tzinfo=timezone.utc)


@contextmanager
def empty_database(engine_name: str, tmp_path):
    if engine_name == "sqlite":
        yield f"sqlite:///{tmp_path / 'migration.sqlite3'}"
        return
    server = make_url(PG_URL)
    name = f"chotto_migration_{uuid.uuid4().hex[:10]}"
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _row(table, **given) -> dict:
    """`given`, plus a plain value for every other required column of the table as it is now."""
    row = dict(given)
    for column in table.columns:
        if column.name in row or column.nullable or column.primary_key or column.server_default is not None:
            continue
        kind = column.type
        if isinstance(kind, DateTime):
            row[column.name] = NOW
        elif isinstance(kind, Boolean):
            row[column.name] = False
        elif isinstance(kind, Integer):
            row[column.name] = 0
        elif isinstance(kind, String):
            row[column.name] = "x"
    return row


@pytest.mark.parametrize("engine_name", ENGINES)
def test_existing_credentials_get_distinct_random_callback_secrets(engine_name, tmp_path):
    with empty_database(engine_name, tmp_path) as url:
        upgrade(url, "0005")
        engine = create_engine(url)
        tables = MetaData()
        tables.reflect(engine)
        accounts, users, credentials = (tables.tables[name] for name in ("accounts", "users", "api_credentials"))
        with engine.begin() as connection:
            connection.execute(insert(accounts).values(_row(accounts, id=1, name="Old KK", kind="company",
                                                            language="ja", tax_residency="JP")))
            connection.execute(insert(users).values(_row(users, id=1, email="old@example.com", language="ja")))
            for number in (1, 2):
                connection.execute(insert(credentials).values(_row(
                    credentials, id=number, sid=f"{number:032x}", account_id=1, name=f"key {number}", mode="live",
                    scopes="sms", allowed_networks="", created_by=1)))
        upgrade(url, "0006")
        tables = MetaData()
        tables.reflect(engine)
        secrets = tables.tables["api_callback_secrets"]
        with engine.connect() as connection:
            rows = connection.execute(select(secrets.c.credential_id, secrets.c.secret, secrets.c.expires_at)
                                      .order_by(secrets.c.credential_id)).all()
        engine.dispose()
    assert [row.credential_id for row in rows] == [1, 2] and rows[0].secret != rows[1].secret
    assert all(re.fullmatch(r"chotto_whsec_[0-9A-Za-z]{32}", row.secret) and row.expires_at is None for row in rows)
