"""The OTP API end to end through the test client: register a website, request a code, verify
it; each SMS charged ¥3 through the ledger (a failed one refunded), test credentials landing in
the test inbox, and every fraud guard recorded with its reason. The clock is fixed."""

import re
from datetime import timedelta

import pytest
from sqlalchemy import delete, func, select, update

from portal.ledger.check import check
from portal.messaging.api_models import Message
from portal.messaging.models import TestInboxMessage
from portal.otp import service as otp
from portal.otp.models import BlockReason, CodeStatus, OtpBlocked, OtpCode, OtpSite, OtpTally
from tests.api.conftest import YEN, fund, new_key
from tests.api.test_sms import RefusingCarrier, available
from tests.helpers import db_session, deliver_outbox, mails_to

SITE = "https://shop.example.com/login"
OWN = "+819011112222"  # the customer's verified mobile number (tests.api.conftest.customer)
OTHER = "+819012345678"


def post(api, key, path, **data):
    return api.post(path, data=data, headers=key.headers)


def register(api, key, website=SITE):
    return post(api, key, "/otp/register-website/", website=website)


def prove(app, key, domain="shop.example.com"):
    with db_session(app) as session:
        site = session.scalars(select(OtpSite).where(OtpSite.domain == domain)).one()
        otp.mark_proven(session=session, account_id=key.account_id, site_id=site.id, proven=True,
                        now=app.config["CLOCK"]())
        return site.id


def settle(app, key, **settings):
    from dataclasses import replace

    from portal.otp import rules

    with db_session(app) as session:
        site = session.scalars(select(OtpSite)).one()
        current = rules.Settings(**{name: getattr(site, name) for name in rules.Settings.__dataclass_fields__
                                    if name != "allowed_countries"}, allowed_countries=site.countries)
        otp.update_settings(session=session, account_id=key.account_id, site_id=site.id,
                            settings=replace(current, **settings), now=app.config["CLOCK"]())


def ask(api, key, number=OTHER, **extra):
    return post(api, key, "/otp/request/", website="shop.example.com", phone_number=number, **extra)


def check_code(api, key, code, number=OTHER, **extra):
    return post(api, key, "/otp/verify/", website="shop.example.com", phone_number=number, code=code, **extra)


def last_code(app) -> str:
    """The code of the last SMS, as the end user reads it on the phone (the test inbox)."""
    deliver_outbox(app)
    with db_session(app) as session:
        body = session.scalars(select(TestInboxMessage.body).order_by(TestInboxMessage.id.desc())).first()
    return re.search(r"(\d{4,8})", body).group(1)


def blocked(app) -> list[BlockReason]:
    with db_session(app) as session:
        return list(session.scalars(select(OtpBlocked.reason).order_by(OtpBlocked.id)))


def counted_from_codes(session) -> dict:
    """What otp_tallies must hold: the live codes sent and verified, by site and UTC hour sent."""
    counted = {}
    for code in session.scalars(select(OtpCode).where(OtpCode.mode == "live")):
        key = (code.site_id, code.created_at.replace(minute=0, second=0, microsecond=0))
        sent, verified = counted.get(key, (0, 0))
        counted[key] = (sent + 1, verified + (code.status == CodeStatus.VERIFIED))
    return counted


def tallied(session) -> dict:
    return {(t.site_id, t.hour): (t.sent, t.verified) for t in session.scalars(select(OtpTally)) if t.sent}


@pytest.fixture
def site(app, api, key):
    assert register(api, key).status_code == 201
    return prove(app, key)


def test_registering_a_website_answers_as_xoxzo_and_once_per_domain(app, api, key):
    first = register(api, key)
    assert first.status_code == 201, first.json
    assert first.json["message"] == "Website registered successfully." and first.json["website"] == "shop.example.com"
    assert first.json["verification_url"] == "http://shop.example.com/.well-known/chotto-verification.txt"
    again = register(api, key, "shop.example.com")
    assert again.status_code == 400 and again.json == {"website": ["A website with this domain already exists."]}
    assert register(api, key, "not a website").status_code == 400


