from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest

from portal.ledger import rules

T = datetime(2026, 11, 27, 3, 0, 0, tzinfo=timezone.utc)
DAY = timedelta(days=1)


@dataclass
class FakeLot:
    id: int
    kind: str
    remaining: int
    issued_at: datetime
    expires_at: datetime
    refunded_at: datetime | None = None


def lot(id, remaining, *, expires, kind="purchase", issued=T):
    return FakeLot(id, kind, remaining, issued, expires)


def test_a_purchased_lot_expires_exactly_90_days_after_payment():
    assert rules.purchase_expiry(T) == T + timedelta(days=90)


def test_a_lot_is_spendable_the_second_before_expiry_and_not_at_it():
    bought = lot(1, 1000, expires=rules.purchase_expiry(T))
    assert rules.is_live(bought, T + timedelta(days=90) - timedelta(seconds=1))
    assert not rules.is_live(bought, T + timedelta(days=90))
    assert rules.is_due(bought, T + timedelta(days=90))


def test_spends_the_soonest_expiring_lot_first_across_three_lots():
    lots = [lot(1, 500, expires=T + 30 * DAY), lot(2, 500, expires=T + 10 * DAY), lot(3, 500, expires=T + 20 * DAY)]
    takes = rules.split(lots, 1200, T)
    assert [(t.lot.id, t.amount) for t in takes] == [(2, 500), (3, 500), (1, 200)]


def test_trial_burns_before_paid_when_expiries_tie():
    lots = [lot(1, 500, expires=T + 90 * DAY), lot(2, 500, expires=T + 90 * DAY, kind="trial")]
    assert [t.lot.id for t in rules.split(lots, 600, T)] == [2, 1]


def test_then_the_oldest_then_the_lowest_id():
    lots = [
        lot(3, 100, expires=T + DAY, issued=T - DAY),
        lot(2, 100, expires=T + DAY, issued=T - 2 * DAY),
        lot(1, 100, expires=T + DAY, issued=T - DAY),
    ]
    assert [t.lot.id for t in rules.split(lots, 300, T)] == [2, 1, 3]


def test_expired_lots_are_skipped_and_shortfall_refused():
    lots = [lot(1, 500, expires=T), lot(2, 300, expires=T + DAY)]
    with pytest.raises(rules.InsufficientCredit) as refused:
        rules.split(lots, 400, T)
    assert (refused.value.needed, refused.value.available) == (400, 300)
    assert rules.available(lots, T) == 300
    assert rules.available(lots, T - timedelta(seconds=1)) == 800


def test_the_exact_balance_can_be_spent():
    assert sum(t.amount for t in rules.split([lot(1, 999, expires=T + DAY)], 999, T)) == 999


@pytest.mark.parametrize("amount", [0, -1])
def test_a_split_needs_a_positive_amount(amount):
    with pytest.raises(ValueError):
        rules.split([lot(1, 10, expires=T + DAY)], amount, T)


def test_a_lot_may_live_six_months_and_not_a_second_more():
    rules.check_lifetime(T, rules.add_months(T, 6))
    with pytest.raises(rules.LotTooLong):
        rules.check_lifetime(T, rules.add_months(T, 6) + timedelta(seconds=1))
    with pytest.raises(rules.LotTooLong):
        rules.check_lifetime(T, T)


def test_add_months_clamps_to_the_end_of_the_month():
    assert rules.add_months(datetime(2026, 8, 31, tzinfo=timezone.utc), 6) == datetime(2027, 2, 28, tzinfo=timezone.utc)


def test_a_charge_is_kept_from_the_first_burning_lots_and_the_rest_returned():
    a, b = lot(1, 0, expires=T + DAY), lot(2, 0, expires=T + 2 * DAY)
    assert rules.assign_charge([(a, 30), (b, 20)], 10) == [(a, 20), (b, 20)]
    assert rules.assign_charge([(a, 30), (b, 20)], 40) == [(b, 10)]
    assert rules.assign_charge([(a, 30), (b, 20)], 50) == []
