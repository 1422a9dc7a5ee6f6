"""Status callbacks over HTTP without SSRF: the host is resolved once, every address it
resolves to is checked, and the connection goes to the very address that was checked (a DNS
answer that changes between the check and the connection — rebinding — cannot steer it
elsewhere). The request still carries the original `Host` header and, for https, the original
server name (SNI) with the certificate verified against it. Redirects are never followed.

Signatures are Stripe's scheme: `t=<unix time>,v1=<hex>` with v1 = HMAC-SHA256 of
"<t>.<body>"; during a secret rotation there is one `v1=` per secret."""

import hashlib
import hmac
import http.client
import ipaddress
import socket
import ssl
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from ipaddress import IPv4Address, IPv6Address
from urllib.parse import urlsplit

TIMEOUT = 5  # seconds for the connection and each read
DEADLINE = 10  # seconds for the whole exchange: a trickling server cannot hold the worker
MAX_ANSWER = 64 * 1024

Resolver = Callable[[str, int], list[str]]  # (host, port) -> addresses, as getaddrinfo answers
Connect = Callable[[tuple[str, int], float], socket.socket]  # ((address, port), timeout) -> connected socket

NOT_GLOBAL_IPV4 = (ipaddress.ip_network("100.64.0.0/10"), ipaddress.ip_network("192.0.0.0/24"))  # CGNAT, IETF
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
LOCAL_NAT64 = ipaddress.ip_network("64:ff9b:1::/48")
TEREDO = ipaddress.ip_network("2001::/32")
SITE_LOCAL = ipaddress.ip_network("fec0::/10")


class CallbackRefused(ValueError):
    """The callback URL cannot be posted to: bad form, unresolvable, or not a public address."""


