"""Numbers as people read them: Japanese phone numbers in the national form, others in the
international one; Japanese postal codes with their hyphen and 〒."""

import pytest

from portal.formats import phone_number, postal_address, postal_code, postal_mark


@pytest.mark.parametrize(("stored", "shown"), [
    ("+819012345678", "090-1234-5678"),  # mobile
    ("+818012345678", "080-1234-5678"),
    ("+81312345678", "03-1234-5678"),  # Tokyo landline
    ("+81662345678", "06-6234-5678"),
    ("+81451234567", "045-123-4567"),
    ("+815012345678", "050-1234-5678"),  # IP phone
    ("+81120123456", "0120-123-456"),  # toll-free
    ("09012345678", "090-1234-5678"),  # a national number as typed
    ("+12015550123", "+1 201-555-0123"),
    ("+442071838750", "+44 20 7183 8750"),
])
def test_japanese_numbers_are_national_and_others_international(stored, shown):
    assert phone_number(stored) == shown


@pytest.mark.parametrize("value", ["Chotto", "12345", "+81123", ""])
def test_what_is_not_a_valid_number_is_shown_as_it_is(value):
    assert phone_number(value) == value
    assert phone_number(None) == ""


@pytest.mark.parametrize(("typed", "code", "marked"), [
    ("1500001", "150-0001", "〒150-0001"),
    ("150-0001", "150-0001", "〒150-0001"),
    (" １５０－０００１ ", "150-0001", "〒150-0001"),
    ("SW1A 1AA", "SW1A 1AA", "SW1A 1AA"),
    ("10115", "10115", "10115"),
])
def test_japanese_postal_codes_get_their_hyphen_and_mark(typed, code, marked):
    assert postal_code(typed) == code
    assert postal_mark(typed) == marked


def test_an_address_starts_with_its_postal_code():
    assert postal_address("1500001", "東京都渋谷区神南1-2-3") == "〒150-0001 東京都渋谷区神南1-2-3"
    assert postal_address("10115", "Invalidenstraße 1, Berlin") == "10115 Invalidenstraße 1, Berlin"
    assert postal_address("", "Singapore") == "Singapore"
