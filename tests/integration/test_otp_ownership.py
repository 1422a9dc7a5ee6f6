"""Proving a site's domain against a real local HTTP server that serves the token file, then
stops serving it. The connection goes to the local server whatever the domain resolves to
(the fetcher's resolver and socket are the ones the status callbacks use, pointed at it).
The page's check names what it found and the URL tried; the monthly re-check takes a lost proof
away and tells the owners, keeps it through a short outage, and the fetch keeps the callbacks'
guards (private addresses, redirects, size, time)."""

import socket
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.mail import DevMail
from portal.otp import ownership, proof, service as otp
from portal.otp.models import OtpSite
from portal.otp.ownership import Outcome, Probe
from tests.helpers import deliver_outbox, make_user
from tests.wellknown import TokenSite

DOMAIN = "shop.example.com"


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


# -- what the site's page and the worker see: each outcome, with the URL tried (portal.otp.proof) ------


def to_local(host: str, port: int) -> list[str]:
    """The site's domain resolves to the local server, as its DNS would."""
    return ["127.0.0.1"] if host == DOMAIN else []


def probe_for(served: TokenSite, **changes) -> Probe:
    """As the portal probes in development and tests: http, local addresses, the server's port."""
    return Probe(**({"secure": False, "allow_private": True, "port": served.port, "resolver": to_local} | changes))


def look(session, site, probe, now):
    return proof.check_site(session=session, account_id=site.account_id, site_id=site.id, probe=probe, now=now)


def test_the_site_is_proven_while_it_serves_its_token_and_loses_the_proof_when_it_stops(session, site, clock):
    with TokenSite(body=site.ownership_token + "\r\n") as served:
        proven, found = look(session, site, probe_for(served), clock())
        assert found.outcome == Outcome.PROVEN and found.status == 200
        assert found.url == f"http://{DOMAIN}:{served.port}/.well-known/chotto-verification.txt"
        assert proven.proven_at == clock() and proven.checked_at == clock()
        assert served.requests == ["/.well-known/chotto-verification.txt"]

        clock.advance(minutes=5)
        served.body = "an old token"
        lost, found = look(session, site, probe_for(served), clock())
        assert found.outcome == Outcome.WRONG_CONTENT and lost.proven_at is None

        served.body = site.ownership_token
        again, _ = look(session, site, probe_for(served), clock())
        assert again.proven_at == clock()

        served.body = None
        gone, found = look(session, site, probe_for(served), clock())
        assert (found.outcome, found.status, gone.proven_at) == (Outcome.NOT_FOUND, 404, None)
    down, found = look(session, site, probe_for(served), clock())
    assert (found.outcome, found.reason, down.proven_at) == (Outcome.UNREACHABLE, "network", None)


def test_the_monthly_check_takes_a_lost_proof_away_and_mails_the_owners(app, session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        look(session, site, probe_for(served), clock())
        clock.advance(days=29)
        assert proof.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
        assert served.requests == ["/.well-known/chotto-verification.txt"]  # not due yet

        clock.advance(days=1)
        assert proof.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
        assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).checked_at == clock()

        clock.advance(days=30)
        served.body = None
        assert proof.recheck_due(session=session, probe=probe_for(served), now=clock()) == 1
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is None
    deliver_outbox(app)
    [mail] = session.scalars(select(DevMail).where(DevMail.recipient == "owner@shop.example.com",
                                                   DevMail.subject.contains("no longer proven"))).all()
    assert "/.well-known/chotto-verification.txt" in mail.text_body and "HTTP status 404" in mail.text_body


def test_a_site_that_cannot_be_reached_keeps_its_proof_for_a_few_days_of_retries(session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        look(session, site, probe_for(served), clock())
    clock.advance(days=31)
    assert proof.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is not None
    clock.advance(days=3)
    assert proof.recheck_due(session=session, probe=probe_for(served), now=clock()) == 1
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is None


def test_a_private_address_is_refused_outside_development(session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        proven, found = look(session, site, probe_for(served, allow_private=False), clock())
    assert (found.outcome, found.reason, proven.proven_at) == (Outcome.UNREACHABLE, "refused", None)
    assert served.requests == []


def test_a_redirect_is_not_followed(session, site, clock):
    with TokenSite(status=302, location="http://127.0.0.1:1/.well-known/chotto-verification.txt") as served:
        _, found = look(session, site, probe_for(served), clock())
    assert (found.outcome, found.status) == (Outcome.NOT_FOUND, 302)
    assert served.requests == ["/.well-known/chotto-verification.txt"]


def test_a_large_file_is_not_the_token_even_if_it_starts_with_it(session, site, clock):
    with TokenSite(body=site.ownership_token + " " * 5000) as served:
        _, found = look(session, site, probe_for(served), clock())
    assert found.outcome == Outcome.WRONG_CONTENT


def test_a_slow_site_is_given_up_on_quickly(session, site, clock):
    with TokenSite(body=site.ownership_token, delay=2.0) as served:
        _, found = look(session, site, probe_for(served, timeout=0.3, deadline=0.5), clock())
    assert (found.outcome, found.reason) == (Outcome.UNREACHABLE, "timeout")


def test_production_checks_over_https_on_the_standard_port():
    assert ownership.probe_url(DOMAIN, Probe()) == f"https://{DOMAIN}/.well-known/chotto-verification.txt"
    assert ownership.judge(200, b"\xef\xbb\xbftoken\n", "token") == Outcome.PROVEN
    assert ownership.judge(200, b"token2", "token") == Outcome.WRONG_CONTENT
    assert ownership.judge(404, b"token", "token") == Outcome.NOT_FOUND


def test_the_workers_round_reports_the_proofs_lost(app, session, site, clock):
    from portal import worker

    with TokenSite(body=site.ownership_token) as served:
        look(session, site, probe_for(served), clock())
    assert worker.recheck_ownership(app) == 0  # not due for a month