def test_a_live_code_is_sent_charged_3_yen_and_verified_once(app, api, key, site):
    before = available(app, key.account_id)
    sent = ask(api, key)
    assert sent.status_code == 201, sent.json
    assert sent.json["msgid"] == sent.json["otp_id"]
    assert available(app, key.account_id) == before - 3 * YEN
    code = last_code(app)
    with db_session(app) as session:
        stored = session.scalars(select(OtpCode)).one()
        message = session.scalars(select(Message)).one()
    assert code not in stored.code_hash and message.cost == 3 * YEN and message.msgid == sent.json["msgid"]
    assert "shop.example.com" in message.body and "5" in message.body
    wrong = check_code(api, key, "0" * 6 if code != "0" * 6 else "1" * 6)
    assert wrong.status_code == 400 and wrong.json["reason"] == "wrong" and wrong.json["attempts_left"] == 4
    right = check_code(api, key, code)
    assert right.status_code == 200 and right.json["verified"] is True and right.json["otp_id"] == sent.json["otp_id"]
    again = check_code(api, key, code)
    assert again.status_code == 400 and again.json["reason"] == "already_used"
    assert api.get(f"/sms/messages/{sent.json['msgid']}", headers=key.headers).json["cost"] == 3.0


def test_verifying_by_otp_id_or_msgid(app, api, key, site):
    otp_id = ask(api, key).json["otp_id"]
    code = last_code(app)
    assert post(api, key, "/otp/verify/", otp_id="nope", code=code).json["reason"] == "no_active_code"
    assert post(api, key, "/otp/verify/", msgid=otp_id, code=code).status_code == 200


def test_a_test_credential_lands_in_the_test_inbox_and_charges_nothing(app, api, customer):
    user, account_id = customer
    fund(app, account_id, 100)
    test_key = new_key(app, account_id, user.id, mode="test")
    assert register(api, test_key).status_code == 201
    before = available(app, account_id)
    sent = ask(api, test_key, OWN)  # an unproven site sends to the account's own numbers
    assert sent.status_code == 201, sent.json
    code = last_code(app)
    with db_session(app) as session:
        inbox = session.scalars(select(TestInboxMessage)).one()
    assert inbox.recipient == OWN and code in inbox.body and available(app, account_id) == before
    assert check_code(api, test_key, code, OWN).status_code == 200


def test_a_code_expires_with_its_lifetime(app, api, key, site, clock):
    ask(api, key)
    code = last_code(app)
    clock.advance(minutes=5)
    expired = check_code(api, key, code)
    assert expired.status_code == 400 and expired.json["reason"] == "expired"
    assert expired.json["code"] == ["The code has expired. Request a new one."]


def test_the_code_is_dead_after_its_attempts_even_for_the_right_code(app, api, key, site):
    ask(api, key)
    code = last_code(app)
    wrong = str((int(code) + 1) % 10**6).zfill(6)
    lefts = [check_code(api, key, wrong).json["attempts_left"] for _ in range(5)]
    assert lefts == [4, 3, 2, 1, 0]
    sixth = check_code(api, key, code)
    assert sixth.status_code == 400 and sixth.json["reason"] == "too_many_attempts"


def test_a_new_request_replaces_the_code_but_not_the_failure_count(app, api, key, site, clock):
    ask(api, key)
    first = last_code(app)
    wrong = "999999" if first != "999999" else "888888"
    for _ in range(3):
        check_code(api, key, wrong)
    clock.advance(seconds=30)
    assert ask(api, key).status_code == 201
    second = last_code(app)
    assert check_code(api, key, first).json["reason"] in ("wrong", "already_used") or first == second
    assert check_code(api, key, wrong).json == {"code": ["The code is wrong."], "reason": "wrong", "attempts_left": 0}
    assert check_code(api, key, second).json["reason"] == "too_many_attempts"
    clock.advance(seconds=30)
    locked = ask(api, key)
    assert locked.status_code == 429 and locked.json["reason"] == "number_locked"
    with db_session(app) as session:
        assert session.scalar(select(func.count()).where(OtpCode.status == CodeStatus.ACTIVE)) == 0


