"""How numbers people read are written on pages, in mail and on invoices: pure functions, no Flask.

Japanese numbers in the national form a Japanese reader dials (090-1234-5678, 03-1234-5678,
0120-123-456); other countries' in the international form (+1 201-555-0123); postal codes of
Japan as 〒150-0001."""

import re
import unicodedata

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumberFormat

JAPAN_COUNTRY_CODE = 81
JAPANESE_POSTAL_CODE = re.compile(r"(\d{3})[-‐－ー−]?(\d{4})")


def phone_number(value: str | None) -> str:
    """+819012345678 → 090-1234-5678; +12015550123 → +1 201-555-0123. Anything that is not a
    valid number (an alphanumeric sender such as "Chotto", a short code) is shown as it is."""
    if not value:
        return ""
    try:
        number = phonenumbers.parse(value, "JP")
    except NumberParseException:
        return value
    if not phonenumbers.is_valid_number(number):
        return value
    national = number.country_code == JAPAN_COUNTRY_CODE
    return phonenumbers.format_number(number, PhoneNumberFormat.NATIONAL if national else PhoneNumberFormat.INTERNATIONAL)


def masked_phone(e164: str) -> str:
    """"+819012345678" → "•••••••••5678": lists show only a number's last four digits."""
    return "•" * max(0, len(e164) - 4) + e164[-4:]


def postal_code(value: str | None) -> str:
    """1500001, 150-0001 or full-width １５０－０００１ → 150-0001; other countries' codes unchanged."""
    text = unicodedata.normalize("NFKC", value or "").strip()
    match = JAPANESE_POSTAL_CODE.fullmatch(text)
    return f"{match[1]}-{match[2]}" if match else text


def postal_address(code: str | None, address: str) -> str:
    """The postal code with its 〒 mark before the address, as on a Japanese envelope; a foreign
    code is written without the mark."""
    code_text = postal_code(code)
    if not code_text:
        return address
    mark = "〒" if JAPANESE_POSTAL_CODE.fullmatch(code_text) else ""
    return f"{mark}{code_text} {address}"


def postal_mark(value: str | None) -> str:
    """150-0001 → 〒150-0001 for Japanese codes; others unchanged."""
    code_text = postal_code(value)
    return f"〒{code_text}" if JAPANESE_POSTAL_CODE.fullmatch(code_text) else code_text


FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def csv_cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: one that would start a formula gets a leading
    apostrophe (OWASP's CSV injection advice)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
