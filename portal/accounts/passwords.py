"""Password rules (NIST SP 800-63B-4) and argon2id hashing (OWASP parameters)."""

import gzip
import unicodedata
from functools import cache
from importlib.resources import files

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 15
MAX_LENGTH = 128
SERVICE_WORDS = ("chotto", "ちょっと", "xoxzo")

_hasher = PasswordHasher(time_cost=2, memory_cost=19456, parallelism=1, hash_len=32, salt_len=16)
# Verified against when the e-mail is unknown, so both answers take the same time.
DUMMY_HASH = _hasher.hash("the dummy password nobody has, used to equalise timing")


def normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


@cache
def common_passwords() -> frozenset[str]:
    raw = files("portal.accounts").joinpath("common-passwords.txt.gz").read_bytes()
    return frozenset(line.strip() for line in gzip.decompress(raw).decode().splitlines() if line.strip())


def problems(password: str, *, context_words: tuple[str, ...] = ()) -> list[str]:
    """The rules a password breaks, as codes; an empty list means it is acceptable."""
    normal = normalise(password)
    folded = normal.casefold()
    found = []
    if len(normal) < MIN_LENGTH:
        found.append("too_short")
    if len(normal) > MAX_LENGTH:
        found.append("too_long")
    if folded in common_passwords() or _is_repeated_common(folded):
        found.append("too_common")
    words = [w.casefold() for w in (*SERVICE_WORDS, *context_words) if len(w) >= 4]
    if any(word in folded for word in words):
        found.append("contains_context")
    if len(set(folded)) <= 2 and normal:
        found.append("too_repetitive")
    return found


def _is_repeated_common(folded: str) -> bool:
    """'passwordpassword' and 'qwertyqwertyqwerty' are as common as their parts."""
    for size in range(3, len(folded) // 2 + 1):
        if len(folded) % size == 0 and folded[:size] * (len(folded) // size) == folded:
            return folded[:size] in common_passwords()
    return False


def hash_password(password: str) -> str:
    return _hasher.hash(normalise(password))


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, normalise(password))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)
