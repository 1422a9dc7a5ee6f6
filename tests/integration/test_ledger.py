from datetime import timedelta

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from portal import db
from portal.ledger import service
from portal.ledger.check import check
from portal.ledger.models import CreditState, Lot, Transaction
from portal.ledger.rules import InsufficientCredit, LotTooLong, ReasonTooLong
from portal.ledger.steps import HOLD_REASON_LENGTH, REASON_LENGTH
from tests.helpers import new_account

YEN = 1000
DAY = timedelta(days=1)


@pytest.fixture
def account(session, clock):
    return new_account(session, clock())


def buy(session, account, clock, yen, ref, paid_at=None):
    return service.grant_purchase(session=session, account_id=account, amount=yen * YEN,
                                  paid_at=paid_at or clock(), payment_ref=ref, now=clock())


def spend(session, account, clock, yen, key):
    return service.debit(session=session, account_id=account, amount=yen * YEN, idempotency_key=key, reason="sms", now=clock())


def balance(session, account):
    session.expire_all()
    state = session.get(CreditState, account)
    session.commit()
    return state.balance


def assert_consistent(session, clock):
    problems, _ = check(session, now=clock())
    assert problems == []


def test_a_lot_bought_at_t_is_spendable_at_90_days_less_a_second_and_not_at_90_days(session, account, clock):
    bought_at = clock()
    buy(session, account, clock, 10, "pi_1")
    clock.advance(days=90, seconds=-1)
    spend(session, account, clock, 1, "k1")
    clock.advance(seconds=1)
    with pytest.raises(InsufficientCredit):
        spend(session, account, clock, 1, "k2")
    assert balance(session, account) == 0
    lot = session.scalars(select(Lot)).one()
    assert lot.expires_at == bought_at + 90 * DAY and lot.remaining == 0 and lot.expired_at == lot.expires_at
    assert_consistent(session, clock)


def test_debits_burn_lots_by_expiry_across_three_lots(session, account, clock):
    buy(session, account, clock, 5, "late", paid_at=clock() - 10 * DAY)
    buy(session, account, clock, 5, "early", paid_at=clock() - 50 * DAY)
    buy(session, account, clock, 5, "middle", paid_at=clock() - 30 * DAY)
    spend(session, account, clock, 7, "k")
    left = {lot.source_ref: lot.remaining for lot in session.scalars(select(Lot))}
    assert left == {"payment:early": 0, "payment:middle": 3 * YEN, "payment:late": 5 * YEN}
    assert_consistent(session, clock)


def test_trial_burns_before_paid_when_expiries_tie(session, account, clock):
    service.grant_trial_in(session, account_id=account, phone_e164="+819012345678", amount=50 * YEN, now=clock())
    session.commit()
    buy(session, account, clock, 1000, "pi_tie")
    spend(session, account, clock, 60, "k")
    left = {lot.kind: lot.remaining for lot in session.scalars(select(Lot))}
    assert left == {"trial": 0, "purchase": 990 * YEN}


def test_a_short_balance_refuses_the_debit_and_changes_nothing(session, account, clock):
    buy(session, account, clock, 10, "pi")
    with pytest.raises(InsufficientCredit):
        spend(session, account, clock, 11, "k")
    assert balance(session, account) == 10 * YEN
    assert session.scalars(select(Transaction).where(Transaction.kind == "debit")).first() is None
    spend(session, account, clock, 10, "k")  # the same key works once credit suffices
    assert balance(session, account) == 0


def test_a_retried_key_returns_the_first_result_and_charges_once(session, account, clock):
    buy(session, account, clock, 10, "pi")
    first = spend(session, account, clock, 3, "same")
    again = spend(session, account, clock, 3, "same")
    assert again.replayed and again.transaction_id == first.transaction_id
    assert balance(session, account) == 7 * YEN
    with pytest.raises(service.IdempotencyConflict):
        spend(session, account, clock, 4, "same")
    assert buy(session, account, clock, 10, "pi").replayed
    assert balance(session, account) == 7 * YEN


