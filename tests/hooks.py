"""A local HTTP(S) server that records the status callbacks it receives."""

import hashlib
import hmac
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, HTTPServer


@dataclass
class Received:
    headers: dict
    body: bytes
    path: str


@dataclass
class HookServer:
    """Serves on `host` (a port of 0 picks a free one); `status` and `location` set the answer."""

    host: str = "127.0.0.1"
    port: int = 0
    status: int = 204
    location: str | None = None
    tls: ssl.SSLContext | None = None
    received: list[Received] = field(default_factory=list)
    server_names: list[str | None] = field(default_factory=list)

    def __enter__(self):
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.received.append(Received(dict(self.headers), body, self.path))
                self.send_response(hook.status)
                if hook.location:
                    self.send_header("Location", hook.location)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer((self.host, self.port), Handler)
        self.port = self.server.server_port
        if self.tls is not None:
            self.tls.sni_callback = lambda sock, name, context: self.server_names.append(name)
            self.server.socket = self.tls.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def signatures(header: str) -> tuple[str, list[str]]:
    """The time and the v1 signatures of an `X-Chotto-Signature` header."""
    parts = [part.split("=", 1) for part in header.split(",")]
    return next(value for key, value in parts if key == "t"), [value for key, value in parts if key == "v1"]


def signed_by(received: Received, secret: str) -> bool:
    timestamp, macs = signatures(received.headers["X-Chotto-Signature"])
    expected = hmac.new(secret.encode(), f"{timestamp}.".encode() + received.body, hashlib.sha256).hexdigest()
    return any(hmac.compare_digest(expected, mac) for mac in macs)


class Rebinding:
    """A resolver (host, port) -> addresses whose answer changes between calls, as a hostile
    DNS server's would: the answers in turn, the last one for good."""

    def __init__(self, *answers: str):
        self.answers, self.calls = list(answers), []

    def __call__(self, host: str, port: int | None) -> list[str]:
        self.calls.append((host, port))
        return [self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]]
