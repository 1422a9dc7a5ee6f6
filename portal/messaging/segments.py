"""How an SMS text is split into parts (segments), which is what it is priced by.

GSM-7 (the GSM 03.38 default alphabet plus its extension table): 160 characters in one part,
153 per part once split (the rest of each part carries the concatenation header); extension
characters such as € or { count twice. Anything outside it (Japanese, most emoji) is sent as
UCS-2: 70 characters in one part, 67 per part once split, and a character outside the Basic
Multilingual Plane takes two UTF-16 units. More than 10 parts is refused.
"""

from dataclasses import dataclass

MAX_PARTS = 10
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


class TooLong(ValueError):
    def __init__(self, parts: int):
        super().__init__(f"{parts} parts; at most {MAX_PARTS}")
        self.parts = parts


@dataclass(frozen=True)
class Split:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets or UTF-16 code units
    parts: int


def split(text: str) -> Split:
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        units = sum(2 if ch in GSM7_EXTENSION else 1 for ch in text)
        parts = 1 if units <= 160 else -(-units // 153)
        encoding = "GSM-7"
    else:
        units = len(text.encode("utf-16-le")) // 2
        parts = 1 if units <= 70 else -(-units // 67)
        encoding = "UCS-2"
    if parts > MAX_PARTS:
        raise TooLong(parts)
    return Split(encoding, units, max(parts, 1))
