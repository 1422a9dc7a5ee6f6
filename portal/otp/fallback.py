"""The voice fallback, run by the worker: a call that reads the code after N seconds without a
verification, or at once when the SMS failed; and the texts that held a code, masked once used."""

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlmodel import Session

from portal import db
from portal.accounts.models import Account
from portal.credentials.models import Credential
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.ledger.models import CreditState
from portal.messaging import rules as messaging_rules
from portal.messaging import service as messaging
from portal.messaging.api_models import Call, Message, MessageStatus, UsageProduct
from portal.messaging.errors import InsufficientCredit, SpendCapReached
from portal.otp import rules
from portal.otp.codes import CODES, state_of
from portal.otp.errors import InvalidField
from portal.otp.events import Event, post_event
from portal.otp.models import OtpCode, OtpSite


def after_sms(*, session: Session, message_id: int, caller: str, now: datetime) -> str | None:
    """After an SMS's delivery attempt, for an OTP message: its delivery reported once to the
    site's callback URL, and a failed one followed at once by the site's fallback call.
    Returns the call's id, if one was queued."""
    with db.read(session):
        row = session.execute(select(OtpCode.id, Message.status).join(Message, Message.msgid == OtpCode.msgid).where(
            Message.id == message_id, OtpCode.delivery_event.is_(None),
            Message.status.in_([MessageStatus.DELIVERED, MessageStatus.FAIL]))).first()
    if row is None:  # not an OTP message, still on its way, or reported already
        return None
    event = Event.FAILED if row.status == MessageStatus.FAIL else Event.DELIVERED
    with db.write(session):
        reported = session.execute(update(CODES).where(CODES.c.id == row.id, CODES.c.delivery_event.is_(None))
                                   .values(delivery_event=event.value).returning(CODES.c.id)).first()
        if reported is not None:
            code = session.get(OtpCode, row.id, populate_existing=True)
            if code.masked_body is not None:
                messaging.redact_in(session, msgid=code.msgid, text=code.masked_body)
            post_event(session, session.get(OtpSite, code.site_id), code.credential_id, event, now,
                       phone_number=code.phone_number, otp_id=code.msgid)
    if event == Event.FAILED:
        return call_fallback(session=session, code_id=row.id, caller=caller, now=now)
    return None


def after_call(*, session: Session, call_id: int) -> None:
    """After a call ended: the code it read out (a code by voice, or a fallback) is hidden."""
    with db.read(session):
        row = session.execute(select(Call.callid, Call.tts_message).join(
            OtpCode, or_(OtpCode.msgid == Call.callid, OtpCode.fallback_callid == Call.callid)).where(
            Call.id == call_id, Call.ended_at.is_not(None))).first()
    if row is None or not row.tts_message or rules.masked_spoken(row.tts_message) == row.tts_message:
        return
    with db.write(session):
        messaging.redact_in(session, callid=row.callid, text=rules.masked_spoken(row.tts_message))


def call_fallback(*, session: Session, code_id: int, caller: str, now: datetime) -> str | None:
    """Queue the call that reads the code out, unless the code was verified, replaced, locked
    or has expired meanwhile, or was already called: at most one call per code, paid like any
    call through the credential that asked for the code. The text read out is forgotten once
    the call is queued (or can no longer come). Returns the call's id, if one was queued."""
    with db.write(session):
        account_id = session.scalar(select(OtpCode.account_id).where(OtpCode.id == code_id))
        if account_id is None:
            return None
        state, lots = ledger.lock(session, account_id)
        code = session.get(OtpCode, code_id, populate_existing=True)
        principal = _principal_of(session, code.credential_id)
        if code.fallback_text is None or principal is None or rules.refusal(state_of(code), now) is not None:
            code.fallback_text = None
            return None
        site = session.get(OtpSite, code.site_id)
        number = messaging_rules.phone_number("phone_number", code.phone_number)
        try:
            with session.begin_nested():  # a refused call leaves nothing of itself
                started = messaging.call_in(session, principal, state, lots, caller=caller, number=number,
                                            tts=code.fallback_text, language=str(site.fallback_language), now=now,
                                            product=UsageProduct.OTP_CALL, site_id=site.id)
        except (InsufficientCredit, SpendCapReached, InvalidField):
            code.fallback_text = None
            return None
        code.fallback_text, code.fallback_callid = None, started.callid
        post_event(session, site, code.credential_id, Event.FALLBACK_CALLED, now, phone_number=code.phone_number,
                   otp_id=code.msgid, callid=started.callid)
        return started.callid


def _principal_of(session: Session, credential_id: int) -> Principal | None:
    """The credential that asked for the code, as the API saw it; None once revoked."""
    row = session.execute(select(Credential, Account.allowed_countries, CreditState.has_purchased)
                          .join(Account, Account.id == Credential.account_id)
                          .join(CreditState, CreditState.account_id == Credential.account_id)
                          .where(Credential.id == credential_id, Credential.revoked_at.is_(None))).first()
    if row is None:
        return None
    credential, countries, purchased = row
    return Principal(credential.id, credential.sid, credential.account_id, credential.mode,
                     frozenset(credential.scope_list), credential.monthly_cap,
                     tuple(c for c in (countries or "JP").split(",") if c), bool(purchased))
