"""A first SMS from the dashboard, and what a new account has done so far.

The test SMS goes through the customer API's own send path (validated, recorded, queued for the
worker, delivered to the test inbox, charged nothing) with a test credential the dashboard
creates on first use and reuses after: one per account rather than one per click, so the
credentials list stays the customer's own and the owners get one "credential created" mail, not
one per test. Its token is never shown (the dashboard sends on the server), which is also why
creating it needs no recent password, unlike a credential made on the credentials page."""

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import exists, select
from sqlmodel import Session

from portal import db
from portal.accounts.models import Account, User
from portal.accounts.queries import lock_account
from portal.credentials import service as credentials
from portal.credentials.models import Credential
from portal.credentials.service import Principal
from portal.ledger.models import CreditState
from portal.messaging import service as messaging
from portal.messaging.api_models import Message
from portal.messaging.models import TestInboxMessage
from portal.messaging.errors import InvalidFields, KeyReused, ScopeMissing, SpendCapReached
from portal.onboarding.models import DashboardCredential

SENDER = "Chotto"
SCOPES = ["sms", "read"]
INBOX_REFERENCE = "inbox-"  # the test-inbox carrier's reference: "inbox-<row id>"


class NoVerifiedPhone(Exception):
    """The person has no verified mobile number for the test SMS to go to."""


class SMSRefused(Exception):
    """The API's send path refused the message; `errors` as the API would answer them."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(", ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class SentSMS:
    """A test message sent from the dashboard, as the panel shows it."""

    msgid: str
    status: str  # QUEUED, DELIVERING, DELIVERED or FAIL
    recipient: str
    body: str
    sent_at: datetime
    arrived: TestInboxMessage | None  # its row in the test inbox, once delivered

    @property
    def pending(self) -> bool:
        return self.status in ("QUEUED", "DELIVERING")


@dataclass(frozen=True)
class Progress:
    """The getting-started steps, each true once it really happened for the account."""

    phone_verified: bool
    credential_created: bool  # by a person, on the credentials page or the command line
    test_message_sent: bool  # any message through a test credential, the dashboard's included
    purchased: bool


def send_test_sms(*, session: Session, account_id: int, user_id: int, message: str, credential_name: str,
                  attempt: str, now: datetime) -> SentSMS:
    """Send `message` to the person's verified mobile number with the account's dashboard test
    credential. `attempt` identifies one press of the button: a repeated post sends once.
    NoVerifiedPhone, credentials.NotAManager (only owners and developers create credentials),
    SMSRefused."""
    phone = _verified_phone(session, user_id)
    credential = dashboard_credential(session=session, account_id=account_id, user_id=user_id,
                                      name=credential_name, now=now)
    request = messaging.SendSms(recipient=phone, sender=SENDER, message=message)
    try:
        answer = messaging.send_sms(session=session, principal=principal_of(session, credential), request=request,
                                    idempotency_key=f"dashboard:{attempt}", now=now, render=_stored)
    except InvalidFields as invalid:
        raise SMSRefused(invalid.errors) from None
    except (ScopeMissing, SpendCapReached, KeyReused) as refused:
        raise SMSRefused({"detail": [str(refused)]}) from None
    return sent_sms(session=session, account_id=account_id, msgid=json.loads(answer.body)[0]["msgid"])


def _stored(sent: messaging.Sent) -> messaging.StoredAnswer:
    """The answer kept with the button press's key: the API's own shape, so a replay through
    the API with the same key would read the same."""
    return messaging.StoredAnswer(201, json.dumps([{"msgid": sent.msgid}]))


def _verified_phone(session: Session, user_id: int) -> str:
    with db.read(session):
        user = session.get(User, user_id, populate_existing=True)
    if user is None or user.phone_verified_at is None or not user.phone_e164:
        raise NoVerifiedPhone()
    return user.phone_e164


def dashboard_credential(*, session: Session, account_id: int, user_id: int, name: str, now: datetime) -> Credential:
    """The account's dashboard test credential that is not revoked, or a new one, decided under
    the account's lock. Two presses at once make one as soon as credentials.create joins this
    unit of work instead of committing on its own; until then the second may make a second test
    credential (harmless: both charge nothing, and the newest is the one reused)."""
    with db.write(session):
        lock_account(session, account_id)
        credential = session.scalars(
            select(Credential).join(DashboardCredential, DashboardCredential.credential_id == Credential.id)
            .where(DashboardCredential.account_id == account_id, Credential.revoked_at.is_(None))
            .order_by(Credential.id.desc())
        ).first()
        if credential is not None:
            return credential
        credential, _token = credentials.create(session=session, account_id=account_id, user_id=user_id, name=name,
                                                mode="test", scopes=SCOPES, networks=[], monthly_cap=None, now=now)
        session.add(DashboardCredential(credential_id=credential.id, account_id=account_id))
    return credential


def principal_of(session: Session, credential: Credential) -> Principal:
    """The credential as the API would see it after authentication (for the portal's own sends:
    the dashboard's test SMS and the OTP sites' Try it)."""
    with db.read(session):
        countries = session.scalar(select(Account.allowed_countries).where(Account.id == credential.account_id))
        purchased = session.scalar(select(CreditState.has_purchased).where(CreditState.account_id == credential.account_id))
    return Principal(credential.id, credential.sid, credential.account_id, credential.mode,
                     frozenset(credential.scope_list), credential.monthly_cap,
                     tuple(country for country in (countries or "JP").split(",") if country), bool(purchased))


def sent_sms(*, session: Session, account_id: int, msgid: str) -> SentSMS | None:
    """A test message of the account and, once delivered, its row in the test inbox."""
    with db.read(session):
        message = session.scalars(select(Message).where(Message.msgid == msgid, Message.account_id == account_id,
                                                        Message.mode == "test")).first()
        if message is None:
            return None
        arrived = _inbox_row(session, account_id, message.carrier_ref) if message.status == "DELIVERED" else None
    return SentSMS(message.msgid, message.status, message.recipient, message.body, message.created_at, arrived)



def _inbox_row(session: Session, account_id: int, reference: str | None) -> TestInboxMessage | None:
    if not reference or not reference.startswith(INBOX_REFERENCE) or not reference[len(INBOX_REFERENCE):].isdigit():
        return None
    row = session.get(TestInboxMessage, int(reference[len(INBOX_REFERENCE):]))
    return row if row is not None and row.account_id == account_id else None


def progress(*, session: Session, account_id: int, user_id: int) -> Progress:
    with db.read(session):
        phone_verified = session.scalar(select(User.phone_verified_at).where(User.id == user_id)) is not None
        by_a_person = exists().where(Credential.account_id == account_id, ~Credential.id.in_(
            select(DashboardCredential.credential_id).where(DashboardCredential.account_id == account_id)))
        sent = exists().where(Message.account_id == account_id, Message.mode == "test")
        purchased = select(CreditState.has_purchased).where(CreditState.account_id == account_id)
        return Progress(phone_verified=phone_verified, credential_created=bool(session.scalar(select(by_a_person))),
                        test_message_sent=bool(session.scalar(select(sent))),
                        purchased=bool(session.scalar(purchased)))
