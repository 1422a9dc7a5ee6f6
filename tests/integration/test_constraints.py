"""portal.db.violated_constraint names the constraint an IntegrityError broke, the same on
SQLite and PostgreSQL, so services tell an expected clash from any other by its name."""

from datetime import timedelta

import pytest
from sqlalchemy import insert
from sqlalchemy.exc import IntegrityError

from portal import db
from portal.accounts.models import EMAIL_TAKEN, PHONE_TAKEN, Account, Membership, User
from portal.billing.models import EVENT_SEEN, DocumentCounter, WebhookEvent

from tests.helpers import new_account


def clash(session, table, *rows) -> IntegrityError:
    with pytest.raises(IntegrityError) as raised:
        with db.write(session):
            for row in rows:
                session.execute(insert(table.__table__).values(**row))
    return raised.value


def login(email: str, now, **more) -> dict:
    return {"email": email, "name": "n", "password_hash": "-", "language": "ja", "created_at": now,
            "password_changed_at": now} | more


def test_an_unnamed_unique_column_goes_by_the_name_postgresql_gave_it(session, clock):
    now = clock()
    error = clash(session, User, login("a@example.com", now), login("a@example.com", now))
    assert db.violated_constraint(error) == EMAIL_TAKEN == "users_email_key"
    error = clash(session, WebhookEvent, *[{"event_id": "evt_1", "type": "x", "received_at": now}] * 2)
    assert db.violated_constraint(error) == EVENT_SEEN


def test_a_partial_unique_index_goes_by_its_name(session, clock):
    now = clock()
    verified = {"phone_e164": "+819012345678", "phone_verified_at": now}
    error = clash(session, User, login("a@example.com", now, **verified), login("b@example.com", now, **verified))
    assert db.violated_constraint(error) == PHONE_TAKEN


def test_a_named_unique_constraint_of_two_columns_goes_by_its_name(session, clock):
    now = clock()
    account_id = new_account(session, now)
    with db.write(session):
        user_id = session.execute(insert(User.__table__).values(**login("a@example.com", now))).inserted_primary_key[0]
    member = {"account_id": account_id, "user_id": user_id, "role": "owner", "created_at": now}
    assert db.violated_constraint(clash(session, Membership, member, member)) == "uq_membership"


def test_a_primary_key_and_a_check_constraint_go_by_their_names(session, clock):
    counter = {"series": "INV", "last_number": 1}
    assert db.violated_constraint(clash(session, DocumentCounter, counter, counter)) == "document_counters_pkey"
    account = {"name": "x", "kind": "neither", "language": "ja", "tax_residency": "JP", "created_at": clock()}
    assert db.violated_constraint(clash(session, Account, account)) == "account_kind"


def test_a_clash_without_a_name_and_any_other_error_give_none(session, clock):
    error = clash(session, User, login("a@example.com", clock()) | {"name": None})  # NOT NULL
    assert db.violated_constraint(error) is None
    assert db.violated_constraint(ValueError("UNIQUE constraint failed: users.email")) is None


def test_a_write_unit_names_the_clash_its_commit_met(session, clock):
    """The error a unit re-raises after its rollback still names the constraint."""
    now = clock()
    with db.write(session):
        session.add(User(**login("a@example.com", now)))
    with pytest.raises(IntegrityError) as raised:
        with db.write(session):
            session.add(User(**login("a@example.com", now + timedelta(seconds=1))))
    assert db.violated_constraint(raised.value) == EMAIL_TAKEN
