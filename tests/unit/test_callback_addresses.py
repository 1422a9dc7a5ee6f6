"""Where a status callback may go: only globally routable addresses, IPv6 forms that carry an
IPv4 address judged by that address, and one resolution that is both checked and used."""

import hashlib
import hmac
import ipaddress

import pytest

from portal.messaging.callbacks import CallbackRefused, pin, public_address, signature
from tests.hooks import Rebinding

REFUSED = [
    "127.0.0.1", "127.1.2.3", "10.0.0.5", "172.16.0.1", "192.168.1.1", "169.254.169.254", "0.0.0.0", "0.1.2.3",
    "100.64.0.1", "100.127.255.254", "192.0.0.8", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9",
    "224.0.0.1", "239.255.255.250", "240.0.0.1", "255.255.255.255",
    "::", "::1", "fe80::1", "fc00::1", "fd12:3456::1", "ff02::1", "ff0e::1", "2001:db8::1", "100::1",
    "::127.0.0.1", "::10.0.0.1", "::ffff:127.0.0.1", "::ffff:169.254.169.254", "::ffff:100.64.0.1",
    "64:ff9b::127.0.0.1", "64:ff9b::10.1.2.3", "64:ff9b:1::8.8.8.8",
    "2002:7f00:1::1", "2002:a00:1::", "2002:c0a8:101::1",
    "2001::1", "2001:0:4136:e378:8000:63bf:3fff:fdd2",
    "fec0::1", "feff::1",
]
ALLOWED = [
    "8.8.8.8", "1.1.1.1", "93.184.216.34", "100.128.0.1", "2606:4700:4700::1111", "2a00:1450:4001:81b::200e",
    "::ffff:8.8.8.8", "64:ff9b::8.8.8.8", "2002:808:808::1",
]


@pytest.mark.parametrize("address", REFUSED)
def test_a_non_public_address_is_refused(address):
    assert not public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_a_public_address_is_allowed(address):
    assert public_address(ipaddress.ip_address(address))


def test_the_host_is_resolved_once_and_the_checked_address_is_the_one_to_use():
    resolver = Rebinding("93.184.216.34", "127.0.0.1")
    target = pin("https://hooks.example.com/status?x=1", resolver=resolver, allow_private=False)
    assert resolver.calls == [("hooks.example.com", 443)]
    assert (target.address, target.host, target.port, target.path) == ("93.184.216.34", "hooks.example.com", 443,
                                                                       "/status?x=1")


def test_one_private_answer_among_public_ones_refuses_the_host():
    with pytest.raises(CallbackRefused):
        pin("http://mixed.example.com/", resolver=lambda host, port: ["8.8.8.8", "10.0.0.1"], allow_private=False)


def test_private_addresses_are_used_where_allowed():
    target = pin("http://localhost:8080/hook", resolver=lambda host, port: ["127.0.0.1"], allow_private=True)
    assert (target.address, target.port, target.path) == ("127.0.0.1", 8080, "/hook")


@pytest.mark.parametrize("url", ["ftp://example.com/", "http:///nohost", "http://example.com:99999/"])
def test_a_url_that_is_not_http_is_refused(url):
    with pytest.raises(CallbackRefused):
        pin(url, resolver=lambda host, port: ["8.8.8.8"], allow_private=False)


def test_a_host_that_does_not_resolve_is_refused():
    def failing(host, port):
        raise OSError("no such host")

    with pytest.raises(CallbackRefused):
        pin("http://nowhere.example.com/", resolver=failing, allow_private=True)
    with pytest.raises(CallbackRefused):
        pin("http://nowhere.example.com/", resolver=lambda host, port: [], allow_private=True)


def test_the_signature_carries_one_v1_per_secret():
    body = b'{"msgid": "m1"}'
    header = signature(body, ["chotto_whsec_new", "chotto_whsec_old"], 1_800_000_000)
    parts = header.split(",")
    assert parts[0] == "t=1800000000"
    assert [part.removeprefix("v1=") for part in parts[1:]] == [
        hmac.new(secret.encode(), b"1800000000." + body, hashlib.sha256).hexdigest()
        for secret in ("chotto_whsec_new", "chotto_whsec_old")]
