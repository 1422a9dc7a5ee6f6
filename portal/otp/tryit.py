"""The "Try it" panel of a site's page: a code sent to the person's own verified mobile number
through the OTP service with a test credential (so it lands in the test inbox and costs
nothing), then typed back and verified, as the customer's own site would do it.

The credential is the account's dashboard test credential (portal.onboarding) when it has the
`otp` scope; otherwise one is made on the spot with the dashboard's scopes and `otp`, and
registered as the dashboard's, so the dashboard's test SMS reuses it and the owners get one
"credential created" mail, not one per panel. Its token is never shown: the page works on the
server."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.accounts.models import User
from portal.accounts.queries import lock_account
from portal.credentials import service as credentials
from portal.credentials.models import Credential, Scope
from portal.onboarding import service as onboarding
from portal.onboarding.models import DashboardCredential
from portal.otp import service as otp
from portal.otp.models import OtpCode

SCOPES = [*onboarding.SCOPES, Scope.OTP]


class NoVerifiedPhone(Exception):
    """The person has no verified mobile number to send the code to."""


@dataclass(frozen=True)
class Attempt:
    """A code sent from the panel: its request id, where it went and until when it is valid."""

    msgid: str
    phone: str
    expires_at: datetime


def send_code(*, session: Session, account_id: int, user_id: int, site_id: int, secret: bytes, caller: str,
              credential_name: str, now: datetime) -> Attempt:
    """Request a code for the site to the person's verified number, in test mode. The OTP
    service's refusals pass through (ResendTooSoon, RequestBlocked, InvalidFields, …);
    NoVerifiedPhone; SiteNotFound for another account's site; NotAManager for a billing member.
    `caller` is the number a voice fallback would call from."""
    site = otp.site_of(session=session, account_id=account_id, site_id=site_id)
    phone = _verified_phone(session, user_id)
    principal = onboarding.principal_of(session, _credential(session, account_id, user_id, credential_name, now))
    issued = otp.request_code(session=session, principal=principal, secret=secret, caller=caller, now=now,
                              request=otp.RequestCode(website=site.domain, phone_number=phone))
    return Attempt(issued.msgid, phone, issued.expires_at)


def verify(*, session: Session, account_id: int, user_id: int, msgid: str, code: str, secret: bytes,
           credential_name: str, now: datetime) -> otp.Verified:
    """Check the code typed into the panel for the request `msgid`: VerificationFailed (with the
    reason and the attempts left) or InvalidFields as the API would answer them."""
    principal = onboarding.principal_of(session, _credential(session, account_id, user_id, credential_name, now))
    return otp.verify_code(session=session, principal=principal, secret=secret, now=now,
                           request=otp.VerifyCode(otp_id=msgid, code=code))


def sent(*, session: Session, account_id: int, site_id: int, msgid: str) -> onboarding.SentSMS | None:
    """The SMS of a test code of the site, as the dashboard's panel follows it: queued,
    delivered, and its row in the test inbox. None for any other message."""
    with db.read(session):
        ours = session.scalar(select(OtpCode.id).where(OtpCode.msgid == msgid, OtpCode.site_id == site_id,
                                                       OtpCode.account_id == account_id, OtpCode.mode == "test"))
    return onboarding.sent_sms(session=session, account_id=account_id, msgid=msgid) if ours else None


def _verified_phone(session: Session, user_id: int) -> str:
    with db.read(session):
        user = session.get(User, user_id, populate_existing=True)
    if user is None or user.phone_verified_at is None or not user.phone_e164:
        raise NoVerifiedPhone()
    return user.phone_e164


def _credential(session: Session, account_id: int, user_id: int, name: str, now: datetime) -> Credential:
    """The account's newest dashboard test credential with the `otp` scope, or a new one, decided
    under the account's lock."""
    with db.write(session):
        lock_account(session, account_id)
        found = session.scalars(
            select(Credential).join(DashboardCredential, DashboardCredential.credential_id == Credential.id)
            .where(DashboardCredential.account_id == account_id, Credential.revoked_at.is_(None))
            .order_by(Credential.id.desc())).all()
        for credential in found:
            if Scope.OTP in credential.scope_list:
                return credential
        credential, _token = credentials.create(session=session, account_id=account_id, user_id=user_id, name=name,
                                                mode="test", scopes=SCOPES, networks=[], monthly_cap=None, now=now)
        session.add(DashboardCredential(credential_id=credential.id, account_id=account_id))
    return credential
