"""Migration 0013 tells the existing OTP codes' messages and calls apart from plain ones and
rolls up every existing row, so the usage history starts exact."""

from datetime import date

import pytest
from sqlalchemy import MetaData, create_engine, insert, select

from portal.migrate import upgrade
from tests.conftest import ENGINES
from tests.integration.test_callback_secret_migration import _row, empty_database


@pytest.mark.parametrize("engine_name", ENGINES)
def test_existing_rows_get_their_product_site_and_rollup(engine_name, tmp_path):
    with empty_database(engine_name, tmp_path) as url:
        upgrade(url, "0012")
        engine = create_engine(url)
        tables = MetaData()
        tables.reflect(engine)
        t = tables.tables
        with engine.begin() as connection:
            connection.execute(insert(t["accounts"]).values(_row(t["accounts"], id=1, name="Old KK", kind="company",
                                                                 language="ja", tax_residency="JP")))
            connection.execute(insert(t["users"]).values(_row(t["users"], id=1, email="old@example.com",
                                                              language="ja")))
            connection.execute(insert(t["api_credentials"]).values(_row(
                t["api_credentials"], id=1, sid="1" * 32, account_id=1, name="key", mode="live", scopes="sms",
                allowed_networks="", created_by=1)))
            connection.execute(insert(t["otp_sites"]).values(_row(
                t["otp_sites"], id=5, account_id=1, domain="example.jp", template_language="ja", code_length=6,
                lifetime_minutes=5, max_attempts=5, resend_cooldown_seconds=30, fallback="off", fallback_seconds=60,
                fallback_language="ja", per_number_limit=5, per_ip_limit=10, allowed_countries="JP")))
            for msgid, cost in (("a" * 32, 8000), ("b" * 32, 3000)):
                connection.execute(insert(t["sms_messages"]).values(_row(
                    t["sms_messages"], msgid=msgid, account_id=1, credential_id=1, mode="live", recipient="+8190",
                    country="JP", encoding="GSM-7", segments=1, cost=cost, status="DELIVERED", tags="")))
            connection.execute(insert(t["voice_calls"]).values(_row(
                t["voice_calls"], callid="c" * 32, account_id=1, credential_id=1, mode="live", country="JP",
                status="ANSWERED", duration=61, cost=40_000, unit_price=20_000, tags="")))
            connection.execute(insert(t["otp_codes"]).values(_row(
                t["otp_codes"], msgid="b" * 32, site_id=5, account_id=1, credential_id=1, mode="live",
                channel="sms", status="verified", failures=0, max_attempts=5, fallback_callid="c" * 32)))
        upgrade(url, "0013")
        tables = MetaData()
        tables.reflect(engine)
        t = tables.tables
        with engine.connect() as connection:
            messages = connection.execute(select(t["sms_messages"].c.msgid, t["sms_messages"].c.product,
                                                 t["sms_messages"].c.otp_site_id)
                                          .order_by(t["sms_messages"].c.msgid)).all()
            calls = connection.execute(select(t["voice_calls"].c.product, t["voice_calls"].c.otp_site_id)).all()
            daily = t["usage_daily"]
            rolled = connection.execute(select(daily.c.product, daily.c.day, daily.c.site_id, daily.c.events,
                                               daily.c.minutes, daily.c.cost).order_by(daily.c.product)).all()
        engine.dispose()
    assert [tuple(row) for row in messages] == [("a" * 32, "sms", None), ("b" * 32, "otp", 5)]
    assert [tuple(row) for row in calls] == [("otp_call", 5)]
    day = date(2026, 11, 30)  # NOW is midnight UTC: 09:00 in Japan
    assert [tuple(row) for row in rolled] == [("otp", day, 5, 1, 0, 3000), ("otp_call", day, 5, 1, 2, 40_000),
                                              ("sms", day, 0, 1, 0, 8000)]
