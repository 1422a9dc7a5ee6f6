"""Proving that a customer owns a site's domain: the site's token, served as a plain text file at
`https://<domain>/.well-known/chotto-verification.txt` (plain http only in development and tests).
Fetched the way status callbacks are posted (portal.messaging.callbacks): the host is resolved
once, only public addresses are reached outside development and tests, redirects are not
followed, and a slow server is cut off.

`fetcher` gives the file's text (the service's check_ownership); `inspect` says what was found,
for the site's page and the worker (portal.otp.proof): proven, not found (with the HTTP status),
wrong content, or unreachable (and why), with the URL tried."""

import hmac
import http.client
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from portal.messaging import callbacks
from portal.otp.errors import N_

TOKEN_PATH = "/.well-known/chotto-verification.txt"
Fetch = Callable[[str], str | None]  # the token file's URL -> its text, or None when it cannot be read
MAX_FILE_BYTES = 1024  # the token is 43 characters; anything much longer is not the token file
TIMEOUT, DEADLINE = 5.0, 8.0  # seconds: for the connection and each read, and for the whole fetch


class Outcome(StrEnum):
    PROVEN = "proven"
    NOT_FOUND = "not_found"
    WRONG_CONTENT = "wrong_content"
    UNREACHABLE = "unreachable"


OUTCOME_TEXTS = {
    Outcome.PROVEN: N_("Ownership proven: the file holds this site's token."),
    Outcome.NOT_FOUND: N_("The file was not found: the site answered with HTTP status %(status)s."),
    Outcome.WRONG_CONTENT: N_("The file was found, but it does not hold this site's token (and nothing else)."),
    Outcome.UNREACHABLE: N_("The site could not be reached: %(reason)s"),
}

REASON_TEXTS = {  # why a site was unreachable, for the page
    "refused": N_("its address is not a public internet address, or the name does not resolve."),
    "timeout": N_("it did not answer within a few seconds."),
    "tls": N_("its HTTPS certificate could not be verified."),
    "network": N_("the connection failed."),
}


@dataclass(frozen=True)
class Probe:
    """How the check reaches sites: https, public addresses only, the standard port — unless
    the portal runs in development or tests, where a local server may serve the file over
    plain http on a port of its own."""

    secure: bool = True
    allow_private: bool = False
    port: int | None = None
    resolver: callbacks.Resolver = callbacks.resolve
    connect: callbacks.Connect = callbacks.open_socket
    tls: ssl.SSLContext | None = None
    timeout: float = TIMEOUT
    deadline: float = DEADLINE


@dataclass(frozen=True)
class Check:
    """One look at a site's token file: what was found, at which URL, and the HTTP status (or
    why no answer came: refused, timeout, tls, network)."""

    outcome: Outcome
    url: str
    status: int | None = None
    reason: str | None = None

    @property
    def proven(self) -> bool:
        return self.outcome == Outcome.PROVEN


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


def probe_url(domain: str, probe: Probe) -> str:
    """The URL a probe fetches: token_url, on the probe's port when it has one."""
    return token_url(f"{domain}:{probe.port}" if probe.port else domain, https=probe.secure)


def judge(status: int, body: bytes, token: str) -> Outcome:
    """What an answer says: only a 200 whose body is the token, give or take surrounding
    white space (an editor's final newline), proves ownership."""
    if status != 200:
        return Outcome.NOT_FOUND
    if len(body) > MAX_FILE_BYTES:
        return Outcome.WRONG_CONTENT
    served = body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    return Outcome.PROVEN if hmac.compare_digest(served.encode(), token.encode()) else Outcome.WRONG_CONTENT


def inspect(domain: str, token: str, probe: Probe) -> Check:
    """Fetch the token file of `domain` and judge it. Talks to the network: call it outside
    any unit of work."""
    url = probe_url(domain, probe)
    try:
        status, body = callbacks.get(url, allow_private=probe.allow_private, resolver=probe.resolver, connect=probe.connect, tls=probe.tls,
                                     timeout=probe.timeout, deadline=probe.deadline)
    except callbacks.CallbackRefused:
        return Check(Outcome.UNREACHABLE, url, reason="refused")
    except ssl.SSLError:
        return Check(Outcome.UNREACHABLE, url, reason="tls")
    except TimeoutError:
        return Check(Outcome.UNREACHABLE, url, reason="timeout")
    except (OSError, http.client.HTTPException):
        return Check(Outcome.UNREACHABLE, url, reason="network")
    return Check(judge(status, body, token), url, status=status)