def test_an_expired_lot_is_written_off_once_by_sweep_and_debit(session, account, clock):
    buy(session, account, clock, 10, "pi")
    clock.advance(days=90)
    assert service.expire(session=session, account_id=account, now=clock()) == 1
    assert service.expire(session=session, account_id=account, now=clock()) == 0
    with pytest.raises(InsufficientCredit):
        spend(session, account, clock, 1, "k")
    expiries = session.scalars(select(Transaction).where(Transaction.kind == "expire")).all()
    assert [e.amount for e in expiries] == [-10 * YEN]
    assert_consistent(session, clock)


def test_a_hold_reduces_the_available_balance_and_settling_frees_the_rest(session, account, clock):
    buy(session, account, clock, 100, "pi")
    held = service.hold(session=session, account_id=account, amount=50 * YEN, idempotency_key="call-1", reason="call", now=clock())
    assert balance(session, account) == 50 * YEN
    with pytest.raises(InsufficientCredit):
        spend(session, account, clock, 51, "k")
    service.settle(session=session, hold_id=held.id, charged=20 * YEN, now=clock())
    assert balance(session, account) == 80 * YEN
    assert session.get(CreditState, account).held == 0
    assert service.settle(session=session, hold_id=held.id, charged=20 * YEN, now=clock()).charged == 20 * YEN
    with pytest.raises(service.HoldClosed):
        service.settle(session=session, hold_id=held.id, charged=10 * YEN, now=clock())
    assert_consistent(session, clock)


def test_a_charge_above_the_hold_is_refused(session, account, clock):
    buy(session, account, clock, 100, "pi")
    held = service.hold(session=session, account_id=account, amount=50 * YEN, idempotency_key="c", reason="call", now=clock())
    with pytest.raises(service.ChargeExceedsHold):
        service.settle(session=session, hold_id=held.id, charged=50 * YEN + 1, now=clock())


def test_credit_returned_from_a_hold_to_an_expired_lot_is_written_off(session, account, clock):
    buy(session, account, clock, 60, "old", paid_at=clock() - 90 * DAY + timedelta(minutes=30))
    buy(session, account, clock, 100, "new")
    held = service.hold(session=session, account_id=account, amount=80 * YEN, idempotency_key="c", reason="call", now=clock())
    clock.advance(hours=1)  # "old" expires during the call
    service.settle(session=session, hold_id=held.id, charged=10 * YEN, now=clock())
    lots = {lot.source_ref: lot.remaining for lot in session.scalars(select(Lot))}
    assert lots == {"payment:old": 0, "payment:new": 100 * YEN}
    assert balance(session, account) == 100 * YEN
    assert_consistent(session, clock)


def test_stale_holds_are_released_by_the_sweep(session, account, clock):
    buy(session, account, clock, 100, "pi")
    service.hold(session=session, account_id=account, amount=50 * YEN, idempotency_key="c", reason="call", now=clock())
    clock.advance(hours=2)
    assert service.accounts_with_due_work(session=session, now=clock()) == [account]
    service.expire(session=session, account_id=account, now=clock())
    assert balance(session, account) == 100 * YEN
    assert_consistent(session, clock)


def test_refunding_a_lot_takes_back_only_its_unused_remainder_once(session, account, clock):
    buy(session, account, clock, 100, "pi_a", paid_at=clock() - timedelta(seconds=1))
    buy(session, account, clock, 100, "pi_b")
    spend(session, account, clock, 60, "use")
    lot = session.scalars(select(Lot).where(Lot.source_ref == "payment:pi_a")).one()
    service.refund_lot(session=session, lot_id=lot.id, idempotency_key="refund:pi_a", reason="refund", now=clock())
    service.refund_lot(session=session, lot_id=lot.id, idempotency_key="refund:pi_a", reason="refund", now=clock())
    assert balance(session, account) == 100 * YEN
    assert_consistent(session, clock)


