"""Random secrets for links and sessions: only their SHA-256 is ever stored."""

import hashlib
import hmac
import secrets


def new_token() -> tuple[str, str]:
    """A 256-bit URL-safe token and the hash to store."""
    token = secrets.token_urlsafe(32)
    return token, hash_token(token)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def keyed_hash(key: str, *parts: str) -> str:
    return hmac.new(key.encode(), "\x1f".join(parts).encode(), hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
