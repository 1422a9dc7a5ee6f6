"""How an SMS text is split into parts (segments), which is what it is priced by.

GSM-7 (the GSM 03.38 default alphabet plus its extension table): 160 characters in one part,
153 per part once split (the rest of each part carries the concatenation header); extension
characters such as € or { count twice. Anything outside it (Japanese, most emoji) is sent as
UCS-2: 70 characters in one part, 67 per part once split, and a character outside the Basic
Multilingual Plane takes two UTF-16 units. More than 10 parts is refused.
"""

from dataclasses import dataclass
from enum import StrEnum

MAX_PARTS = 10
GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM7_EXTENSION = set("^{}\\[~]|€\f")


class Encoding(StrEnum):
    GSM7 = "GSM-7"
    UCS2 = "UCS-2"


class TooLong(ValueError):
    def __init__(self, parts: int):
        super().__init__(f"{parts} parts; at most {MAX_PARTS}")
        self.parts = parts


@dataclass(frozen=True)
class Split:
    encoding: Encoding
    units: int  # septets or UTF-16 code units
    parts: int


def split(text: str) -> Split:
    """Count parts the way a handset splits: a part holds 153 septets (GSM-7) or 67 UTF-16
    units (UCS-2) once split, and an extension character (two septets) or a surrogate pair
    (two units) never straddles two parts."""
    if all(ch in GSM7_BASIC or ch in GSM7_EXTENSION for ch in text):
        encoding, single, multi = Encoding.GSM7, 160, 153
        sizes = [2 if ch in GSM7_EXTENSION else 1 for ch in text]
    else:
        encoding, single, multi = Encoding.UCS2, 70, 67
        sizes = [len(ch.encode("utf-16-le")) // 2 for ch in text]
    units = sum(sizes)
    if units <= single:
        return Split(encoding, units, 1)
    parts, used = 1, 0
    for size in sizes:
        if used + size > multi:
            parts, used = parts + 1, 0
        used += size
    if parts > MAX_PARTS:
        raise TooLong(parts)
    return Split(encoding, units, parts)
