"""The ownership checks' units of work: on demand from a site's page (`check_site`), and the
worker's monthly round (`recheck_due`). The file is inspected outside any transaction
(portal.otp.ownership) and the result recorded with the service's mark_proven. A monthly check
that finds the file gone or changed takes the proof away and tells the account's owners by mail
in the same unit; one that cannot reach the site at all keeps the proof for a few days of
retries, so a short outage of the customer's site does not stop its codes."""

import logging
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlmodel import Session

from portal import db, mail
from portal.accounts.models import Membership, Role, User
from portal.otp import ownership
from portal.otp import service as otp
from portal.otp.models import OtpSite

log = logging.getLogger("portal.otp.proof")
UNREACHABLE_GRACE = timedelta(days=3)  # a monthly check that cannot reach the site retries this long
ROUND_SIZE = 10  # sites re-checked per hourly round of the worker (each fetch at most ownership.DEADLINE seconds)


def check_site(*, session: Session, account_id: int, site_id: int, probe: ownership.Probe,
               now: datetime) -> tuple[OtpSite, ownership.Check]:
    """The check an owner or developer starts from the site's page: fetched, then recorded
    whatever it found (a site that no longer serves its token loses its proof at once).
    SiteNotFound for another account's site."""
    site = otp.site_of(session=session, account_id=account_id, site_id=site_id)
    found = ownership.inspect(site.domain, site.ownership_token, probe)
    return _record(session, account_id, site_id, found, now), found


def recheck_verdict(outcome: ownership.Outcome, checked_at: datetime | None, now: datetime) -> bool | None:
    """The monthly check's decision: keep the proof (True), take it away (False), or try
    again later (None) when the site could not be reached and the grace has not run out."""
    if outcome == ownership.Outcome.PROVEN:
        return True
    unreachable = outcome == ownership.Outcome.UNREACHABLE
    if unreachable and checked_at is not None and now - checked_at < otp.RECHECK_EVERY + UNREACHABLE_GRACE:
        return None
    return False


def recheck_due(*, session: Session, probe: ownership.Probe, now: datetime, limit: int = ROUND_SIZE) -> int:
    """The worker's round: re-check the sites that are due; returns how many proofs were lost."""
    lost = 0
    for account_id, site_id in otp.sites_to_recheck(session=session, now=now, limit=limit):
        site = otp.site_of(session=session, account_id=account_id, site_id=site_id)
        found = ownership.inspect(site.domain, site.ownership_token, probe)
        verdict = recheck_verdict(found.outcome, site.checked_at, now)
        if verdict is None:
            log.info("OTP site %s unreachable (%s); its proof is kept for now", site.id, found.reason)
            continue
        recorded = _record(session, site.account_id, site.id, found, now)
        lost += recorded.proven_at is None
    return lost


def _record(session: Session, account_id: int, site_id: int, found: ownership.Check, now: datetime) -> OtpSite:
    """The check's result in one unit of work: mark_proven joins it, and the owners' mail about
    a lost proof is queued in the same transaction."""
    with db.write(session):
        was_proven = session.scalar(select(OtpSite.proven_at).where(OtpSite.id == site_id)) is not None
        site = otp.mark_proven(session=session, account_id=account_id, site_id=site_id, proven=found.proven, now=now)
        if was_proven and site.proven_at is None:
            _tell_owners(session, site, found, now)
    return site


def _tell_owners(session: Session, site: OtpSite, found: ownership.Check, now: datetime) -> None:
    owners = session.scalars(select(User).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == site.account_id, Membership.role == Role.OWNER))
    for owner in owners:
        mail.queue(session, to=owner.email, template="otp_proof_lost", language=owner.language, now=now,
                   site=site, url=found.url, found=ownership.OUTCOME_TEXTS[found.outcome], status=found.status,
                   reason=ownership.REASON_TEXTS.get(found.reason or ""))
