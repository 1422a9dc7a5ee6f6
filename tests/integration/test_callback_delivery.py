"""The callback transport against local servers: the connection goes to the address that was
checked, with the original Host header, TLS server name and certificate check; redirects are
answers, not instructions."""

import socket
import ssl
import subprocess
import threading

import pytest

from portal.messaging import callbacks
from tests.hooks import HookServer, Rebinding

PUBLIC = "93.184.216.34"  # a public address the local server plays


class Recorder:
    """A connect function that notes the address asked for and reaches the local server."""

    def __init__(self, local: str = "127.0.0.1"):
        self.local, self.addresses = local, []

    def __call__(self, address, timeout):
        self.addresses.append(address)
        return socket.create_connection((self.local, address[1]), timeout)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for hooks.example.test, trusted by the client in these tests."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=hooks.example.test",
                    "-addext", "subjectAltName=DNS:hooks.example.test"], check=True, capture_output=True)
    return str(cert), str(key)


def test_a_rebinding_host_is_connected_to_at_the_address_that_was_checked():
    resolver = Rebinding(PUBLIC, "127.0.0.1")
    connect = Recorder()
    with HookServer() as hook:
        status = callbacks.post(f"http://hooks.example.test:{hook.port}/status?id=7", body=b'{"a": 1}',
                                headers={"Content-Type": "application/json"}, allow_private=False,
                                resolver=resolver, connect=connect)
    assert status == 204
    assert resolver.calls == [("hooks.example.test", hook.port)]
    assert connect.addresses == [(PUBLIC, hook.port)]
    (received,) = hook.received
    assert received.headers["Host"] == f"hooks.example.test:{hook.port}"
    assert (received.path, received.body) == ("/status?id=7", b'{"a": 1}')


def test_a_host_resolving_to_the_loopback_is_never_connected_to():
    connect = Recorder()
    with HookServer() as hook, pytest.raises(callbacks.CallbackRefused):
        callbacks.post(f"http://hooks.example.test:{hook.port}/", body=b"{}", headers={}, allow_private=False,
                       resolver=Rebinding("127.0.0.1", PUBLIC), connect=connect)
    assert connect.addresses == [] and hook.received == []


def test_https_uses_the_checked_address_with_the_original_server_name_and_certificate(certificate):
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(*certificate)
    client_tls = ssl.create_default_context(cafile=certificate[0])
    connect = Recorder()
    with HookServer(tls=server_tls) as hook:
        status = callbacks.post(f"https://hooks.example.test:{hook.port}/s", body=b"{}", headers={},
                                allow_private=False, resolver=Rebinding(PUBLIC, "127.0.0.1"), connect=connect,
                                tls=client_tls)
        with pytest.raises(ssl.SSLCertVerificationError):
            callbacks.post(f"https://elsewhere.example.test:{hook.port}/s", body=b"{}", headers={},
                           allow_private=False, resolver=Rebinding(PUBLIC), connect=connect, tls=client_tls)
    assert status == 204 and connect.addresses == [(PUBLIC, hook.port)] * 2
    assert hook.server_names[0] == "hooks.example.test" and len(hook.received) == 1
    assert hook.received[0].headers["Host"] == f"hooks.example.test:{hook.port}"


def test_a_redirect_is_an_answer_and_is_not_followed():
    with HookServer() as elsewhere:
        with HookServer(status=302, location=f"http://127.0.0.1:{elsewhere.port}/") as hook:
            status = callbacks.post(f"http://localhost:{hook.port}/", body=b"{}", headers={}, allow_private=True,
                                    resolver=lambda host, port: ["127.0.0.1"])
    assert status == 302 and len(hook.received) == 1 and elsewhere.received == []


def test_a_server_that_trickles_its_answer_is_cut_off_at_the_deadline():
    """Each byte comes well within the per-read timeout; only the overall deadline stops it."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def trickle():
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            connection.sendall(b"HTTP/1.1 200 OK\r\nX-Slow: ")
            for _ in range(100):  # 10 s of one byte every 0.1 s, unless the client hangs up
                if stop.wait(0.1):
                    return
                try:
                    connection.sendall(b"a")
                except OSError:
                    return
            connection.sendall(b"\r\nContent-Length: 0\r\n\r\n")

    server = threading.Thread(target=trickle, daemon=True)
    server.start()
    try:
        with pytest.raises(TimeoutError):
            callbacks.post(f"http://hooks.example.test:{listener.getsockname()[1]}/", body=b"{}", headers={},
                           allow_private=True, resolver=lambda host, port: ["127.0.0.1"], timeout=1, deadline=0.5)
    finally:
        stop.set()
        server.join(timeout=5)
        listener.close()
