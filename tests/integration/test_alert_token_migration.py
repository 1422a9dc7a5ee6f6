"""Migration 0016 hashes the confirmation tokens of the alerts' extra addresses in place: a link
mailed before it still confirms, and afterwards the table holds no raw token. Its downgrade
cannot give the raw tokens back and must not let a stored hash act as a token: pending links
expire."""

import hashlib
import secrets

import pytest
from alembic import command
from sqlalchemy import MetaData, create_engine, insert, select

from portal.migrate import alembic_config, upgrade
from tests.conftest import ENGINES, make_app
from tests.helpers import PageClient
from tests.integration.test_callback_secret_migration import NOW, _row, empty_database


def _tables(engine):
    tables = MetaData()
    tables.reflect(engine)
    return tables.tables


@pytest.mark.parametrize("engine_name", ENGINES)
def test_links_mailed_before_the_migration_still_confirm_and_no_raw_token_stays(engine_name, tmp_path):
    pending, confirmed = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    with empty_database(engine_name, tmp_path) as url:
        upgrade(url, "0015")
        engine = create_engine(url)
        t = _tables(engine)
        with engine.begin() as connection:
            connection.execute(insert(t["accounts"]).values(_row(t["accounts"], id=1, name="Old KK", kind="company",
                                                                 language="ja", tax_residency="JP")))
            for row_id, address, token, at in ((1, "ops@example.com", pending, None),
                                               (2, "done@example.com", confirmed, NOW)):
                connection.execute(insert(t["alert_addresses"]).values(_row(
                    t["alert_addresses"], id=row_id, account_id=1, address=address, language="ja", token=token,
                    confirmed_at=at)))
        upgrade(url, "0016")
        t = _tables(engine)
        with engine.connect() as connection:
            stored = dict(connection.execute(select(t["alert_addresses"].c.id, t["alert_addresses"].c.token_hash)).all())
        assert "token" not in t["alert_addresses"].c
        assert stored == {1: hashlib.sha256(pending.encode()).hexdigest(),
                          2: hashlib.sha256(confirmed.encode()).hexdigest()}

        app = make_app(url)  # the portal on the migrated database: the old link works as before
        visitor = PageClient(app.test_client(), app)
        assert "ops@example.com" in visitor.text(f"/alerts/confirm/{pending}")
        visitor.post(f"/alerts/confirm/{pending}", status=200)
        visitor.get(f"/alerts/confirm/{pending}", status=410)  # used: confirmed
        visitor.get(f"/alerts/confirm/{confirmed}", status=410)  # confirmed before the migration
        visitor.get(f"/alerts/confirm/{stored[1]}", status=410)  # the stored hash is no link
        app.extensions["portal.engine"].dispose()

        command.downgrade(alembic_config(url), "0015")
        t = _tables(engine)
        with engine.connect() as connection:
            after = dict(connection.execute(select(t["alert_addresses"].c.id, t["alert_addresses"].c.token)).all())
        engine.dispose()
    assert set(after) == {1, 2} and not set(after.values()) & (set(stored.values()) | {pending, confirmed})