def test_the_resend_cooldown_answers_429_with_retry_after(app, api, key, site, clock):
    assert ask(api, key).status_code == 201
    clock.advance(seconds=10)
    again = ask(api, key)
    assert again.status_code == 429 and again.headers["Retry-After"] == "20"
    assert blocked(app) == []  # pacing, not fraud


def test_an_unproven_site_sends_only_to_the_accounts_verified_numbers(app, api, key):
    register(api, key)
    refused = ask(api, key, OTHER)
    assert refused.status_code == 400 and refused.json["reason"] == "unproven_site"
    assert ask(api, key, OWN).status_code == 201
    assert blocked(app) == [BlockReason.UNPROVEN]


def test_a_country_the_site_does_not_allow_is_blocked(app, api, key, site):
    refused = ask(api, key, "+14155552671")
    assert refused.status_code == 400 and refused.json["reason"] == "country_not_allowed"
    assert blocked(app) == [BlockReason.COUNTRY]


def test_more_than_five_sends_to_a_number_in_ten_minutes_are_blocked(app, api, key, site, clock):
    answers = []
    for _ in range(7):
        answers.append(ask(api, key).status_code)
        clock.advance(seconds=31)
    assert answers == [201] * 5 + [429] * 2 and blocked(app) == [BlockReason.NUMBER_LIMIT] * 2


def test_the_per_ip_limit(app, api, key, site):
    settle(app, key, per_ip_limit=3)
    answers = [ask(api, key, f"+8190{n + 1000:04d}1234", ip="203.0.113.9").status_code for n in range(5)]
    assert answers == [201] * 3 + [429] * 2 and blocked(app) == [BlockReason.IP_LIMIT] * 2
    assert ask(api, key, "+819099990000", ip="203.0.113.10").status_code == 201
    assert ask(api, key, "+819099990001", ip="not an ip").json == {"ip": ["Enter the end user's IPv4 or IPv6 address."]}


def test_a_hundred_requests_to_numbers_sharing_a_prefix_send_at_most_twenty(app, api, key, site):
    answers = [ask(api, key, f"+81901234{n:04d}") for n in range(100)]
    assert sum(a.status_code == 201 for a in answers) == 20
    assert {a.json["reason"] for a in answers if a.status_code != 201} == {"prefix_limit"}
    assert blocked(app) == [BlockReason.PREFIX_LIMIT] * 80
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(Message)) == 20


def test_two_hundred_requests_without_verification_pause_the_site_until_an_owner_resumes_it(app, api, key, site,
                                                                                          clock, customer):
    fund(app, key.account_id, 1000, ref="more")
    answers = []
    for n in range(200):
        answers.append(ask(api, key, f"+8190{n + 1000:04d}5678").status_code)
        clock.advance(minutes=1)
    assert 403 in answers
    paused_at = answers.index(403)
    assert 50 <= paused_at <= 60 and set(answers[paused_at:]) == {403}
    [told] = [m for m in mails_to(app, "dev@example.com") if "paused" in m.subject]  # the owner, once
    assert told.subject == "[Chotto] OTP site shop.example.com is paused" and "SMS pumping" in told.text_body
    with db_session(app) as session:
        assert session.get(OtpSite, site).paused_at is not None
        user, _ = customer
        otp.resume_site(session=session, account_id=key.account_id, site_id=site, user_id=user.id, now=clock())
    assert ask(api, key, "+819011110000").status_code == 201


