"""Rows for the usage tests: an account with a live and a test credential and an OTP site,
messages and calls written straight into their tables (the rollup follows through the
triggers), and the rollup as the rows say it must be."""

from collections import defaultdict
from datetime import date, datetime, timezone
from itertools import count

from sqlalchemy import insert, select

from portal import db
from portal.accounts.models import Membership
from portal.credentials import service as credentials
from portal.messaging.api_models import Call, Message
from portal.otp.models import OtpSite
from portal.usage import rules
from portal.usage.models import UsageDay
from portal.usage.rules import Filters
from tests.helpers import make_user

FIELDS = ("events", "segments", "seconds", "minutes", "cost")
JST = rules.JST
MESSAGES, CALLS = Message.__table__, Call.__table__
NOW = datetime(2026, 11, 27, 3, 0, tzinfo=timezone.utc)  # the suite's clock: 12:00 on 27 November in Japan
NOVEMBER = Filters(start=date(2026, 11, 1), end=date(2026, 11, 30))
_ids = count(1)


class World:
    def __init__(self, app, session, email="usage@example.com"):
        user = make_user(app, email=email)
        self.account_id = session.scalars(select(Membership.account_id).where(Membership.user_id == user.id)).one()
        session.commit()
        self.shop = self.credential(session, user.id, "Shop", "live")
        self.staging = self.credential(session, user.id, "Staging", "test")
        site = OtpSite(account_id=self.account_id, domain="example.jp", display_name="Example", ownership_token="t",
                       template_language="ja", template="{code}", created_at=NOW)
        session.add(site)
        session.commit()
        self.site = site.id

    def credential(self, session, user_id, name, mode):
        credential, _ = credentials.create(session=session, account_id=self.account_id, user_id=user_id, name=name,
                                           mode=mode, scopes=["sms", "voice", "otp"], networks=[], monthly_cap=None,
                                           now=NOW)
        return credential.id


def message(session, world, at, *, credential="shop", product="sms", status="DELIVERED", cost=3000, segments=1,
            tags="", country="JP", recipient="+819012345678", refunded=False, site=None, mode=None):
    credential_id = getattr(world, credential) if credential else None
    msgid = f"m{next(_ids):031d}"
    with db.write(session):
        session.execute(insert(MESSAGES).values(
            msgid=msgid, account_id=world.account_id, credential_id=credential_id,
            mode=mode or ("test" if credential == "staging" else "live"), product=product, otp_site_id=site,
            sender="Chotto", recipient=recipient, country=country, body="hello", encoding="GSM-7", segments=segments,
            cost=cost, status=status, tags=tags, refunded_at=at if refunded else None, created_at=at, updated_at=at))
    return msgid


def call(session, world, at, *, product="voice", status="ANSWERED", duration=61, cost=40_000, site=None, tags=""):
    callid = f"c{next(_ids):031d}"
    with db.write(session):
        session.execute(insert(CALLS).values(
            callid=callid, account_id=world.account_id, credential_id=world.shop, mode="live", product=product,
            otp_site_id=site, caller="0312345678", recipient="+819087654321", country="JP", unit_price=20_000,
            status=status, duration=duration, cost=cost, tags=tags, created_at=at, started_at=at, ended_at=at))
    return callid


def jst(*parts) -> datetime:
    return datetime(*parts, tzinfo=JST).astimezone(timezone.utc)


def rollup(session) -> dict:
    rows = session.execute(select(UsageDay)).scalars()
    return {key: value for key, value in (((row.account_id, row.day, row.product, row.credential_id, row.site_id,
                                            row.mode, row.status, row.country),
                                           tuple(getattr(row, name) for name in FIELDS)) for row in rows)
            if any(value)}


def from_rows(session) -> dict:
    """What the rollup must hold, computed in Python from the rows themselves."""
    sums = defaultdict(lambda: [0] * 5)
    for message in session.scalars(select(Message)):
        key = (message.account_id, rules.jst_day(message.created_at), message.product, message.credential_id or 0,
               message.otp_site_id or 0, message.mode, message.status, message.country)
        cost = 0 if message.refunded_at else message.cost
        for index, value in enumerate((1, message.segments, 0, 0, cost)):
            sums[key][index] += value
    for call in session.scalars(select(Call)):
        key = (call.account_id, rules.jst_day(call.created_at), call.product, call.credential_id or 0,
               call.otp_site_id or 0, call.mode, call.status, call.country)
        seconds = call.duration or 0
        for index, value in enumerate((1, 0, seconds, -(-seconds // 60), call.cost)):
            sums[key][index] += value
    return {key: tuple(value) for key, value in sums.items()}
