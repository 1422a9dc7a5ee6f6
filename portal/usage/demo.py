"""`portal demo seed EMAIL --usage N`: N realistic messages and calls over the last 13 months for
demos and benchmarks — several credentials (one of them a test credential), two OTP sites,
every status, refunded failures, tags in English and Japanese, a few countries.

Demo rows are usage only: they are not booked in the ledger (the balance does not move, no
debit pretends to have happened), so `portal ledger check` still passes, and the account's
monthly usage statement will not match its credit statement. Never seed a real customer's
account (the command refuses in production).

Rows are written set-based in batches, each batch one transaction: PostgreSQL takes them by
COPY (the rollup triggers fire once per batch), SQLite by executemany."""

import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from psycopg import sql
from sqlalchemy import insert, select
from sqlmodel import Session

from portal import db
from portal.credentials import service as credentials
from portal.credentials.models import Credential
from portal.messaging.api_models import Call, Message, Price
from portal.otp.models import OtpSite
from portal.usage import rules

MESSAGES, CALLS = Message.__table__, Call.__table__
BATCH = 50_000
CREDENTIALS = (("Demo: web shop", "live"), ("Demo: order mails", "live"), ("Demo: staging", "test"))
SITES = (("shop.demo.example", "Demo Shop"), ("members.demo.example", "デモ会員サイト"))
TAGS = ("", "", "", "campaign", "order,confirm", "キャンペーン", "キャンペーン,冬", "reminder")
COUNTRIES = (("JP", "+8190", 90), ("US", "+1415", 4), ("SG", "+659", 3), ("KR", "+8210", 3))
FALLBACK_PRICES = {"sms": 8000, "otp": 3000, "voice": 20_000}


@dataclass(frozen=True)
class Seeded:
    rows: int
    credentials: list[int]
    sites: list[int]


def seed(session: Session, *, account_id: int, user_id: int, rows: int, now: datetime, seed: int = 0) -> Seeded:
    """Add `rows` demo messages and calls to the account (its demo credentials and sites are
    created the first time)."""
    live, test = _credentials(session, account_id, user_id, now)
    sites = _sites(session, account_id, now)
    prices = _prices(session)
    chance = random.Random(seed)
    prefix = secrets.token_hex(4)
    made = _Rows(chance, prefix, account_id, live, test, sites, prices, now)
    written = 0
    while written < rows:
        size = min(BATCH, rows - written)
        messages, calls = made.batch(written, size)
        with db.write(session):
            _write(session, MESSAGES, messages)
            _write(session, CALLS, calls)
        written += size
    return Seeded(written, live + test, sites)


def _credentials(session: Session, account_id: int, user_id: int, now: datetime) -> tuple[list[int], list[int]]:
    with db.read(session):
        existing = dict(session.execute(select(Credential.name, Credential.id)
                                        .where(Credential.account_id == account_id)).all())
    live, test = [], []
    for name, mode in CREDENTIALS:
        credential_id = existing.get(name)
        if credential_id is None:  # the token is not kept: demo credentials only label demo rows
            credential_id = credentials.create(session=session, account_id=account_id, user_id=user_id, name=name,
                                               mode=mode, scopes=["sms", "voice", "otp"], networks=[],
                                               monthly_cap=None, now=now)[0].id
        (live if mode == "live" else test).append(credential_id)
    return live, test


def _sites(session: Session, account_id: int, now: datetime) -> list[int]:
    with db.write(session):
        existing = dict(session.execute(select(OtpSite.domain, OtpSite.id).where(OtpSite.account_id == account_id)).all())
        for domain, name in SITES:
            if domain not in existing:
                site = OtpSite(account_id=account_id, domain=domain, display_name=name,
                               ownership_token=secrets.token_hex(16), template_language="ja",
                               template="{site}の確認コードは{code}です", created_at=now)
                session.add(site)
                session.flush()
                existing[domain] = site.id
        return [existing[domain] for domain, _ in SITES]