def test_the_pause_comes_exactly_when_a_day_of_codes_falls_below_a_fifth_verified(app, api, key, site, clock):
    """A quarter of the codes verified for two hours: the hourly tallies settle the rate (no
    pause); then none verified: the pause comes at the very request where the codes, counted
    one by one (verified, locked, or past their five minutes), fall below a fifth verified."""
    from portal.otp import rules

    fund(app, key.account_id, 1000, ref="more")
    start, created, answers = clock(), [], []
    for n in range(200):
        now = clock()
        decided = [verified for at, verified in created if verified or at + timedelta(minutes=5) <= now]
        if rules.should_pause(len(decided), sum(decided)):
            break
        answers.append(ask(api, key, f"+8190{n + 1000:04d}5678").status_code)
        verify = n < 120 and n % 4 == 0
        if verify:
            assert check_code(api, key, last_code(app), f"+8190{n + 1000:04d}5678").status_code == 200
        created.append((now, verify))
        clock.advance(minutes=1)
    assert answers == [201] * len(answers) and len(answers) > 120
    assert ask(api, key, "+819011110000").status_code == 403
    with db_session(app) as session:
        assert session.get(OtpSite, site).paused_at == clock()
        assert tallied(session) == counted_from_codes(session) and len(tallied(session)) >= 2
        session.execute(delete(OtpCode).where(OtpCode.created_at < start + timedelta(minutes=30)))  # as a purge
        session.execute(update(OtpCode).where(OtpCode.status == CodeStatus.VERIFIED).values(status=CodeStatus.LOCKED))
        session.commit()
        assert tallied(session) == counted_from_codes(session)


def test_a_code_never_delivered_is_refunded(app, api, key, site):
    before = available(app, key.account_id)
    ask(api, key)
    app.extensions["portal.carrier"] = RefusingCarrier()
    deliver_outbox(app)
    assert available(app, key.account_id) == before
    with db_session(app) as session:
        assert check(session, now=app.config["CLOCK"]())[0] == []


def test_without_the_otp_scope_the_api_answers_403(app, api, customer):
    user, account_id = customer
    sms_only = new_key(app, account_id, user.id, scopes=("sms",))
    for path in ("/otp/register-website/", "/otp/request/", "/otp/verify/"):
        answer = api.post(path, data={"website": SITE, "phone_number": OWN, "code": "123456"}, headers=sms_only.headers)
        assert answer.status_code == 403 and answer.json == {"detail": "This credential does not have the otp scope."}


def test_missing_fields_are_named(app, api, key, site):
    assert post(api, key, "/otp/request/").json == {"website": ["This field is required."],
                                                    "phone_number": ["This field is required."]}
    assert post(api, key, "/otp/verify/", website="shop.example.com").json == {
        "code": ["This field is required."], "phone_number": ["This field is required."]}
    assert ask(api, key, channel="fax").json == {"channel": ["Use sms or voice."]}
    assert post(api, key, "/otp/request/", website="other.example.com", phone_number=OTHER).json == {
        "website": ["No website with this domain is registered for this account."]}


def test_insufficient_credit_answers_402(app, api, customer):
    user, account_id = customer
    poor = new_key(app, account_id, user.id)
    register(api, poor)
    prove(app, poor)
    with db_session(app) as session:
        from portal.ledger.models import CreditState

        session.get(CreditState, account_id).has_purchased = True
        session.commit()
    for n in range(16):  # the ¥50 trial pays 16 codes
        assert ask(api, poor, f"+81901{n:02d}45678").status_code == 201
    assert ask(api, poor, "+819099945678").status_code == 402


# -- the voice fallback -----------------------------------------------------------------------------


def calls(app) -> list[TestInboxMessage]:
    deliver_outbox(app)
    with db_session(app) as session:
        return list(session.scalars(select(TestInboxMessage).where(TestInboxMessage.channel == "voice")))


