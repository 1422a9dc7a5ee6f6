"""Proof that a customer owns a site's domain: the site's token served as a plain file at
`https://<domain>/.well-known/chotto-verification.txt` (plain http only in development and
tests). Checked on demand from the site's page and again every month by the worker.

The file is fetched with the status callbacks' guards (portal.messaging.callbacks): the host
resolved once and every address checked (no private addresses outside development and
tests), the connection pinned to the checked address, a short timeout and deadline, a small
size limit, and redirects never followed. The fetch happens outside any transaction; its
result is recorded with the service's `mark_proven`. A monthly check that finds the file gone
or changed takes the proof away and tells the account's owners by mail; one that cannot reach
the site at all keeps the proof for a few days of retries first, so a short outage of the
customer's site does not stop its codes."""

import hmac
import http.client
import logging
import ssl
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import select
from sqlmodel import Session

from portal import db, mail
from portal.accounts.models import Membership, Role, User
from portal.messaging import callbacks
from portal.otp import service as otp
from portal.otp.errors import N_
from portal.otp.models import OtpSite

log = logging.getLogger("portal.otp.ownership")

WELL_KNOWN_PATH = "/.well-known/chotto-verification.txt"
MAX_FILE_BYTES = 1024  # the token is 43 characters; anything much longer is not the token file
TIMEOUT, DEADLINE = 5.0, 8.0  # seconds: for the connection and each read, and for the whole fetch
RECHECK_EVERY = timedelta(days=30)
UNREACHABLE_GRACE = timedelta(days=3)  # a monthly check that cannot reach the site retries this long
ROUND_SIZE = 10  # sites re-checked per hourly round of the worker (each fetch at most DEADLINE seconds)


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


def token_url(domain: str, probe: Probe) -> str:
    scheme = "https" if probe.secure else "http"
    port = f":{probe.port}" if probe.port else ""
    return f"{scheme}://{domain}{port}{WELL_KNOWN_PATH}"


def judge(status: int, body: bytes, token: str) -> Outcome:
    """What an answer says: only a 200 whose body is the token, give or take surrounding
    white space (an editor's final newline), proves ownership."""
    if status != 200:
        return Outcome.NOT_FOUND
    if len(body) > MAX_FILE_BYTES:
        return Outcome.WRONG_CONTENT
    served = body.decode("utf-8", errors="replace").lstrip("\ufeff").strip()
    return Outcome.PROVEN if hmac.compare_digest(served.encode(), token.encode()) else Outcome.WRONG_CONTENT


def fetch(domain: str, token: str, probe: Probe) -> Check:
    """Fetch the token file of `domain` and judge it. Talks to the network: call it outside
    any unit of work."""
    url = token_url(domain, probe)
    try:
        status, body = callbacks.get(url, allow_private=probe.allow_private, limit=MAX_FILE_BYTES,
                                     resolver=probe.resolver, connect=probe.connect, tls=probe.tls,
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


def check_site(*, session: Session, account_id: int, site_id: int, probe: Probe, now: datetime) -> tuple[OtpSite, Check]:
    """The check an owner or developer starts from the site's page: fetched, then recorded
    whatever it found (a site that no longer serves its token loses its proof at once).
    SiteNotFound for another account's site."""
    site = otp.site_of(session=session, account_id=account_id, site_id=site_id)
    found = fetch(site.domain, site.ownership_token, probe)
    return _record(session, account_id, site_id, found, now), found


def recheck_verdict(outcome: Outcome, checked_at: datetime | None, now: datetime) -> bool | None:
    """The monthly check's decision: keep the proof (True), take it away (False), or try
    again later (None) when the site could not be reached and the grace has not run out."""
    if outcome == Outcome.PROVEN:
        return True
    if outcome == Outcome.UNREACHABLE and checked_at is not None and now - checked_at < RECHECK_EVERY + UNREACHABLE_GRACE:
        return None
    return False


def due(*, session: Session, now: datetime, limit: int = ROUND_SIZE) -> list[OtpSite]:
    """Proven sites whose last check is a month old, the oldest first."""
    with db.read(session):
        return list(session.scalars(select(OtpSite).where(
            OtpSite.proven_at.is_not(None), OtpSite.checked_at < now - RECHECK_EVERY)
            .order_by(OtpSite.checked_at, OtpSite.id).limit(limit)))


def recheck_due(*, session: Session, probe: Probe, now: datetime, limit: int = ROUND_SIZE) -> int:
    """The worker's round: re-check the sites that are due; returns how many proofs were lost."""
    lost = 0
    for site in due(session=session, now=now, limit=limit):
        found = fetch(site.domain, site.ownership_token, probe)
        verdict = recheck_verdict(found.outcome, site.checked_at, now)
        if verdict is None:
            log.info("OTP site %s unreachable (%s); its proof is kept for now", site.id, found.reason)
            continue
        recorded = _record(session, site.account_id, site.id, found, now)
        lost += recorded.proven_at is None
    return lost


def _record(session: Session, account_id: int, site_id: int, found: Check, now: datetime) -> OtpSite:
    """The check's result in one unit of work: mark_proven joins it, and the owners' mail about
    a lost proof is queued in the same transaction."""
    with db.write(session):
        was_proven = session.scalar(select(OtpSite.proven_at).where(OtpSite.id == site_id)) is not None
        site = otp.mark_proven(session=session, account_id=account_id, site_id=site_id, proven=found.proven, now=now)
        if was_proven and site.proven_at is None:
            _tell_owners(session, site, found, now)
    return site


def _tell_owners(session: Session, site: OtpSite, found: Check, now: datetime) -> None:
    owners = session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == site.account_id, Membership.role == Role.OWNER))
    for owner in owners:
        mail.queue(session, to=owner.email, template="otp_proof_lost", language=owner.language, now=now,
                   site=site, url=found.url, found=OUTCOME_TEXTS[found.outcome], status=found.status,
                   reason=REASON_TEXTS.get(found.reason or ""))
