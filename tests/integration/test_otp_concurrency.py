"""Real parallel clients against one code and one number, on PostgreSQL (where checks and
requests truly run at the same time): wrong attempts are counted exactly, and a number never
has two active codes."""

import re
from dataclasses import replace
from datetime import timedelta

import pytest
from sqlalchemy import select

from portal.accounts.models import Membership
from portal.credentials import service as credentials
from portal.credentials.service import Principal
from portal.ledger import service as ledger
from portal.ledger.models import CreditState
from portal.messaging.api_models import Message
from portal.otp import rules, service as otp
from portal.otp.errors import Failure, RequestBlocked, VerificationFailed
from portal.otp.models import BlockReason, CodeStatus, OtpCode
from tests.api.test_otp import counted_from_codes, tallied
from tests.helpers import make_user
from tests.integration.test_ledger_concurrency import CLIENTS, parallel

pytestmark = pytest.mark.postgresql
SECRET = b"test-secret-key-that-is-long-enough-for-production-checks"
NUMBER = "+819012345678"


@pytest.fixture
def principal(app, session, clock):
    user = make_user(app, email="otp@example.com")
    account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
    credential, _token = credentials.create(session=session, account_id=account_id, user_id=user.id, name="otp",
                                            mode="live", scopes=["otp"], networks=[], monthly_cap=None, now=clock())
    ledger.grant_purchase(session=session, account_id=account_id, amount=1_000_000, paid_at=clock(), payment_ref="pi",
                          now=clock())
    session.get(CreditState, account_id).has_purchased = True
    session.commit()
    site = otp.register_site(session=session, account_id=account_id, website="shop.example.com", now=clock())
    otp.mark_proven(session=session, account_id=account_id, site_id=site.id, proven=True, now=clock())
    settings = replace(rules.default_settings("Shop"), resend_cooldown_seconds=0)
    otp.update_settings(session=session, account_id=account_id, site_id=site.id, settings=settings, now=clock())
    return Principal(credential.id, credential.sid, account_id, "live", frozenset({"otp"}), None, ("JP",), True)


def request(session, principal, now):
    return otp.request_code(session=session, principal=principal, secret=SECRET, caller="+81312345678", now=now,
                            request=otp.RequestCode(website="shop.example.com", phone_number=NUMBER))


def test_sixteen_parallel_wrong_codes_use_exactly_the_sites_attempts_and_kill_the_code(app, session, clock, principal):
    issued = request(session, principal, clock())
    body = session.scalars(select(Message.body).where(Message.msgid == issued.msgid)).one()
    code = re.search(r"\d{6}", body).group(0)
    wrong = "000000" if code != "000000" else "111111"

    def check(db, job):
        try:
            otp.verify_code(session=db, principal=principal, secret=SECRET, now=clock(),
                            request=otp.VerifyCode(otp_id=issued.msgid, code=wrong))
        except VerificationFailed as failed:
            return failed.reason
        return "verified"

    outcomes = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), check)
    assert outcomes.count(Failure.WRONG) == 5 and outcomes.count(Failure.TOO_MANY_ATTEMPTS) == CLIENTS - 5
    session.expire_all()
    stored = session.scalars(select(OtpCode)).one()
    assert (stored.failures, stored.status) == (5, CodeStatus.LOCKED)
    assert check(session, 0) == Failure.TOO_MANY_ATTEMPTS
    with pytest.raises(VerificationFailed) as dead:
        otp.verify_code(session=session, principal=principal, secret=SECRET, now=clock(),
                        request=otp.VerifyCode(otp_id=issued.msgid, code=code))
    assert dead.value.reason == Failure.TOO_MANY_ATTEMPTS


def test_sixteen_parallel_requests_for_one_number_leave_one_active_code(app, session, clock, principal):
    def ask(db, job):
        try:
            return request(db, principal, clock()).msgid
        except RequestBlocked as blocked:
            return blocked.reason

    outcomes = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), ask)
    sent = [o for o in outcomes if isinstance(o, str) and len(o) == 32]
    assert len(sent) == 5 and outcomes.count(BlockReason.NUMBER_LIMIT) == CLIENTS - 5
    session.expire_all()
    codes = session.scalars(select(OtpCode).order_by(OtpCode.id)).all()
    assert [c.status for c in codes] == [CodeStatus.REPLACED] * 4 + [CodeStatus.ACTIVE]
    assert len(session.scalars(select(Message)).all()) == 5


def test_parallel_requests_and_verifications_keep_the_tallies_exact(app, session, clock, principal):
    def ask(db, job):
        now = clock() + timedelta(hours=job % 2)  # two hours' tallies
        return otp.request_code(session=db, principal=principal, secret=SECRET, caller="+81312345678", now=now,
                                request=otp.RequestCode(website="shop.example.com",
                                                        phone_number=f"+8190{1000 + job:04d}{job:04d}")).msgid

    sent = parallel(app.extensions["portal.engine"], list(range(CLIENTS)), ask)
    bodies = dict(session.execute(select(Message.msgid, Message.body).where(Message.msgid.in_(sent))).all())

    def verify(db, job):
        otp.verify_code(session=db, principal=principal, secret=SECRET, now=clock() + timedelta(hours=job % 2, minutes=1),
                        request=otp.VerifyCode(otp_id=sent[job], code=re.search(r"\d{6}", bodies[sent[job]]).group(0)))

    parallel(app.extensions["portal.engine"], sent[: CLIENTS // 2], verify)
    session.expire_all()
    assert sum(verified for _, verified in tallied(session).values()) == CLIENTS // 2
    assert tallied(session) == counted_from_codes(session) and len(tallied(session)) == 2
