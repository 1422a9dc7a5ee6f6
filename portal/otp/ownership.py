"""Proving that a customer owns a site's domain: the site's token, served as a plain text file at
`https://<domain>/.well-known/chotto-verification.txt` (plain http only in development and tests).
Fetched the way status callbacks are posted (portal.messaging.callbacks): the host is resolved
once, only public addresses are reached outside development and tests, redirects are not
followed, and a slow server is cut off."""

from collections.abc import Callable

from portal.messaging import callbacks

TOKEN_PATH = "/.well-known/chotto-verification.txt"
Fetch = Callable[[str], str | None]  # the token file's URL -> its text, or None when it cannot be read


def token_url(domain: str, *, https: bool) -> str:
    return f"{'https' if https else 'http'}://{domain}{TOKEN_PATH}"


def fetcher(*, allow_private: bool, resolver: callbacks.Resolver = callbacks.resolve,
            connect: callbacks.Connect = callbacks.open_socket) -> Fetch:
    """A Fetch over the network: the file's text on a 200, else None (any other status, an
    unreachable or private host, a timeout, text that is not UTF-8)."""

    def fetch(url: str) -> str | None:
        try:
            status, body = callbacks.get(url, allow_private=allow_private, resolver=resolver, connect=connect)
            return body.decode("utf-8") if status == 200 else None
        except (OSError, ValueError, UnicodeDecodeError):  # CallbackRefused is a ValueError, TimeoutError an OSError
            return None

    return fetch
