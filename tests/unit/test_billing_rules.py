"""The pure billing rules: quotes and tax at the yen of rounding, amounts as typed, refunds
turned into credit, forward-only statuses, registration numbers."""

from datetime import date

import pytest

from portal.billing import rules


@pytest.mark.parametrize("amount, tax", [(1000, 100), (1001, 100), (1009, 100), (1010, 101), (1019, 101),
                                         (9999, 999), (10_000, 1000), (1_000_000, 100_000)])
def test_consumption_tax_is_ten_percent_rounded_down_once(amount, tax):
    quote = rules.quote(amount_yen=amount, residency="JP", minimum=1000)
    assert (quote.tax_rate, quote.tax_yen, quote.total_yen, quote.credit) == (10, tax, amount + tax, amount * 1000)


def test_overseas_customers_pay_no_consumption_tax():
    quote = rules.quote(amount_yen=1234, residency="overseas", minimum=1000)
    assert (quote.tax_rate, quote.tax_yen, quote.total_yen) == (0, 0, 1234)


@pytest.mark.parametrize("amount, reason", [(999, "too_small"), (0, "too_small"), (1_000_001, "too_large")])
def test_amounts_outside_the_range_are_refused(amount, reason):
    with pytest.raises(rules.AmountError) as refused:
        rules.quote(amount_yen=amount, residency="JP", minimum=1000)
    assert refused.value.reason == reason and (refused.value.minimum, refused.value.maximum) == (1000, 1_000_000)


def test_the_minimum_is_configurable():
    assert rules.quote(amount_yen=500, residency="JP", minimum=500).total_yen == 550
    with pytest.raises(rules.AmountError):
        rules.quote(amount_yen=499, residency="JP", minimum=500)


def test_konbini_is_offered_up_to_300000_yen_total():
    assert rules.quote(amount_yen=272_728, residency="JP", minimum=1000).konbini_allowed  # ¥300,000 with tax
    assert not rules.quote(amount_yen=272_729, residency="JP", minimum=1000).konbini_allowed  # ¥300,001
    assert rules.quote(amount_yen=300_000, residency="overseas", minimum=1000).konbini_allowed
    assert not rules.quote(amount_yen=300_001, residency="overseas", minimum=1000).konbini_allowed


@pytest.mark.parametrize("typed, yen", [("1000", 1000), ("1,000", 1000), ("¥1,000", 1000), ("１０００", 1000),
                                        (" 3000 ", 3000), ("10000円", 10000)])
def test_amounts_are_read_as_people_type_them(typed, yen):
    assert rules.parse_amount(typed) == yen


@pytest.mark.parametrize("typed", ["", "10.5", "-1000", "1e3", "abc", "1000000000000"])
def test_anything_but_whole_yen_is_refused(typed):
    with pytest.raises(ValueError):
        rules.parse_amount(typed)


@pytest.mark.parametrize("refunded, credit", [(0, 0), (1, 910), (550, 500_000), (1099, 999_091), (1100, 1_000_000),
                                              (5000, 1_000_000)])
def test_a_refund_stands_for_its_share_of_the_credit_rounded_up(refunded, credit):
    assert rules.credit_to_take_back(refunded_yen=refunded, total_yen=1100, amount_yen=1000) == credit


def test_the_tax_inside_a_refund_is_rounded_down():
    assert rules.tax_within(11_000, 10) == 1000 and rules.tax_within(10_999, 10) == 999 and rules.tax_within(500, 0) == 0


def test_statuses_only_move_forward():
    assert rules.next_status("open", "awaiting") == "awaiting"
    assert rules.next_status("awaiting", "paid") == "paid"
    assert rules.next_status("paid", "failed") == "paid"
    assert rules.next_status("paid", "open") == "paid"
    assert rules.next_status("failed", "open") == "failed"
    assert rules.next_dispute_status(None, "open") == "open"
    assert rules.next_dispute_status("lost", "open") == "lost"
    assert rules.next_dispute_status("open", None) == "open"


@pytest.mark.parametrize("number, valid", [("T7000012050002", True), ("T7123456789012", True), ("T8000012050002", False),
                                           ("7000012050002", False), ("T700001205000", False), ("t7000012050002", False),
                                           ("T70000120500021", False), ("TX000012050002", False)])
def test_registration_numbers_need_t_13_digits_and_the_check_digit(number, valid):
    assert rules.valid_registration_number(number) is valid


@pytest.mark.parametrize("typed, day", [("2000-01-01", date(2000, 1, 1)), (" 2026-11-27 ", date(2026, 11, 27)),
                                        ("2099-12-31", date(2099, 12, 31))])
def test_invoices_are_searched_by_days_from_2000_to_2099(typed, day):
    assert rules.search_day(typed) == day


@pytest.mark.parametrize("typed", ["1999-12-31", "2100-01-01", "0001-01-01", "9999-12-31"])
def test_a_search_day_outside_2000_to_2099_is_out_of_range(typed):
    with pytest.raises(rules.DayOutOfRange):
        rules.search_day(typed)


@pytest.mark.parametrize("typed", ["2026-13-01", "2026-02-30", "yesterday", "27/11/2026", ""])
def test_a_search_day_that_is_no_date_is_refused_as_such(typed):
    with pytest.raises(ValueError) as refused:
        rules.search_day(typed)
    assert not isinstance(refused.value, rules.DayOutOfRange)


def test_a_repeated_confirmation_continues_a_recent_open_purchase_of_the_same_terms_only():
    from datetime import datetime, timedelta, timezone

    from portal.billing.rules import resumable

    start = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
    assert resumable(created_at=start, has_checkout=True, same_terms=True, now=start + timedelta(minutes=59))
    assert not resumable(created_at=start, has_checkout=True, same_terms=True, now=start + timedelta(hours=1))
    assert not resumable(created_at=start, has_checkout=True, same_terms=False, now=start)
    assert resumable(created_at=start, has_checkout=False, same_terms=True, now=start + timedelta(seconds=119))
    assert not resumable(created_at=start, has_checkout=False, same_terms=True, now=start + timedelta(minutes=2))