def test_no_verification_within_n_seconds_brings_one_call_reading_the_code(app, api, key, site, clock):
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=60)
    before = available(app, key.account_id)
    ask(api, key)
    code = last_code(app)
    clock.advance(seconds=59)
    assert calls(app) == []
    clock.advance(seconds=1)
    [call] = calls(app)
    assert call.recipient == OTHER and "、".join(code) in call.body and call.body.count("、".join(code)) == 2
    clock.advance(seconds=60)
    assert len(calls(app)) == 1  # one call per code
    with db_session(app) as session:
        from portal.messaging.api_models import Call

        placed = session.scalars(select(Call)).one()
        stored = session.scalars(select(OtpCode)).one()
    assert placed.cost == 10 * YEN and stored.fallback_callid == placed.callid and stored.fallback_text is None
    assert available(app, key.account_id) == before - 3 * YEN - 10 * YEN  # the SMS, then a started minute
    assert check_code(api, key, code).status_code == 200


def test_a_verification_before_n_seconds_means_no_call(app, api, key, site, clock):
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=60)
    ask(api, key)
    clock.advance(seconds=30)
    assert check_code(api, key, last_code(app)).status_code == 200
    clock.advance(seconds=60)
    assert calls(app) == []


def test_a_failed_sms_brings_the_call_at_once_and_is_refunded(app, api, key, site, clock):
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.ON_FAILURE, fallback_language="en")
    before = available(app, key.account_id)
    ask(api, key)
    app.extensions["portal.carrier"] = RefusingCarrier()  # refuses SMS, places calls
    [call] = calls(app)
    assert call.body.startswith("TTS (en): Your shop.example.com code is ")
    assert available(app, key.account_id) == before - 10 * YEN  # the SMS refunded, the call paid


def test_a_replaced_code_is_never_called(app, api, key, site, clock):
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=60)
    ask(api, key)
    clock.advance(seconds=30)
    ask(api, key)
    second = last_code(app)
    clock.advance(seconds=30)
    assert calls(app) == []  # the first code's call is cancelled with it
    clock.advance(seconds=30)
    [call] = calls(app)
    assert "、".join(second) in call.body


def test_the_call_must_come_before_the_code_expires(app, key, site):
    from portal.messaging.errors import InvalidFields
    from portal.otp.models import Fallback

    with pytest.raises(InvalidFields) as refused:
        settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=300, lifetime_minutes=5)
    assert refused.value.errors == {"fallback_seconds": ["The call must come before the code expires."]}


def test_an_unknown_carrier_outcome_neither_calls_nor_refunds_and_charges_once(app, api, key, site, clock):
    from portal.otp.models import Fallback
    from tests.api.test_sms import FlakyCarrier

    settle(app, key, fallback=Fallback.ON_FAILURE)
    before = available(app, key.account_id)
    sent = ask(api, key)
    flaky = app.extensions["portal.carrier"] = FlakyCarrier()  # a timeout: not a failure (R12)
    assert calls(app) == []
    clock.advance(minutes=5)
    assert calls(app) == []
    status = api.get(f"/sms/messages/{sent.json['msgid']}", headers=key.headers).json["status"]
    assert status == "DELIVERED" and flaky.calls == 2 and available(app, key.account_id) == before - 3 * YEN


def test_verify_and_request_are_rate_limited_per_credential_with_retry_after(database_url, clock, customer):
    from tests.conftest import make_app

    limited = make_app(database_url, CLOCK=clock, RATELIMIT_ENABLED=True, API_SEND_RATE_LIMIT="3 per minute")
    try:
        user, account_id = customer
        fund(limited, account_id, 100)
        limited_key = new_key(limited, account_id, user.id)
        client = limited.test_client()
        answers = [check_code(client, limited_key, "123456", OWN) for _ in range(5)]
        assert [a.status_code for a in answers] == [400, 400, 400, 429, 429]  # S27: the count is exact
        assert int(answers[-1].headers["Retry-After"]) >= 1
        assert ask(client, limited_key, OWN).status_code == 400  # answered (no such site), not throttled: per route
    finally:
        limited.extensions["portal.engine"].dispose()


