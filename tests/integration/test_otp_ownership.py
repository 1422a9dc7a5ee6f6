"""Proving a site's domain against a real local HTTP server that serves the token file, then
stops serving it. The connection goes to the local server whatever the domain resolves to
(the fetcher's resolver and socket are the ones the status callbacks use, pointed at it)."""

import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.otp import ownership, service as otp
from portal.otp.models import OtpSite
from tests.helpers import make_user


class TokenServer:
    """Serves `text` at the token path while `serving`; 404 otherwise. Records the Host headers."""

    def __init__(self):
        self.text, self.serving, self.hosts = "", True, []

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                server.hosts.append(self.headers["Host"])
                found = server.serving and self.path == ownership.TOKEN_PATH
                body = server.text.encode() if found else b"not here"
                self.send_response(200 if found else 404)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.http = HTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.http.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.http.shutdown()
        self.http.server_close()

    def fetch(self, *, allow_private=True) -> ownership.Fetch:
        port = self.http.server_port
        return ownership.fetcher(allow_private=allow_private, resolver=lambda host, _port: ["127.0.0.1"],
                                 connect=lambda _address, timeout: socket.create_connection(("127.0.0.1", port),
                                                                                           timeout))


@pytest.fixture
def site(app, session, clock):
    user = make_user(app, email="owner@shop.example.com")
    account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    return otp.register_site(session=session, account_id=account_id, website="https://shop.example.com", now=clock())


def check(session, site, server, clock, **options) -> bool:
    return otp.check_ownership(session=session, account_id=site.account_id, site_id=site.id, now=clock(), https=False,
                               fetch=server.fetch(**options))


def test_the_token_served_proves_the_site_and_its_withdrawal_unproves_it_at_the_monthly_check(session, site, clock):
    with TokenServer() as server:
        server.text = site.ownership_token + "\n"
        assert check(session, site, server, clock)
        assert server.hosts == ["shop.example.com"]
        proven_at = session.get(OtpSite, site.id, populate_existing=True).proven_at
        assert proven_at == clock()
        clock.advance(days=29)
        assert otp.sites_to_recheck(session=session, now=clock()) == []
        clock.advance(days=1)
        assert otp.sites_to_recheck(session=session, now=clock()) == [(site.account_id, site.id)]
        assert check(session, site, server, clock)  # still served: proven since the first time
        assert session.get(OtpSite, site.id, populate_existing=True).proven_at == proven_at
        server.serving = False
        clock.advance(days=30)
        assert not check(session, site, server, clock)
    refreshed = session.get(OtpSite, site.id, populate_existing=True)
    assert refreshed.proven_at is None and refreshed.checked_at == clock()
    assert otp.sites_to_recheck(session=session, now=clock() + timedelta(days=60)) == []  # unproven: on demand only


def test_another_token_or_a_private_address_outside_development_proves_nothing(session, site, clock):
    with TokenServer() as server:
        server.text = "someone else's token"
        assert not check(session, site, server, clock)
        server.text = site.ownership_token
        assert not check(session, site, server, clock, allow_private=False)
        assert server.hosts == ["shop.example.com"]  # the private address was never connected to
        assert check(session, site, server, clock)


def test_an_unreachable_server_proves_nothing(session, site, clock):
    with TokenServer() as server:
        fetch = server.fetch()
    assert fetch(ownership.token_url("shop.example.com", https=False)) is None
    assert not otp.check_ownership(session=session, account_id=site.account_id, site_id=site.id, fetch=fetch,
                                   https=False, now=clock())
