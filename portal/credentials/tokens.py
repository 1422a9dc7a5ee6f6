"""API token format: `chotto_live_` or `chotto_test_`, 30 random base62 characters (≈178
bits, from the OS's CSPRNG) and a 6-character base62 CRC32 of the rest, as GitHub's tokens:
a scanner recognises them by the regex, and a typo is caught offline by the checksum."""

import hashlib
import re
import secrets
import zlib

from portal.credentials.models import CredentialMode

BASE62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
PREFIXES = {CredentialMode.LIVE: "chotto_live_", CredentialMode.TEST: "chotto_test_"}
BODY_LENGTH, CHECKSUM_LENGTH = 30, 6
PATTERN = re.compile(r"\bchotto_(live|test)_[0-9A-Za-z]{36}\b")


def _base62(number: int, width: int) -> str:
    digits = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        digits.append(BASE62[digit])
    return "".join(reversed(digits))


def checksum(text: str) -> str:
    return _base62(zlib.crc32(text.encode()), CHECKSUM_LENGTH)


def new_token(mode: CredentialMode) -> str:
    prefix = PREFIXES[mode]
    body = "".join(secrets.choice(BASE62) for _ in range(BODY_LENGTH))
    return prefix + body + checksum(prefix + body)


def well_formed(token: str) -> bool:
    """Shape and checksum, without the database: a mistyped or truncated token is refused cheaply."""
    if not PATTERN.fullmatch(token or ""):
        return False
    return checksum(token[:-CHECKSUM_LENGTH]) == token[-CHECKSUM_LENGTH:]


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_sid() -> str:
    """The public half of a credential (HTTP Basic user name), 32 hex characters like Xoxzo's."""
    return secrets.token_hex(16)


CALLBACK_SECRET_PREFIX, CALLBACK_SECRET_LENGTH = "chotto_whsec_", 32
CALLBACK_SECRET_PATTERN = re.compile(r"\bchotto_whsec_[0-9A-Za-z]{32}\b")


def new_callback_secret() -> str:
    """The key that signs status callbacks: 32 random base62 characters (≈190 bits)."""
    return CALLBACK_SECRET_PREFIX + "".join(secrets.choice(BASE62) for _ in range(CALLBACK_SECRET_LENGTH))