def test_a_retry_with_the_same_idempotency_key_gets_the_first_answer_and_sends_once(app, api, key, site, clock):
    before = available(app, key.account_id)
    headers = key.headers | {"Idempotency-Key": "login-42"}
    data = {"website": "shop.example.com", "phone_number": OTHER}
    first = api.post("/otp/request/", data=data, headers=headers)
    clock.advance(seconds=5)  # inside the cooldown: without the key, a 429
    again = api.post("/otp/request/", data=data, headers=headers)
    assert (again.status_code, again.data) == (first.status_code, first.data) and first.status_code == 201
    assert available(app, key.account_id) == before - 3 * YEN
    with db_session(app) as session:
        assert session.scalar(select(func.count()).select_from(OtpCode)) == 1
    other = api.post("/otp/request/", data=data | {"phone_number": OWN}, headers=headers)
    assert other.status_code == 422
    bad = api.post("/otp/request/", data=data, headers=key.headers | {"Idempotency-Key": " "})
    assert bad.json == {"Idempotency-Key": ["Use 1 to 255 characters."]}


def test_a_blocked_request_keeps_nothing_under_its_key(app, api, key, site, clock):
    headers = key.headers | {"Idempotency-Key": "us-1"}
    data = {"website": "shop.example.com", "phone_number": "+14155552671"}
    assert api.post("/otp/request/", data=data, headers=headers).status_code == 400
    settle(app, key, allowed_countries=("JP", "US"))
    with db_session(app) as session:
        from sqlalchemy import update

        from portal.accounts.models import Account

        session.execute(update(Account).where(Account.id == key.account_id).values(allowed_countries="JP,US"))
        session.commit()
    retried = api.post("/otp/request/", data=data, headers=headers)  # decided afresh, not replayed
    assert retried.status_code == 400 and retried.json == {"phone_number": ["Sending to US is not available."]}


def test_the_log_and_the_statistics_count_each_request(app, api, key, site, clock, customer):
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=60)
    ask(api, key)
    check_code(api, key, last_code(app))
    ask(api, key, "+819033334444")
    clock.advance(seconds=60)
    calls(app)
    ask(api, key, "+14155552671")  # blocked
    with db_session(app) as session:
        log = otp.log_of(session=session, account_id=key.account_id, site_id=site, now=clock())
        [day] = otp.statistics_of(session=session, account_id=key.account_id, site_id=site, now=clock())
    assert [(line.status, line.channel, line.cost) for line in log] == [
        ("blocked", "sms", 0), ("delivered", "sms+voice", 13 * YEN), ("verified", "sms", 3 * YEN)]
    assert log[0].reason == BlockReason.COUNTRY
    assert (day.requests, day.blocked, day.delivered, day.verified, day.completion_percent, day.fallback_calls,
            day.cost) == (2, 1, 2, 1, 50, 1, 16 * YEN)


# -- events posted to the site's callback URL -------------------------------------------------------


def test_each_event_is_posted_signed_to_the_sites_callback_url_once(app, api, key, site, clock):
    import json

    from portal.otp.models import Fallback
    from tests.api.test_callbacks import secrets_of
    from tests.hooks import HookServer, signed_by

    with HookServer() as hook:
        settle(app, key, callback_url=f"http://127.0.0.1:{hook.port}/otp-events", fallback=Fallback.AFTER_DELAY,
               fallback_seconds=60)
        otp_id = ask(api, key).json["otp_id"]
        code = last_code(app)
        clock.advance(seconds=60)
        deliver_outbox(app)  # the fallback call
        assert check_code(api, key, code).status_code == 200
        ask(api, key, "+14155552671")
        deliver_outbox(app)
        deliver_outbox(app)  # a second run reports nothing again
    events = [json.loads(received.body) for received in hook.received]
    assert [event["event"] for event in events] == ["sent", "delivered", "fallback_called", "verified", "blocked"]
    assert {event["otp_id"] for event in events[:4]} == {otp_id} and events[4]["reason"] == "country_not_allowed"
    assert events[0] == {"event": "sent", "website": "shop.example.com", "otp_id": otp_id, "phone_number": OTHER,
                         "time": "2026-11-27T12:00:00+09:00"}
    (secret,) = secrets_of(app, key.sid)
    assert all(signed_by(received, secret.secret) for received in hook.received)
    assert all(received.path == "/otp-events" for received in hook.received)


