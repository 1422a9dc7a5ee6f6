"""What the dashboard, the API and the operator read of a contract and its line (no writes)."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlmodel import Session

from portal import db
from portal.ledger.models import Lot
from portal.postpay.models import Application, Contract, ContractStatus
from portal.postpay.rules import LineFigures, figures


@dataclass(frozen=True)
class Standing:
    contract: Contract | None
    line: LineFigures | None  # None until a line is approved
    application: Application | None  # the latest


def line_in(session: Session, contract: Contract | None) -> LineFigures | None:
    if contract is None or contract.lot_id is None:
        return None
    lot = session.get(Lot, contract.lot_id, populate_existing=True)
    return figures(limit=lot.amount, remaining=lot.remaining, suspended=contract.status == ContractStatus.SUSPENDED)


def standing(session: Session, *, account_id: int) -> Standing:
    with db.read(session):
        contract = session.scalars(select(Contract).where(Contract.account_id == account_id)).first()
        application = session.scalars(select(Application).where(Application.account_id == account_id)
                                      .order_by(Application.id.desc())).first()
        return Standing(contract, line_in(session, contract), application)


def line_of(session: Session, *, account_id: int) -> LineFigures | None:
    return standing(session, account_id=account_id).line


def explain_refusal(session: Session, *, account_id: int, now: datetime) -> str | None:
    """Why a send was refused for want of credit, when the account has a credit line: it is
    suspended, or used up to its limit. None without a line."""
    line = line_of(session, account_id=account_id)
    if line is None:
        return None
    if line.suspended:
        return ("Insufficient credit. The credit line is suspended (an invoice is overdue or the contract is "
                "on hold); prepaid credit can still be used. Buy credit in the portal to continue.")
    return (f"Insufficient credit. Prepaid credit is used up and the credit line's limit of ¥{line.limit // 1000:,} "
            "(unbilled usage plus unpaid invoices) is reached. Pay the open invoice or buy credit in the portal.")
