"""A local website that serves (or stops serving) an OTP site's ownership file, for the
ownership checks: plain http on 127.0.0.1 and a free port, in a thread."""

import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from portal.otp.ownership import TOKEN_PATH


@dataclass
class TokenSite:
    """`body` is what the file holds (None: 404); `status` and `location` override the answer;
    `delay` holds every answer back that many seconds."""

    body: str | None = None
    status: int | None = None
    location: str | None = None
    delay: float = 0.0
    requests: list[str] = field(default_factory=list)

    def __enter__(self):
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                site.requests.append(self.path)
                if site.delay:
                    threading.Event().wait(site.delay)
                found = self.path == TOKEN_PATH and site.body is not None
                payload = site.body.encode() if found else b"Not Found"
                self.send_response(site.status or (200 if found else 404))
                if site.location:
                    self.send_header("Location", site.location)
                self.send_header("Content-Type", "text/plain; charset=utf-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_port
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
