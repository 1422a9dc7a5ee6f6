"""A broken constraint is known by its name, the same on both engines (`db.violated_constraint`):
PostgreSQL names it, SQLite's message is mapped to the name from the table definitions."""

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from portal import db
from portal.ledger import service
from tests.helpers import new_account

COPY_LINE = """INSERT INTO credit_transactions
    (account_id, kind, amount, balance_after, held_after, idempotency_key, request_hash, reason, occurred_at)
    SELECT account_id, kind, amount, balance_after, held_after, idempotency_key, request_hash, reason, occurred_at
    FROM credit_transactions"""
COPY_LOT = """INSERT INTO credit_lots (account_id, kind, amount, remaining, issued_at, expires_at, source_ref)
    SELECT account_id, kind, amount, 0, issued_at, expires_at, source_ref FROM credit_lots"""


@pytest.mark.parametrize("statement, name", [
    (COPY_LINE, "uq_transaction_idempotency"),  # named
    (COPY_LOT, "credit_lots_source_ref_key"),  # unnamed: PostgreSQL's default name
    ("INSERT INTO credit_states SELECT * FROM credit_states", "credit_states_pkey"),
    ("INSERT INTO prices (product, country, unit_price) SELECT product, country, unit_price FROM prices", "uq_price"),
    ("UPDATE credit_states SET balance = -1", "balance_above_floor"),
    ("UPDATE credit_lots SET kind = 'gift'", "lot_kind"),
    ("UPDATE credit_lots SET source_ref = NULL", None),  # NOT NULL has no name
])
def test_a_broken_constraint_is_known_by_its_name_on_both_engines(session, clock, statement, name):
    account = new_account(session, clock())
    service.grant_purchase(session=session, account_id=account, amount=1000, paid_at=clock(), payment_ref="pi", now=clock())
    with pytest.raises(IntegrityError) as raised:
        session.execute(text(statement))
    session.rollback()
    assert db.violated_constraint(raised.value) == name