def _prices(session: Session) -> dict[tuple[str, str], int]:
    with db.read(session):
        return {(row.product, row.country): row.unit_price
                for row in session.execute(select(Price.product, Price.country, Price.unit_price))}


class _Rows:
    """The random rows: the same seed gives the same rows (but new ids)."""

    def __init__(self, chance, prefix, account_id, live, test, sites, prices, now):
        self.chance, self.prefix, self.account_id = chance, prefix, account_id
        self.live, self.test, self.sites, self.prices, self.now = live, test, sites, prices, now
        self.span = int((now - rules.purge_before(now)).total_seconds()) - 3600
        self.countries = [country for country in COUNTRIES for _ in range(country[2])]

    def batch(self, first: int, size: int) -> tuple[list[dict], list[dict]]:
        messages, calls = [], []
        for number in range(first, first + size):
            row = self.row(number)
            (messages if "msgid" in row else calls).append(row)
        return messages, calls

    def row(self, number: int) -> dict:
        chance = self.chance
        at = self.now - timedelta(seconds=int(self.span * chance.random() ** 1.3), microseconds=chance.randrange(10**6))
        product = chance.choices(("sms", "otp", "voice", "otp_call"), (55, 30, 10, 5))[0]
        test = chance.random() < 0.08
        credential = chance.choice(self.test if test else self.live)
        site = chance.choice(self.sites) if product in ("otp", "otp_call") else None
        country, prefix, _ = chance.choice(self.countries)
        common = dict(account_id=self.account_id, credential_id=credential, mode="test" if test else "live",
                      product=product, otp_site_id=site, recipient=f"{prefix}{chance.randrange(10**7, 10**8)}",
                      country=country, tags="" if site else chance.choice(TAGS), created_at=at)
        ref = f"{self.prefix}{number:024x}"
        recent = self.now - at < timedelta(minutes=5)
        if product in ("sms", "otp"):
            return common | self._message(ref, product, country, test, recent, at)
        return common | self._call(ref, country, test, at)

    def _message(self, ref, product, country, test, recent, at) -> dict:
        chance = self.chance
        segments = chance.choices((1, 2, 3), (80, 15, 5))[0] if product == "sms" else 1
        unit = self.prices.get((product, country), FALLBACK_PRICES[product])
        cost = 0 if test else unit * (segments if product == "sms" else 1)
        status = chance.choices(("DELIVERED", "FAIL", "DELIVERING", "QUEUED"),
                                (93, 5, 2, 2 if recent else 0))[0]
        refunded = at + timedelta(seconds=5) if status == "FAIL" and cost else None
        handed = None if status == "QUEUED" else at + timedelta(seconds=1)
        return dict(msgid=ref, sender="Chotto", body="デモメッセージ / demo message", encoding="UCS-2",
                    segments=segments, cost=cost, status=status, refunded_at=refunded, handed_at=handed,
                    updated_at=at + timedelta(seconds=3))

    def _call(self, ref, country, test, at) -> dict:
        chance = self.chance
        unit = self.prices.get(("voice", country), FALLBACK_PRICES["voice"])
        answered = chance.random() < 0.85
        duration = chance.randrange(5, 300) if answered else 0
        cost = 0 if test else unit * -(-duration // 60)
        return dict(callid=ref, caller="0312345678", tts_message="デモ / demo", tts_lang="ja", unit_price=unit,
                    status="ANSWERED" if answered else "FAILED", duration=duration, cost=cost,
                    started_at=at + timedelta(seconds=2), ended_at=at + timedelta(seconds=2 + duration))


def _write(session: Session, table, rows: list[dict]) -> None:
    if not rows:
        return
    if session.get_bind().dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    columns = list(rows[0])
    copy = sql.SQL("COPY {} ({}) FROM STDIN").format(sql.Identifier(table.name),
                                                      sql.SQL(", ").join(map(sql.Identifier, columns)))
    connection = session.connection().connection.driver_connection
    with connection.cursor() as cursor, cursor.copy(copy) as writer:
        for row in rows:
            writer.write_row([row[column] for column in columns])
