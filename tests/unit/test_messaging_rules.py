"""Pure rules of the API: segments, phone numbers, sender ids, the sent_date filter."""

from datetime import date, datetime

import pytest

from portal.clock import JST
from portal.messaging import rules, segments
from portal.messaging.errors import InvalidField


@pytest.mark.parametrize("text, encoding, parts", [
    ("", "GSM-7", 1), ("a" * 160, "GSM-7", 1), ("a" * 161, "GSM-7", 2), ("a" * 153 * 2, "GSM-7", 2),
    ("a" * (153 * 2 + 1), "GSM-7", 3), ("{" * 80, "GSM-7", 1), ("{" * 81, "GSM-7", 2), ("€" + "a" * 158, "GSM-7", 1),
    ("€" + "a" * 159, "GSM-7", 2), ("あ" * 70, "UCS-2", 1), ("あ" * 71, "UCS-2", 2), ("あ" * 134, "UCS-2", 2),
    ("あ" * 135, "UCS-2", 3), ("😀" * 35, "UCS-2", 1), ("😀" * 36, "UCS-2", 2), ("a" * 159 + "あ", "UCS-2", 3),
    ("a" * 153 * 10, "GSM-7", 10), ("あ" * 67 * 10, "UCS-2", 10),
    ("a" * 152 + "€" + "a" * 152, "GSM-7", 3),  # € takes two septets and cannot straddle two parts
    ("a" * 66 + "😀" + "a" * 66, "UCS-2", 3),  # nor can a surrogate pair
    ("a" * 151 + "€" + "a" * 153, "GSM-7", 2),
])
def test_segments(text, encoding, parts):
    split = segments.split(text)
    assert (split.encoding, split.parts) == (encoding, parts)


@pytest.mark.parametrize("text", ["a" * (153 * 10 + 1), "あ" * (67 * 10 + 1)])
def test_more_than_ten_parts_is_refused(text):
    with pytest.raises(segments.TooLong):
        segments.split(text)


@pytest.mark.parametrize("raw, e164, country", [("+819012345678", "+819012345678", "JP"),
                                                ("090-1234-5678", "+819012345678", "JP"),
                                                ("+81 90 1234 5678", "+819012345678", "JP"),
                                                ("+14155552671", "+14155552671", "US")])
def test_numbers_normalise_to_e164(raw, e164, country):
    assert rules.phone_number("recipient", raw) == rules.Number(e164, country)


@pytest.mark.parametrize("raw", ["+8108012345678", "+81901234567", "12345", "+", "abc", "", "+819012345678901"])
def test_invalid_numbers_name_the_field(raw):
    with pytest.raises(InvalidField) as refused:
        rules.phone_number("recipient", raw)
    assert refused.value.field == "recipient"


@pytest.mark.parametrize("raw, ok", [("Chotto", True), ("ABCDEFGHIJ", True), ("ABCDEFGHIJK", False),
                                     ("123456789012345", True), ("1234567890123456", False), ("+8190", True),
                                     ("Cho tto", False), ("チョット", False), ("", False)])
def test_sender_ids(raw, ok):
    if ok:
        assert rules.sender_id(raw) == raw.removeprefix("+")
    else:
        with pytest.raises(InvalidField):
            rules.sender_id(raw)


TODAY = date(2026, 11, 27)


@pytest.mark.parametrize("args, operator, day", [
    ({"sent_date": "2026-11-01"}, "==", date(2026, 11, 1)), ({"sent_date": ">=2026-11-01"}, ">=", date(2026, 11, 1)),
    ({"sent_date": "<2026-11-01"}, "<", date(2026, 11, 1)), ({"sent_date>": "2026-11-01"}, ">=", date(2026, 11, 1)),
    ({"sent_date<": "2026-11-01"}, "<=", date(2026, 11, 1)), ({"sent_date>2026-11-01": ""}, ">", date(2026, 11, 1)),
    ({"sent_date<2026-11-01": ""}, "<", date(2026, 11, 1)), ({"sent_date": "2026-08-29"}, "==", date(2026, 8, 29)),
])
def test_sent_date_in_every_spelling(args, operator, day):
    assert rules.sent_dates(args.items(), TODAY) == [rules.DateFilter(operator, day)]


@pytest.mark.parametrize("operator, day", [(">", date.max), ("<", date.min)])
def test_a_filter_beyond_either_end_of_the_calendar_matches_nothing(operator, day):
    assert rules.DateFilter(operator, day).bounds() is None


@pytest.mark.parametrize("operator, day, bounds", [
    ("<=", date.max, (None, None)), (">=", date.max, (datetime(9999, 12, 31, tzinfo=JST), None)),
    ("==", date.max, (datetime(9999, 12, 31, tzinfo=JST), None)), (">=", date.min, (None, None)),
    ("<=", date.min, (None, datetime(1, 1, 2, tzinfo=JST))), ("==", date.min, (None, datetime(1, 1, 2, tzinfo=JST))),
])
def test_a_filter_on_the_first_or_last_calendar_day_has_only_the_bounds_that_exist(operator, day, bounds):
    assert rules.DateFilter(operator, day).bounds() == bounds


@pytest.mark.parametrize("value", ["2026-08-28", "2026-02-30", "11/01/2026", ">>2026-11-01", "today"])
def test_bad_sent_dates(value):
    with pytest.raises(InvalidField) as refused:
        rules.sent_dates([("sent_date", value)], TODAY)
    assert refused.value.field == "sent_date"


def test_no_sent_date_means_no_filter():
    assert rules.sent_dates([], TODAY) == []