def public_address(address: IPv4Address | IPv6Address) -> bool:
    """True only for a globally routable unicast address. IPv6 forms that carry an IPv4
    address (mapped, compatible, NAT64, 6to4) are judged by that IPv4 address; Teredo,
    local NAT64, site-local, CGNAT and 192.0.0.0/24 are refused outright (whatever Python's
    `is_global` says of them in this version)."""
    if isinstance(address, IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return public_address(embedded)
        if address in TEREDO or address in LOCAL_NAT64 or address in SITE_LOCAL:
            return False
    elif any(address in network for network in NOT_GLOBAL_IPV4):
        return False
    return address.is_global and not (
        address.is_private or address.is_loopback or address.is_link_local or address.is_multicast
        or address.is_reserved or address.is_unspecified)


def _embedded_ipv4(address: IPv6Address) -> IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in IPV4_COMPATIBLE or address in NAT64:
        return IPv4Address(int(address) & 0xFFFF_FFFF)
    return address.sixtofour


@dataclass(frozen=True)
class Target:
    """Where one callback goes: the URL's parts and the one checked address to connect to."""

    scheme: str
    host: str
    port: int
    path: str
    address: str


def resolve(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(info[4][0] for info in infos))


def pin(url: str, *, resolver: Resolver, allow_private: bool) -> Target:
    """Resolve the URL's host once and check every answer; the first is the one to use."""
    parts = urlsplit(url)
    try:
        port = parts.port or {"http": 80, "https": 443}[parts.scheme]
    except (KeyError, ValueError):
        raise CallbackRefused("not an http:// or https:// address") from None
    if not parts.hostname:
        raise CallbackRefused("no host")
    try:
        addresses = resolver(parts.hostname, port)
    except OSError as error:
        raise CallbackRefused(f"{parts.hostname} does not resolve") from error
    if not addresses:
        raise CallbackRefused(f"{parts.hostname} does not resolve")
    if not allow_private and not all(public_address(_parsed(address)) for address in addresses):
        raise CallbackRefused("callback address is not a public internet address")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(parts.scheme, parts.hostname, port, path, addresses[0])


def _parsed(address: str) -> IPv4Address | IPv6Address:
    return ipaddress.ip_address(address.split("%", 1)[0])


def open_socket(address: tuple[str, int], timeout: float) -> socket.socket:
    return socket.create_connection(address, timeout)


@cache
def _default_tls() -> ssl.SSLContext:
    return ssl.create_default_context()


class _PinnedHTTP(http.client.HTTPConnection):
    def __init__(self, target: Target, connect: Connect, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._target, self._connect = target, connect

    def connect(self):
        self.sock = self._connect((self._target.address, self._target.port), self.timeout)


class _PinnedHTTPS(http.client.HTTPSConnection):
    def __init__(self, target: Target, connect: Connect, timeout: float, tls: ssl.SSLContext):
        super().__init__(target.host, target.port, timeout=timeout, context=tls)
        self._target, self._connect, self._tls = target, connect, tls

    def connect(self):
        raw = self._connect((self._target.address, self._target.port), self.timeout)
        self.sock = self._tls.wrap_socket(raw, server_hostname=self._target.host)


def post(url: str, *, body: bytes, headers: dict[str, str], allow_private: bool, resolver: Resolver = resolve,
         connect: Connect = open_socket, tls: ssl.SSLContext | None = None, timeout: float = TIMEOUT,
         deadline: float = DEADLINE) -> int:
    """POST `body` to the checked address of `url`; returns the answer's status (a redirect
    is just a status: it is not followed). Past `deadline` the socket is shut and TimeoutError
    raised, however slowly the server keeps sending."""
    status, _ = _request("POST", url, body=body, headers=headers, allow_private=allow_private, resolver=resolver,
                         connect=connect, tls=tls, timeout=timeout, deadline=deadline)
    return status


def get(url: str, *, allow_private: bool, resolver: Resolver = resolve, connect: Connect = open_socket,
        tls: ssl.SSLContext | None = None, timeout: float = TIMEOUT, deadline: float = DEADLINE) -> tuple[int, bytes]:
    """GET `url` the same guarded way (a customer's domain, such as an OTP site's token file):
    the status and at most MAX_ANSWER bytes of the body."""
    return _request("GET", url, body=None, headers={"User-Agent": "Chotto-Verification/1"},
                    allow_private=allow_private, resolver=resolver, connect=connect, tls=tls, timeout=timeout,
                    deadline=deadline)


def _request(method: str, url: str, *, body: bytes | None, headers: dict[str, str], allow_private: bool,
             resolver: Resolver, connect: Connect, tls: ssl.SSLContext | None, timeout: float,
             deadline: float) -> tuple[int, bytes]:
    target = pin(url, resolver=resolver, allow_private=allow_private)
    if target.scheme == "https":
        connection = _PinnedHTTPS(target, connect, timeout, tls or _default_tls())
    else:
        connection = _PinnedHTTP(target, connect, timeout)
    expired = threading.Event()
    watchdog = threading.Timer(deadline, _cut, args=(connection, expired))
    watchdog.start()
    try:
        answer = _exchange(connection, target, method=method, body=body, headers=headers)
    except (OSError, http.client.HTTPException):
        if not expired.is_set():
            raise
    finally:
        watchdog.cancel()
        connection.close()
    if expired.is_set():  # checked after success too: a cut stream can end the headers cleanly
        raise TimeoutError(f"the {method} took longer than {deadline} s")
    return answer


def _exchange(connection: http.client.HTTPConnection, target: Target, *, method: str, body: bytes | None,
              headers: dict[str, str]) -> tuple[int, bytes]:
    connection.request(method, target.path, body=body, headers=headers)
    response = connection.getresponse()
    return response.status, response.read(MAX_ANSWER)


def _cut(connection: http.client.HTTPConnection, expired: threading.Event) -> None:
    expired.set()
    if connection.sock is not None:
        try:
            connection.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def signature(body: bytes, secrets: Sequence[str], timestamp: int) -> str:
    """`t=…,v1=…` with one v1 per secret (two while a rotation overlaps)."""
    signed = f"{timestamp}.".encode() + body
    macs = [hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest() for secret in secrets]
    return ",".join([f"t={timestamp}"] + [f"v1={mac}" for mac in macs])
