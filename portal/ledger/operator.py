"""What operators do to the ledger from the command line."""

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from portal import db
from portal.ledger import rules, service
from portal.ledger.models import Lot
from portal.ledger.rules import LotKind


log = logging.getLogger("portal.ledger")


def grant_credit(*, session: Session, account_id: int, yen: int, reason: str, now: datetime) -> Lot:
    """Grant `yen` for 90 days; ReasonTooLong when the reason does not fit the journal."""
    stamp = now.strftime("%Y%m%dT%H%M%S.%f")
    source_ref = f"operator:{account_id}:{stamp}"
    service.grant(
        session=session, account_id=account_id, kind=LotKind.GRANT, amount=yen * rules.MILLI_YEN,
        expires_at=now + rules.GRANT_LIFETIME, source_ref=source_ref,
        idempotency_key=f"operator-grant:{stamp}", reason=f"operator grant: {reason.strip()}", now=now,
    )
    with db.read(session):
        return session.scalars(select(Lot).where(Lot.source_ref == source_ref)).one()


def sweep(*, engine: Engine, now: datetime) -> tuple[int, int]:
    """Run the expiry for every account with due work, one unit of work per account; an
    account that fails is rolled back, logged and left for the next sweep, the others go on."""
    lines = 0
    with Session(engine, expire_on_commit=False) as session:
        accounts = service.accounts_with_due_work(session=session, now=now)
        for account_id in accounts:
            try:
                lines += service.expire(session=session, account_id=account_id, now=now)
            except OperationalError:
                raise  # the database itself is failing: every other account would wait for it too
            except Exception:
                log.exception("expiry sweep failed for account %s", account_id)
    return len(accounts), lines
