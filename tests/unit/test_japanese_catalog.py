"""The Japanese catalog reads as a Japanese company writes: the rules are in tests/japanese_style.py,
the terms in translations/glossary.tsv. Each test lists every entry that breaks its rule."""

import pytest

from tests import japanese_style as style

ENTRIES = style.catalog_entries()
TERMS = style.glossary()


def problems(check) -> list[str]:
    found = []
    for entry in ENTRIES:
        if entry.msgstr and (issues := check(entry.msgstr)):
            found.append(f"{entry.msgid[:60]!r}: {entry.msgstr} ← {issues}")
    return found


def test_every_entry_is_translated_and_none_is_fuzzy():
    assert [e.msgid for e in ENTRIES if not e.msgstr.strip() or e.fuzzy] == []


def test_placeholders_are_the_msgids_own():
    assert [f"{e.msgid!r}: {p}" for e in ENTRIES if e.msgstr and (p := style.placeholder_problem(e))] == []


def test_no_half_width_space_touches_japanese_text():
    assert problems(style.stray_spaces) == []


def test_punctuation_next_to_japanese_text_is_full_width():
    assert problems(style.half_width_punctuation) == []


def test_no_full_width_latin_letters_or_digits():
    assert problems(style.full_width_latin) == []


def test_sentences_end_in_desu_masu():
    assert problems(style.plain_form_sentences) == []


def test_one_spelling_per_glossary_term():
    assert problems(lambda text: style.forbidden_variants(text, TERMS)) == []


def test_the_glossary_is_well_formed():
    spellings = [term.japanese for term in TERMS]
    assert all(term.english and term.japanese for term in TERMS)
    assert not [t for t in TERMS if t.japanese in t.forbidden]
    assert len({t.english for t in TERMS}) == len(TERMS)
    assert spellings  # the file was read


@pytest.mark.parametrize(("text", "check", "found"), [
    ("お支払い）。 お支払い", style.stray_spaces, True),
    ("API 認証情報", style.stray_spaces, True),
    ("%(date)s に失効します", style.stray_spaces, True),
    ("HTTP Basic認証で%(host)sに接続します。", style.stray_spaces, False),
    ("宛先：%(to)s　送信元：%(sender)s", style.stray_spaces, False),
    ("認証情報(任意)", style.half_width_punctuation, True),
    ("完了:", style.half_width_punctuation, True),
    ("X-Chotto-Signature: t=…というヘッダー", style.half_width_punctuation, False),
    ("%(name)s（%(email)s）", style.half_width_punctuation, False),
    ("ＳＭＳ", style.full_width_latin, True),
    ("送信しました。キャンセルできない。", style.plain_form_sentences, True),
    ("これは請求書である。", style.plain_form_sentences, True),
    ("送信しました。料金はかかりません。", style.plain_form_sentences, False),
    ("招待を承諾する", style.plain_form_sentences, False),
])
def test_the_checks_catch_what_they_name(text, check, found):
    assert bool(check(text)) is found


def test_a_variant_inside_an_accepted_spelling_is_not_a_variant():
    assert style.forbidden_variants("サーバーとライブラリと返還インボイス", TERMS) == []
    assert style.forbidden_variants("サーバとインボイス", TERMS) != []


def test_placeholders_must_match():
    assert style.placeholder_problem(style.Entry("%(a)s of %(b)s", "%(a)s", False))
    assert style.placeholder_problem(style.Entry("%(rate)s%%", "%(rate)s%%対象", False)) is None
    assert style.placeholder_problem(style.Entry("%(num)s hour\n%(num)s hours", "%(num)s時間", False, plural=True)) is None