def test_a_failed_sms_is_reported_once_as_failed(app, api, key, site):
    import json

    from tests.hooks import HookServer

    with HookServer() as hook:
        settle(app, key, callback_url=f"http://127.0.0.1:{hook.port}/e")
        ask(api, key)
        app.extensions["portal.carrier"] = RefusingCarrier()
        deliver_outbox(app)
    assert [json.loads(received.body)["event"] for received in hook.received] == ["sent", "failed"]


def test_a_callback_url_must_be_http_or_https(app, key, site):
    from portal.messaging.errors import InvalidFields

    with pytest.raises(InvalidFields) as refused:
        settle(app, key, callback_url="ftp://example.com/x")
    assert refused.value.errors == {"callback_url": ["Enter an http:// or https:// address."]}


def test_a_code_by_voice_call_is_read_out_and_priced_as_a_call(app, api, key, site, clock):
    before = available(app, key.account_id)
    sent = ask(api, key, channel="voice")
    assert sent.status_code == 201, sent.json
    [call] = calls(app)
    with db_session(app) as session:
        from portal.messaging.api_models import Call

        placed = session.scalars(select(Call)).one()
        assert session.scalar(select(func.count()).select_from(Message)) == 0
    assert placed.callid == sent.json["otp_id"] and placed.caller == app.config["OTP_CALLER"]
    code = re.search(r"認証コードをお知らせします。([\d、]+)。", call.body).group(1).replace("、", "")
    assert available(app, key.account_id) == before - 10 * YEN
    assert check_code(api, key, code).status_code == 200
    with db_session(app) as session:
        [line] = otp.log_of(session=session, account_id=key.account_id, site_id=site, now=clock())
    assert (line.channel, line.status, line.cost) == ("voice", "verified", 10 * YEN)


def test_a_credential_limited_to_some_sites_may_not_use_the_others(app, api, key, site, customer):
    user, account_id = customer
    assert register(api, key, "https://blog.example.com").status_code == 201
    prove(app, key, "blog.example.com")
    shop_only = new_key(app, account_id, user.id, name="shop only")
    with db_session(app) as session:
        from portal.credentials.models import Credential

        credential_id = session.scalars(select(Credential.id).where(Credential.sid == shop_only.sid)).one()
        otp.limit_credential(session=session, account_id=account_id, user_id=user.id, credential_id=credential_id,
                             site_ids=[site], now=app.config["CLOCK"]())
        assert otp.sites_of_credential(session=session, account_id=account_id, credential_id=credential_id) == [site]
    assert ask(api, shop_only).status_code == 201
    refused = post(api, shop_only, "/otp/request/", website="blog.example.com", phone_number=OTHER)
    assert refused.status_code == 403
    assert refused.json == {"detail": "This credential may not be used for this website."}
    blog_id = post(api, key, "/otp/request/", website="blog.example.com", phone_number=OTHER).json["otp_id"]
    assert post(api, shop_only, "/otp/verify/", otp_id=blog_id, code="123456").status_code == 403
    with db_session(app) as session:
        otp.limit_credential(session=session, account_id=account_id, user_id=user.id, credential_id=credential_id,
                             site_ids=[], now=app.config["CLOCK"]())
    assert post(api, shop_only, "/otp/verify/", otp_id=blog_id, code="123456").status_code == 400  # checked now


# -- an owner lifts a block -----------------------------------------------------------------------


