import gzip
from importlib.resources import files

import pytest

from portal.accounts import passwords


def test_refuses_fourteen_characters_and_accepts_fifteen():
    assert passwords.problems("walnut harbor9") == ["too_short"]
    assert passwords.problems("walnut harbor97") == []


def test_counts_unicode_code_points_after_nfkc():
    assert passwords.problems("🙂🐱🌸🍣🚀🎉🌊🔑🎵🍀🌙⭐🍵🗻🎌") == []
    assert "too_short" in passwords.problems("🙂🐱🌸🍣🚀🎉🌊🔑🎵🍀🌙⭐🍵🗻")
    # Full-width letters fold to ASCII under NFKC, so both spellings are the same password.
    assert passwords.normalise("ＡＢＣ") == "ABC"


def test_accepts_128_characters_and_refuses_129():
    assert passwords.problems("x1y2z3" * 21 + "ab") == []
    assert "too_long" in passwords.problems("x1y2z3" * 21 + "abc")


def test_has_no_composition_rules():
    assert passwords.problems("correct horse battery staple") == []
    assert passwords.problems("すべてひらがなのながいぱすわーど") == []


def test_refuses_common_passwords_with_a_reason():
    raw = gzip.decompress(files("portal.accounts").joinpath("common-passwords.txt.gz").read_bytes()).decode().split()
    assert len(passwords.common_passwords()) >= 3000
    for common in raw[:10] + [p for p in raw if len(p) >= 15][:10]:
        assert "too_common" in passwords.problems(common), common


def test_refuses_a_common_password_repeated():
    assert "too_common" in passwords.problems("passwordpassword")
    assert "too_common" in passwords.problems("qwertyqwertyqwerty")


@pytest.mark.parametrize("password", ["my chotto password!", "alice.tanaka is my name", "ちょっと長いパスワードです"])
def test_refuses_the_service_name_and_the_email_name(password):
    assert "contains_context" in passwords.problems(password, context_words=("alice.tanaka",))


def test_refuses_one_repeated_character():
    assert "too_repetitive" in passwords.problems("a" * 20)


def test_hashes_with_argon2id_at_owasp_parameters_and_a_unique_salt():
    first = passwords.hash_password("same password here!")
    assert first.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.hash_password("same password here!") != first


def test_verifies_all_128_characters_without_truncation():
    password = "".join(chr(0x61 + i % 26) for i in range(128))
    stored = passwords.hash_password(password)
    assert passwords.verify_password(stored, password)
    changed = password[:99] + ("b" if password[99] != "b" else "c") + password[100:]
    assert not passwords.verify_password(stored, changed)


def test_old_parameters_need_rehash():
    from argon2 import PasswordHasher

    old = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash("whatever it is here")
    assert passwords.needs_rehash(old)
    assert not passwords.needs_rehash(passwords.hash_password("whatever it is here"))
