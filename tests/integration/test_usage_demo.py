"""`portal demo seed EMAIL --usage N`: realistic rows over 13 months that the usage history
reads like any other, the rollup exact, the ledger untouched (its check still passes)."""

from collections import Counter

from sqlalchemy import func, select

from portal.ledger.models import Transaction
from portal.messaging.api_models import Call, Message
from portal.usage import rules, service
from tests.helpers import db_session, make_user
from tests.usage_rows import from_rows, rollup


def test_demo_seed_adds_realistic_rows_over_13_months_and_leaves_the_ledger_alone(app, clock):
    make_user(app, email="demo@example.com")
    with db_session(app) as session:
        journal_before = session.scalar(select(func.count()).select_from(Transaction))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["demo", "seed", "demo@example.com", "--usage", "3000", "--seed", "7"])
    assert result.exit_code == 0, result.output
    assert "added 3,000 demo messages and calls" in result.output
    again = runner.invoke(args=["demo", "seed", "demo@example.com", "--usage", "500"])  # the same credentials again
    assert again.exit_code == 0, again.output
    with db_session(app) as session:
        messages, calls = session.scalars(select(Message)).all(), session.scalars(select(Call)).all()
        assert len(messages) + len(calls) == 3500
        products = Counter(row.product for row in messages + calls)
        assert set(products) == {"sms", "otp", "voice", "otp_call"}
        assert {row.mode for row in messages} == {"live", "test"}
        assert {row.status for row in messages} >= {"DELIVERED", "FAIL"}
        assert any("キャンペーン" in row.tags for row in messages)
        times = [row.created_at for row in messages + calls]
        assert min(times) >= rules.purge_before(clock()) and max(times) <= clock()
        assert (clock() - min(times)).days > 360
        assert rollup(session) == from_rows(session)
        assert session.scalar(select(func.count()).select_from(Transaction)) == journal_before
        account_id = messages[0].account_id
        choices = service.choices(session, account_id=account_id)
        assert len(choices.credentials) == 3 and len(choices.sites) == 2 and "キャンペーン" in choices.tags
    check = runner.invoke(args=["ledger", "check"])
    assert check.exit_code == 0, check.output


def test_demo_seed_is_refused_in_production(app_with):
    from tests.web.test_security import PRODUCTION

    production = app_with(**PRODUCTION)
    result = production.test_cli_runner().invoke(args=["demo", "seed", "x@example.com", "--usage", "1"])
    assert result.exit_code != 0 and "refused in production" in result.output