def lift_last(app, key, customer, clock, reason):
    user, _ = customer
    with db_session(app) as session:
        block = session.scalars(select(OtpBlocked).where(OtpBlocked.reason == reason)
                                .order_by(OtpBlocked.id.desc())).first()
        return otp.lift_block(session=session, account_id=key.account_id, block_id=block.id, user_id=user.id,
                              now=clock())


def test_lifting_a_number_limit_lets_the_number_get_codes_again(app, api, key, site, clock, customer):
    for _ in range(5):
        assert ask(api, key).status_code == 201
        clock.advance(seconds=31)
    assert ask(api, key).json["reason"] == "number_limit"
    lift_last(app, key, customer, clock, BlockReason.NUMBER_LIMIT)
    assert ask(api, key).status_code == 201
    clock.advance(seconds=31)
    assert ask(api, key).status_code == 201  # counted afresh from the lift


def test_lifting_a_locked_number_gives_the_next_code_all_its_attempts(app, api, key, site, clock, customer):
    ask(api, key)
    wrong = "000000" if last_code(app) != "000000" else "111111"
    for _ in range(5):
        check_code(api, key, wrong)
    clock.advance(seconds=31)
    assert ask(api, key).json["reason"] == "number_locked"
    lift_last(app, key, customer, clock, BlockReason.LOCKED)
    assert ask(api, key).status_code == 201
    assert check_code(api, key, wrong).json["attempts_left"] == 4


def test_lifting_a_prefix_limit_and_a_pause_and_what_cannot_be_lifted(app, api, key, site, clock, customer):
    from portal.otp.errors import NotLiftable

    answers = [ask(api, key, f"+81901234{n:04d}").status_code for n in range(21)]
    assert answers[-1] == 429
    lift_last(app, key, customer, clock, BlockReason.PREFIX_LIMIT)
    assert ask(api, key, "+819012349999").status_code == 201
    ask(api, key, "+14155552671")
    with pytest.raises(NotLiftable):
        lift_last(app, key, customer, clock, BlockReason.COUNTRY)
    with db_session(app) as session:
        session.get(OtpSite, site).paused_at = clock()
        session.commit()
    assert ask(api, key, "+819055556666").status_code == 403
    lift_last(app, key, customer, clock, BlockReason.PAUSED)
    assert ask(api, key, "+819055556666").status_code == 201


def test_a_registration_racing_another_for_the_same_domain_is_refused_by_the_constraint(app, api, key, monkeypatch):
    from portal.otp import sites
    from portal.otp.errors import SiteExists

    assert register(api, key).status_code == 201
    monkeypatch.setattr(sites, "_domain_taken", lambda *args: False)  # as if checked before the other committed
    with db_session(app) as session, pytest.raises(SiteExists):
        otp.register_site(session=session, account_id=key.account_id, website=SITE, now=app.config["CLOCK"]())


def test_once_handed_over_a_code_is_readable_nowhere_but_the_phone(app, api, key, site, clock):
    from portal.messaging.api_models import Call
    from portal.otp.models import Fallback

    settle(app, key, fallback=Fallback.AFTER_DELAY, fallback_seconds=60)
    ask(api, key)
    sms_code = last_code(app)
    clock.advance(seconds=60)
    calls(app)
    clock.advance(seconds=30)
    ask(api, key, channel="voice")
    calls(app)
    with db_session(app) as session:
        [message] = session.scalars(select(Message)).all()
        placed = session.scalars(select(Call).order_by(Call.id)).all()
        stored = session.scalars(select(OtpCode).order_by(OtpCode.id)).all()
    assert message.body == "shop.example.comの認証コードは******です。5分以内に入力してください。"
    assert [call.tts_message for call in placed] == ["shop.example.comの認証コードをお知らせします。*、*、*、*、*、*。"
                                                     "繰り返します。*、*、*、*、*、*。"] * 2
    assert all(code.fallback_text is None for code in stored)
    assert all(sms_code not in str(value) for code in stored for value in code.model_dump().values())
