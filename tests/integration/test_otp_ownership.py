"""Ownership proof of an OTP site against a real local HTTP server that serves the token, then
stops serving it: the check on demand records each result, the monthly re-check takes a lost
proof away and tells the owners, keeps it through a short outage, and the fetch keeps the
callbacks' guards (private addresses, redirects, size, time)."""

from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.mail import DevMail
from portal.otp import ownership
from portal.otp import service as otp
from portal.otp.ownership import Outcome, Probe
from tests.helpers import deliver_outbox, make_user
from tests.wellknown import TokenSite

DOMAIN = "shop.example.com"


def to_local(host: str, port: int) -> list[str]:
    """The site's domain resolves to the local server, as its DNS would."""
    return ["127.0.0.1"] if host == DOMAIN else []


def probe_for(served: TokenSite, **changes) -> Probe:
    """As the portal probes in development and tests: http, local addresses, the server's port."""
    return Probe(**({"secure": False, "allow_private": True, "port": served.port, "resolver": to_local} | changes))


@pytest.fixture
def site(app, session, clock):
    user = make_user(app)
    account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    return otp.register_site(session=session, account_id=account_id, website=f"https://{DOMAIN}", now=clock())


def check(session, site, probe, now):
    return ownership.check_site(session=session, account_id=site.account_id, site_id=site.id, probe=probe, now=now)


def test_the_site_is_proven_while_it_serves_its_token_and_loses_the_proof_when_it_stops(session, site, clock):
    with TokenSite(body=site.ownership_token + "\r\n") as served:
        proven, found = check(session, site, probe_for(served), clock())
        assert found.outcome == Outcome.PROVEN and found.status == 200
        assert found.url == f"http://{DOMAIN}:{served.port}/.well-known/chotto-verification.txt"
        assert proven.proven_at == clock() and proven.checked_at == clock()
        assert served.requests == ["/.well-known/chotto-verification.txt"]

        clock.advance(minutes=5)
        served.body = "an old token"
        lost, found = check(session, site, probe_for(served), clock())
        assert found.outcome == Outcome.WRONG_CONTENT and lost.proven_at is None

        served.body = site.ownership_token
        again, _ = check(session, site, probe_for(served), clock())
        assert again.proven_at == clock()

        served.body = None
        gone, found = check(session, site, probe_for(served), clock())
        assert (found.outcome, found.status, gone.proven_at) == (Outcome.NOT_FOUND, 404, None)
    down, found = check(session, site, probe_for(served), clock())
    assert (found.outcome, found.reason, down.proven_at) == (Outcome.UNREACHABLE, "network", None)


def test_the_monthly_check_takes_a_lost_proof_away_and_mails_the_owners(app, session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        check(session, site, probe_for(served), clock())
        clock.advance(days=29)
        assert ownership.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
        assert served.requests == ["/.well-known/chotto-verification.txt"]  # not due yet

        clock.advance(days=2)
        assert ownership.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
        assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).checked_at == clock()

        clock.advance(days=31)
        served.body = None
        assert ownership.recheck_due(session=session, probe=probe_for(served), now=clock()) == 1
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is None
    deliver_outbox(app)
    [mail] = session.scalars(select(DevMail).where(DevMail.recipient == "owner@example.com",
                                                   DevMail.subject.contains("no longer proven"))).all()
    assert "/.well-known/chotto-verification.txt" in mail.text_body and "HTTP status 404" in mail.text_body
    assert ownership.due(session=session, now=clock() + timedelta(days=90)) == []  # unproven: checked on demand only


def test_a_site_that_cannot_be_reached_keeps_its_proof_for_a_few_days_of_retries(session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        check(session, site, probe_for(served), clock())
    clock.advance(days=31)
    assert ownership.recheck_due(session=session, probe=probe_for(served), now=clock()) == 0
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is not None
    clock.advance(days=3)
    assert ownership.recheck_due(session=session, probe=probe_for(served), now=clock()) == 1
    assert otp.site_of(session=session, account_id=site.account_id, site_id=site.id).proven_at is None


def test_a_private_address_is_refused_outside_development(session, site, clock):
    with TokenSite(body=site.ownership_token) as served:
        proven, found = check(session, site, probe_for(served, allow_private=False), clock())
    assert (found.outcome, found.reason, proven.proven_at) == (Outcome.UNREACHABLE, "refused", None)
    assert served.requests == []


def test_a_redirect_is_not_followed(session, site, clock):
    with TokenSite(status=302, location="http://127.0.0.1:1/.well-known/chotto-verification.txt") as served:
        _, found = check(session, site, probe_for(served), clock())
    assert (found.outcome, found.status) == (Outcome.NOT_FOUND, 302)
    assert served.requests == ["/.well-known/chotto-verification.txt"]


def test_a_large_file_is_not_the_token_even_if_it_starts_with_it(session, site, clock):
    with TokenSite(body=site.ownership_token + " " * 5000) as served:
        _, found = check(session, site, probe_for(served), clock())
    assert found.outcome == Outcome.WRONG_CONTENT


def test_a_slow_site_is_given_up_on_quickly(session, site, clock):
    with TokenSite(body=site.ownership_token, delay=2.0) as served:
        _, found = check(session, site, probe_for(served, timeout=0.3, deadline=0.5), clock())
    assert (found.outcome, found.reason) == (Outcome.UNREACHABLE, "timeout")


def test_production_checks_over_https_on_the_standard_port():
    assert ownership.token_url(DOMAIN, Probe()) == f"https://{DOMAIN}/.well-known/chotto-verification.txt"
    assert ownership.judge(200, b"\xef\xbb\xbftoken\n", "token") == Outcome.PROVEN
    assert ownership.judge(200, b"token2", "token") == Outcome.WRONG_CONTENT
    assert ownership.judge(404, b"token", "token") == Outcome.NOT_FOUND
