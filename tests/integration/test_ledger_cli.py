from sqlalchemy import select, text

from portal.ledger.models import CreditState, Lot, Transaction
from tests.helpers import db_session, make_user


def run(app, *args, input=None):
    return app.test_cli_runner().invoke(args=list(args), input=input)


def test_credits_grant_books_a_lot_with_the_reason(app, clock):
    make_user(app, "ops@example.com")
    result = run(app, "credits", "grant", "ops@example.com", "500", "--reason", "apology for the outage")
    assert result.exit_code == 0, result.output
    assert "granted ¥500" in result.output
    with db_session(app) as session:
        lot = session.scalars(select(Lot)).one()
        line = session.scalars(select(Transaction)).one()
    assert (lot.kind, lot.amount, lot.expires_at - lot.issued_at) == ("grant", 500_000, __import__("datetime").timedelta(days=90))
    assert line.reason == "operator grant: apology for the outage"


def test_credits_grant_refuses_unknown_addresses_and_empty_reasons(app):
    assert run(app, "credits", "grant", "nobody@example.com", "5", "--reason", "x").exit_code == 1
    make_user(app, "ops@example.com")
    assert "must say why" in run(app, "credits", "grant", "ops@example.com", "5", "--reason", " ").output
    assert run(app, "credits", "grant", "ops@example.com", "0", "--reason", "x").exit_code == 2


def test_credits_grant_refuses_a_reason_too_long_for_the_statement_and_grants_nothing(app):
    make_user(app, "ops@example.com")
    result = run(app, "credits", "grant", "ops@example.com", "5", "--reason", "x" * 300)
    assert result.exit_code == 1 and "a reason has at most 300 characters" in result.output
    with db_session(app) as session:
        assert session.scalars(select(Lot)).all() == []


def test_expire_writes_off_due_lots_once(app, clock):
    make_user(app, "ops@example.com")
    run(app, "credits", "grant", "ops@example.com", "5", "--reason", "test")
    clock.advance(days=90)
    assert "1 journal lines in 1 accounts" in run(app, "expire").output
    assert "0 journal lines in 0 accounts" in run(app, "expire").output


def test_ledger_check_passes_then_fails_precisely_on_a_mismatch(app, clock):
    make_user(app, "ops@example.com")
    run(app, "credits", "grant", "ops@example.com", "5", "--reason", "test")
    ok = run(app, "ledger", "check")
    assert ok.exit_code == 0 and "ledger check passed" in ok.output
    clock.advance(days=91)
    assert "not yet written off" in run(app, "ledger", "check").output
    with db_session(app) as session:
        session.execute(text("UPDATE credit_states SET balance = 4000"))
        session.commit()
        account_id = session.scalars(select(CreditState.account_id)).one()
    bad = run(app, "ledger", "check")
    assert bad.exit_code == 1
    assert f"MISMATCH account {account_id}: cached balance 4000; sum of lots' remaining 5000; sum of journal 5000" in bad.output
