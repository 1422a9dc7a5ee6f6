"""What operators do to the ledger from the command line."""

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from portal.ledger import rules, service
from portal.ledger.models import Lot


log = logging.getLogger("portal.ledger")


def grant_credit(*, session: Session, account_id: int, yen: int, reason: str, now: datetime) -> Lot:
    stamp = now.strftime("%Y%m%dT%H%M%S.%f")
    service.grant(
        session=session, account_id=account_id, kind="grant", amount=yen * rules.MILLI_YEN,
        expires_at=now + rules.GRANT_LIFETIME, source_ref=f"operator:{account_id}:{stamp}",
        idempotency_key=f"operator-grant:{stamp}", reason=f"operator grant: {reason.strip()}", now=now,
    )
    lot = session.scalars(select(Lot).where(Lot.source_ref == f"operator:{account_id}:{stamp}")).one()
    session.commit()
    return lot


def sweep(*, engine: Engine, now: datetime) -> tuple[int, int]:
    """Run the expiry for every account with due work, one transaction per account; an
    account that fails is logged and left for the next sweep, the others go on."""
    lines = 0
    with Session(engine, expire_on_commit=False) as session:
        accounts = service.accounts_with_due_work(session=session, now=now)
        for account_id in accounts:
            try:
                lines += service.expire(session=session, account_id=account_id, now=now)
            except OperationalError:
                raise  # the database itself is failing: every other account would wait for it too
            except Exception:
                session.rollback()
                log.exception("expiry sweep failed for account %s", account_id)
    return len(accounts), lines