def test_a_lot_cannot_live_longer_than_six_months(session, account, clock):
    with pytest.raises(LotTooLong):
        service.grant(session=session, account_id=account, kind="grant", amount=YEN, expires_at=clock() + 200 * DAY,
                      source_ref="x", idempotency_key="x", reason="x", now=clock())
    session.rollback()


def test_the_database_refuses_what_the_rules_refuse(session, account, clock):
    buy(session, account, clock, 10, "pi")
    for statement in (
        "UPDATE credit_lots SET remaining = amount + 1",
        "UPDATE credit_lots SET remaining = -1",
        "UPDATE credit_states SET balance = -1",
        "UPDATE credit_lots SET expires_at = issued_at",
    ):
        with pytest.raises(IntegrityError):
            session.execute(text(statement))
        session.rollback()


def test_the_database_refuses_a_lot_of_more_than_six_months(session, account, clock):
    buy(session, account, clock, 10, "pi")
    interval = "datetime(issued_at, '+7 months')" if session.get_bind().dialect.name == "sqlite" else "issued_at + interval '7 months'"
    with pytest.raises(IntegrityError):
        session.execute(text(f"UPDATE credit_lots SET expires_at = {interval}"))
    session.rollback()


@pytest.mark.parametrize("statement", ["UPDATE credit_transactions SET amount = 0", "DELETE FROM credit_entries"])
def test_the_journal_is_append_only(session, account, clock, statement):
    buy(session, account, clock, 10, "pi")
    with pytest.raises(DBAPIError, match="append-only"):
        session.execute(text(statement))
    session.rollback()


def test_a_failed_service_leaves_nothing_half_written(session, account, clock, monkeypatch):
    buy(session, account, clock, 10, "pi")

    def crash(*args, **kwargs):
        raise RuntimeError("crash after the lots were touched")

    monkeypatch.setattr(session, "commit", crash)
    with pytest.raises(RuntimeError):
        spend(session, account, clock, 3, "k")
    session.rollback()
    monkeypatch.undo()
    assert balance(session, account) == 10 * YEN
    assert session.scalars(select(Lot)).one().remaining == 10 * YEN
    assert_consistent(session, clock)


def test_the_trial_is_given_once_per_account_and_once_per_number(session, clock):
    first, second = new_account(session, clock(), "A"), new_account(session, clock(), "B")
    grant = lambda acct, phone: service.grant_trial_in(  # noqa: E731
        session, account_id=acct, phone_e164=phone, amount=50 * YEN, now=clock()
    )
    assert grant(first, "+819011111111") is not None
    assert grant(first, "+819022222222") is None
    assert grant(second, "+819011111111") is None
    session.commit()
    assert balance(session, first) == 50 * YEN and balance(session, second) == 0


def test_the_check_reports_a_tampered_balance(session, account, clock):
    buy(session, account, clock, 10, "pi")
    session.execute(text("UPDATE credit_states SET balance = balance + 1"))
    session.commit()
    problems, _ = check(session, now=clock())
    assert len(problems) == 1 and "cached balance 10001" in str(problems[0])


def test_credit_a_hold_returns_to_a_refunded_lot_is_taken_back_too(session, account, clock):
    buy(session, account, clock, 100, "pi_a")
    held = service.hold(session=session, account_id=account, amount=80 * YEN, idempotency_key="c", reason="call", now=clock())
    lot = session.scalars(select(Lot)).one()
    service.refund_lot(session=session, lot_id=lot.id, idempotency_key="r", reason="refund", now=clock())
    service.settle(session=session, hold_id=held.id, charged=10 * YEN, now=clock())
    assert balance(session, account) == 0
    with pytest.raises(InsufficientCredit):
        spend(session, account, clock, 1, "after")
    assert_consistent(session, clock)


def test_the_ledgers_own_keys_cannot_be_used_by_callers(session, account, clock):
    buy(session, account, clock, 10, "pi")
    with pytest.raises(service.ReservedKey):
        spend(session, account, clock, 1, "~trial")


