import json
from datetime import datetime, timedelta, timezone

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import MetaData, create_engine, insert, select

from portal.migrate import alembic_config, upgrade
from portal.models import metadata
from tests.conftest import ENGINES
from tests.integration.test_callback_secret_migration import _row, empty_database

HEAD = "0020"


def test_the_migration_head_is_pinned():
    """Bump HEAD with each new migration, so two branches adding one each cannot both land."""
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    assert script.get_heads() == [HEAD]
    assert [rev.revision for rev in script.walk_revisions()][-1] == "0001"


def test_the_migrated_schema_matches_the_models(database_url):
    engine = create_engine(database_url)
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        assert context.get_current_revision() == HEAD
        assert compare_metadata(context, metadata) == []
    engine.dispose()


@pytest.mark.parametrize("engine_name", ENGINES)
def test_sends_left_queued_before_0018_whose_job_was_given_up_are_unknown_and_those_tried_in_doubt(engine_name,
                                                                                                   tmp_path):
    """The worker before 0018 gave up on a send's job and left the send QUEUED and charged, its
    job's payload redacted. Each such send may have reached the carrier (any error then was an
    unknown outcome): in doubt since it was created, and UNKNOWN, so the reconcile pass settles
    it, however recent (a carrier that hung ran out twelve leases in an hour). A send whose job
    is still live stays QUEUED for it, in doubt if the job made attempts (1, 2: given up; 4:
    retried; 5: not tried yet). The downgrade puts UNKNOWN back to QUEUED."""
    now = datetime.now(timezone.utc)
    old, recent = now - timedelta(hours=6), now - timedelta(hours=1)
    with empty_database(engine_name, tmp_path) as url:
        upgrade(url, "0017")
        engine = create_engine(url)
        t = _tables(engine)
        with engine.begin() as connection:
            connection.execute(insert(t["accounts"]).values(_row(t["accounts"], id=1, name="Old KK", kind="company",
                                                                 language="ja", tax_residency="JP")))
            connection.execute(insert(t["users"]).values(_row(t["users"], id=1, email="old@example.com", language="ja")))
            connection.execute(insert(t["api_credentials"]).values(_row(
                t["api_credentials"], id=1, sid="1" * 32, account_id=1, name="key", mode="live", scopes="sms,voice",
                allowed_networks="", created_by=1)))
            for row_id, created in ((1, old), (2, recent)):
                connection.execute(insert(t["credit_holds"]).values(_row(
                    t["credit_holds"], id=row_id, account_id=1, amount=50_000, reason="call", created_at=created,
                    expires_at=created + timedelta(hours=24))))
            for row_id, status, created in ((1, "QUEUED", old), (2, "QUEUED", recent), (3, "DELIVERED", old),
                                            (4, "QUEUED", old), (5, "QUEUED", recent)):
                connection.execute(insert(t["sms_messages"]).values(_row(
                    t["sms_messages"], id=row_id, msgid=f"{row_id:032x}", account_id=1, credential_id=1, mode="live",
                    status=status, product="sms", segments=1, created_at=created, updated_at=created)))
                connection.execute(insert(t["voice_calls"]).values(_row(
                    t["voice_calls"], id=row_id, callid=f"{row_id:032x}", account_id=1, credential_id=1, mode="live",
                    hold_id=row_id if row_id < 3 else None,
                    status="ANSWERED" if status == "DELIVERED" else status, product="voice", created_at=created)))
            for kind, key in (("api_sms", "message_id"), ("api_call", "call_id")):
                for row_id, attempts, failed in ((4, 3, None), (5, 0, None), (1, 12, now)):
                    connection.execute(insert(t["outbox"]).values(_row(  # 1: given up, unredacted; 2: redacted
                        t["outbox"], kind=kind, payload=json.dumps({key: row_id}), attempts=attempts,
                        failed_at=failed)))
        upgrade(url, "0018")
        t = _tables(engine)
        for name in ("sms_messages", "voice_calls"):
            with engine.connect() as connection:
                rows = {row.id: (row.status, row.in_doubt_since) for row in connection.execute(
                    select(t[name].c.id, t[name].c.status, t[name].c.in_doubt_since))}
            assert {key: status for key, (status, _) in rows.items()} == {
                1: "UNKNOWN", 2: "UNKNOWN", 3: "DELIVERED" if name == "sms_messages" else "ANSWERED", 4: "QUEUED",
                5: "QUEUED"}
            assert [_utc(rows[1][1]), _utc(rows[2][1]), rows[3][1], _utc(rows[4][1]), rows[5][1]] == [
                old, recent, None, old, None]
        with engine.connect() as connection:  # the UNKNOWN call's hold is kept from the sweep
            expiry = dict(connection.execute(select(t["credit_holds"].c.id, t["credit_holds"].c.expires_at)).all())
        assert _utc(expiry[1]) >= now + timedelta(days=30) and _utc(expiry[2]) >= now + timedelta(days=30)
        command.downgrade(alembic_config(url), "0017")
        t = _tables(engine)
        with engine.connect() as connection:
            assert connection.execute(select(t["sms_messages"].c.status).order_by(t["sms_messages"].c.id)
                                      ).scalars().all() == ["QUEUED", "QUEUED", "DELIVERED", "QUEUED", "QUEUED"]
            assert connection.execute(select(t["voice_calls"].c.status).order_by(t["voice_calls"].c.id)
                                      ).scalars().all() == ["QUEUED", "QUEUED", "ANSWERED", "QUEUED", "QUEUED"]
        upgrade(url, "head")
        engine.dispose()


def _utc(value: datetime) -> datetime:
    """A timestamp read back raw: SQLite's are naive UTC."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def _tables(engine):
    tables = MetaData()
    tables.reflect(engine)
    return tables.tables


