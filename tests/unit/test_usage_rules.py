"""The usage history's pure rules: ranges and filters read from a query string, Japan-time day
boundaries (no daylight saving time), the 13-month retention, the cursor and masking."""

from datetime import date, datetime, timedelta, timezone

import pytest

from portal.formats import masked_phone
from portal.usage import rules
from portal.usage.rules import Filters, InvalidFilter, filters_from

TODAY = date(2026, 11, 27)


@pytest.mark.parametrize("name, start, end", [
    ("today", date(2026, 11, 27), date(2026, 11, 27)),
    ("7d", date(2026, 11, 21), date(2026, 11, 27)),
    ("this-month", date(2026, 11, 1), date(2026, 11, 27)),
    ("last-month", date(2026, 10, 1), date(2026, 10, 31)),
])
def test_each_preset_names_its_days(name, start, end):
    filters = filters_from({"range": name}, today=TODAY)
    assert (filters.start, filters.end, filters.range) == (start, end, name)


def test_last_month_in_january_is_december_and_in_march_is_february():
    assert rules.preset("last-month", date(2027, 1, 10)) == (date(2026, 12, 1), date(2026, 12, 31))
    assert rules.preset("last-month", date(2028, 3, 1)) == (date(2028, 2, 1), date(2028, 2, 29))


def test_without_a_range_the_page_shows_this_month():
    assert filters_from({}, today=TODAY).range == "this-month"


def test_a_custom_range_reads_every_filter_and_goes_back_to_the_same_parameters():
    params = {"range": "custom", "from": "2026-10-03", "to": "2026-11-02", "product": "otp", "credential_id": "7",
              "site_id": "3", "status": "DELIVERED", "country": "jp", "tag": "キャンペーン", "mode": "live"}
    filters = filters_from(params, today=TODAY)
    assert filters == Filters(start=date(2026, 10, 3), end=date(2026, 11, 2), product="otp", credential_id=7,
                              site_id=3, status="DELIVERED", country="JP", tag="キャンペーン", mode="live")
    assert filters_from(filters.to_params(), today=TODAY) == filters
    assert filters.to_params()["country"] == "JP"


def test_a_preset_goes_back_as_the_preset():
    assert filters_from({"range": "7d", "mode": "test"}, today=TODAY).to_params() == {"range": "7d", "mode": "test"}


def test_empty_values_are_no_filter():
    filters = filters_from({"range": "today", "product": "", "tag": "  ", "credential_id": ""}, today=TODAY)
    assert (filters.product, filters.tag, filters.credential_id) == (None, None, None)


@pytest.mark.parametrize("params, field", [
    ({"range": "yesterday"}, "range"),
    ({"range": "custom"}, "from"),
    ({"range": "custom", "from": "2026-13-01"}, "from"),
    ({"range": "custom", "from": "2026-11-02", "to": "2026-11-01"}, "to"),
    ({"range": "custom", "from": "2026-11-01", "to": "2026-11-28"}, "to"),
    ({"range": "custom", "from": "2025-10-26", "to": "2025-11-01"}, "from"),
    ({"range": "today", "product": "fax"}, "product"),
    ({"range": "today", "credential_id": "x1"}, "credential_id"),
    ({"range": "today", "credential_id": "-1"}, "credential_id"),
    ({"range": "today", "site_id": "٣"}, "site_id"),
    ({"range": "today", "status": "delivered"}, "status"),
    ({"range": "today", "country": "JPN"}, "country"),
    ({"range": "today", "tag": "a,b"}, "tag"),
    ({"range": "today", "tag": "x" * 51}, "tag"),
    ({"range": "today", "mode": "sandbox"}, "mode"),
])
def test_bad_values_are_refused_naming_the_field(params, field):
    with pytest.raises(InvalidFilter) as refused:
        filters_from(params, today=TODAY)
    assert refused.value.field == field


def test_a_japan_day_starts_at_15_00_utc_the_day_before_and_ends_a_millisecond_later_than_23_59_59_999():
    assert rules.day_start(date(2026, 11, 1)) == datetime(2026, 10, 31, 15, tzinfo=timezone.utc)
    last = datetime(2026, 11, 1, 14, 59, 59, 999000, tzinfo=timezone.utc)  # 23:59:59.999 on 1 November in Japan
    assert rules.jst_day(last) == date(2026, 11, 1)
    assert rules.jst_day(last + timedelta(milliseconds=1)) == date(2026, 11, 2)
    filters = Filters(start=date(2026, 11, 1), end=date(2026, 11, 1))
    assert filters.since() <= last < filters.until() == last + timedelta(milliseconds=1)


def test_month_boundaries_are_the_same_nine_hours_all_year():
    """Japan keeps no daylight saving time: every month starts at 15:00 UTC the day before."""
    for month in range(1, 13):
        start = rules.day_start(date(2026, month, 1))
        assert (start.hour, start.minute) == (15, 0)


def test_retention_is_13_calendar_months_to_the_second():
    now = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)
    assert rules.purge_before(now) == datetime(2025, 10, 27, 3, 0, tzinfo=timezone.utc)
    end_of_march = datetime(2027, 3, 31, 3, 0, tzinfo=timezone.utc)  # the 31st has no 31 February before it
    assert rules.purge_before(end_of_march) == datetime(2026, 2, 28, 3, 0, tzinfo=timezone.utc)
    assert rules.earliest_day(TODAY) == date(2025, 10, 27)


def test_a_cursor_round_trips_and_anything_else_is_refused():
    position = rules.Position(datetime(2026, 11, 2, 1, 2, 3, 456000, tzinfo=timezone.utc), "c", 42)
    assert rules.position_of(rules.cursor_of(position)) == position
    for bad in ("", "x", "W10", "WyIyMDI2LTExLTAyIiwgIm0iLCAxXQ", rules.cursor_of(position) + "A"):
        with pytest.raises(InvalidFilter):
            rules.position_of(bad)


def test_numbers_are_masked_to_their_last_four_digits():
    assert masked_phone("+819012345678") == "•••••••••5678"  # the lists' mask, shared with the OTP pages
    assert rules.sees_full_numbers("owner") and rules.sees_full_numbers("developer")
    assert not rules.sees_full_numbers("billing")


def test_the_tables_a_filter_can_match():
    november = dict(start=date(2026, 11, 1), end=date(2026, 11, 30))
    assert rules.tables_for(Filters(**november)) == ("m", "c")
    assert rules.tables_for(Filters(**november, product="otp_call")) == ("c",)
    assert rules.tables_for(Filters(**november, status="DELIVERED")) == ("m",)
    assert rules.tables_for(Filters(**november, product="sms", status="ANSWERED")) == ()


def test_billing_members_see_only_the_scheme_and_host_of_a_callback_address():
    url = "https://user:pw@hooks.example.com/chotto?token=s3cret"
    assert rules.shown_callback_url(url, "owner") == url and rules.shown_callback_url(url, "developer") == url
    assert rules.shown_callback_url(url, "billing") == "https://hooks.example.com/…"