def test_the_same_key_for_a_different_purpose_is_a_conflict(session, account, clock):
    buy(session, account, clock, 10, "pi")
    service.debit(session=session, account_id=account, amount=YEN, idempotency_key="k", reason="sms to +8190…1", now=clock())
    with pytest.raises(service.IdempotencyConflict):
        service.debit(session=session, account_id=account, amount=YEN, idempotency_key="k", reason="sms to +8190…2", now=clock())


def test_a_lot_cannot_be_issued_in_the_future(session, account, clock):
    with pytest.raises(ValueError):
        service.grant_purchase(session=session, account_id=account, amount=YEN, paid_at=clock() + timedelta(days=1),
                               payment_ref="future", now=clock())
    session.rollback()


def test_the_sweep_takes_back_credit_a_stale_hold_returns_to_a_refunded_lot(session, account, clock):
    """Found by the model test: hold ¥1, refund the lot, let the hold go stale, sweep."""
    buy(session, account, clock, 1, "pi")
    service.hold(session=session, account_id=account, amount=YEN, idempotency_key="c", reason="call", now=clock())
    lot = session.scalars(select(Lot)).one()
    service.refund_lot(session=session, lot_id=lot.id, idempotency_key="r", reason="refund", now=clock())
    clock.advance(hours=2)
    service.expire(session=session, account_id=account, now=clock())
    assert balance(session, account) == 0
    assert_consistent(session, clock)


def test_the_sweep_stops_at_a_database_failure_instead_of_waiting_on_it_for_every_account(app, session, clock,
                                                                                         monkeypatch):
    from sqlalchemy.exc import OperationalError

    from portal.ledger import operator

    for name in ("A", "B", "C"):
        buy(session, new_account(session, clock(), name=name), clock, 10, f"pi-{name}")
    clock.advance(days=90)
    tried = []

    def failing(*, session, account_id, now):
        tried.append(account_id)
        raise OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly"))

    monkeypatch.setattr(operator.service, "expire", failing)
    with pytest.raises(OperationalError):
        operator.sweep(engine=app.extensions["portal.engine"], now=clock())
    assert len(tried) == 1


def test_a_reason_longer_than_the_journal_holds_is_refused_not_cut_short(session, account, clock):
    buy(session, account, clock, 10, "pi")
    with pytest.raises(ReasonTooLong):
        service.debit(session=session, account_id=account, amount=YEN, idempotency_key="long", reason="x" * (REASON_LENGTH + 1),
                      now=clock())
    assert balance(session, account) == 10 * YEN
    service.debit(session=session, account_id=account, amount=YEN, idempotency_key="fits", reason="x" * REASON_LENGTH,
                  now=clock())
    assert session.scalars(select(Transaction.reason).where(Transaction.kind == "debit")).one() == "x" * REASON_LENGTH


def test_a_hold_reason_leaves_room_for_the_line_that_closes_the_hold(session, account, clock):
    buy(session, account, clock, 100, "pi")
    with pytest.raises(ReasonTooLong):
        service.hold(session=session, account_id=account, amount=YEN, idempotency_key="long",
                     reason="x" * (HOLD_REASON_LENGTH + 1), now=clock())
    held = service.hold(session=session, account_id=account, amount=50 * YEN, idempotency_key="fits",
                        reason="x" * HOLD_REASON_LENGTH, now=clock())
    service.settle(session=session, hold_id=held.id, charged=20 * YEN, now=clock())
    closing = session.scalars(select(Transaction.reason).where(Transaction.kind == "release")).one()
    assert closing == "x" * HOLD_REASON_LENGTH + ": charged 20000, released 30000"
    assert_consistent(session, clock)


def test_a_service_inside_a_callers_unit_joins_it_and_rolls_back_with_it(session, account, clock):
    buy(session, account, clock, 10, "pi")
    with pytest.raises(LookupError):
        with db.write(session):
            spend(session, account, clock, 3, "inner")
            raise LookupError
    assert balance(session, account) == 10 * YEN
    assert_consistent(session, clock)
