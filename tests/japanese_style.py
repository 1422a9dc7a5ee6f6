"""How the Japanese catalog is written, as checks a test can run over every entry.

The house style (what a Japanese company's own pages look like):

- です/ます throughout. A sentence (text ending in 。？！) never ends in the plain form (だ, である,
  する, した, できない…). Labels and buttons without 。 (「招待を承諾する」) are not sentences and may
  end in the dictionary form, as Japanese interfaces do.
- Full-width 、。（）：！？ next to Japanese text; half-width ( ) : ! ? , only between Latin words,
  numbers and code (「X-Chotto-Signature: t=…」).
- No half-width space next to Japanese text or punctuation: neither 「API 認証情報」 nor
  「お支払い）。 お支払い」. Japanese and Latin words or numbers touch (「API認証情報」「90日間」
  「%(date)sまで」); the spacing between them is the typesetting's job (CSS text-autospace), not the
  catalog's. Spaces between two Latin words or numbers stay (「HTTP Basic認証」). The full-width space
  「　」 may separate items on one line.
- No full-width Latin letters or digits (「ＳＭＳ」「１」).
- One spelling per term: translations/glossary.tsv lists each term's spelling and the variants that
  are refused.
- Placeholders (%(name)s, {code}) and %% are the msgid's, no more, no fewer.
"""

import csv
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "translations" / "ja" / "LC_MESSAGES" / "messages.po"
GLOSSARY = ROOT / "translations" / "glossary.tsv"

JAPANESE = r"\u3000-\u303f\u3040-\u309f\u30a0-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uff01-\uff0f\uff1a-\uff20\uff5b-\uff65"
JP = f"[{JAPANESE.replace(chr(0x3000), chr(0x3001))}]"  # a Japanese letter or punctuation (not the 　 space)
PLACEHOLDER = re.compile(r"%\(\w+\)[sdif]|\{\w+\}|%%")
HALF_WIDTH_PUNCTUATION = "():!?,"
POLITE_ENDINGS = ("ます", "ました", "ません", "ませんでした", "です", "でした", "ください", "ましょう", "ませんか",
                  "ですか", "でしょうか", "いたします", "ございます")
PLAIN_ENDINGS = ("だ", "である", "だった", "であった", "だろう", "する", "した", "しない", "できる", "できない",
                 "される", "された", "ない", "ある", "いる", "いた", "なる", "なった", "れる", "れた")


@dataclass(frozen=True)
class Entry:
    msgid: str
    msgstr: str
    fuzzy: bool
    plural: bool = False  # msgid is "singular\nplural"; Japanese has one form for both


@dataclass(frozen=True)
class Term:
    english: str
    japanese: str
    forbidden: tuple[str, ...]
    note: str


def catalog_entries(path: Path = CATALOG) -> list[Entry]:
    with path.open("rb") as file:
        catalog = read_po(file, locale="ja")
    return [Entry(_text(message.id), _text(message.string), message.fuzzy, isinstance(message.id, tuple))
            for message in catalog if message.id]


def _text(value) -> str:
    return "\n".join(value) if isinstance(value, tuple) else value or ""


def glossary(path: Path = GLOSSARY) -> list[Term]:
    with path.open(encoding="utf-8", newline="") as file:
        rows = list(csv.DictReader(file, delimiter="\t", quoting=csv.QUOTE_NONE))
    return [Term(row["english"], row["japanese"], tuple(v for v in row["forbidden"].split("|") if v), row["note"])
            for row in rows]


def without_placeholders(text: str, stand_in: str = "X") -> str:
    return PLACEHOLDER.sub(stand_in, text)


def placeholders(text: str) -> Counter:
    return Counter(PLACEHOLDER.findall(text))


def placeholder_problem(entry: Entry) -> str | None:
    expected, found = placeholders(entry.msgid), placeholders(entry.msgstr)
    if expected == found or (entry.plural and set(expected) == set(found)):
        return None
    return f"placeholders {sorted(found.elements())} instead of {sorted(expected.elements())}"


def stray_spaces(text: str) -> list[str]:
    """Half-width spaces that touch Japanese text or punctuation, each shown with its neighbours."""
    plain = without_placeholders(text)
    return [plain[max(0, m.start() - 6):m.end() + 6] for m in re.finditer(f"{JP} +| +{JP}", plain)]


def half_width_punctuation(text: str) -> list[str]:
    """( ) : ! ? , set next to Japanese text, where the full-width form belongs."""
    plain = without_placeholders(text)
    marks = re.escape(HALF_WIDTH_PUNCTUATION)
    return [plain[max(0, m.start() - 6):m.end() + 6] for m in re.finditer(f"{JP}[{marks}]|[{marks}]{JP}", plain)]


def full_width_latin(text: str) -> list[str]:
    return re.findall(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]+", text)


def sentences(text: str) -> list[str]:
    """The sentences of a text: what stands before each 。？！ (closing brackets dropped)."""
    return [part.rstrip("）」』") for part in re.split(r"[。？！]", text)[:-1] if part.strip()]


def plain_form_sentences(text: str) -> list[str]:
    """Sentences that end in the plain form (だ/である, する/した…) in a catalog written in です/ます."""
    found = []
    for sentence in sentences(without_placeholders(text)):
        if sentence.endswith(POLITE_ENDINGS):
            continue
        if sentence.endswith(PLAIN_ENDINGS):
            found.append(sentence[-12:])
    return found


def forbidden_variants(text: str, terms: list[Term]) -> list[str]:
    """Refused spellings in a text. A variant inside an accepted spelling of any term (サーバ in
    サーバー, インボイス in 返還インボイス) is not a variant."""
    accepted = sorted({term.japanese for term in terms}, key=len, reverse=True)
    found = []
    for term in terms:
        for variant in term.forbidden:
            masked = text
            for spelling in accepted:
                if variant in spelling and variant != spelling:
                    masked = masked.replace(spelling, "\0")
            if variant in masked:
                found.append(f"{variant} → {term.japanese} ({term.english})")
    return found
