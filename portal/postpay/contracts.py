"""The contract's life: an application from the portal, the operator's approval (with or
without one: a contract signed on paper is common), a decline, a suspension and its end. One
unit of work per public function, the account's credit row locked first whenever the line's
lot changes; each decision audited."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, update
from sqlmodel import Session

from portal import audit, db, mail
from portal.accounts.models import Account, AccountKind, Membership, Role, User
from portal.audit import AuditAction
from portal.ledger import line as ledger_line
from portal.ledger import steps
from portal.ledger.models import JOURNAL, STATES
from portal.ledger.rules import MILLI_YEN, ReasonTooLong, TransactionKind, check_reason
from portal.postpay import rules
from portal.postpay.models import Application, Contract, ContractStatus, SuspendedBy
from portal.postpay.rules import PostpayError

REASON_LENGTH = 300


class NotACompany(PostpayError):
    """Invoice billing is for company accounts."""


class AlreadyApproved(PostpayError):
    pass


class NoContract(PostpayError):
    pass


class WrongStatus(PostpayError):
    """The contract is not in a state the request applies to."""


class BankAccountMissing(PostpayError):
    """Production needs PORTAL_BANK_TRANSFER_ACCOUNT before any line is approved."""


class LimitOutOfRange(PostpayError):
    pass


class LimitBelowUsage(PostpayError):
    pass


@dataclass(frozen=True)
class ApplicationForm:
    legal_name: str
    address: str
    registration_number: str | None
    contact_name: str
    contact_email: str
    expected_monthly_yen: int


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise PostpayError("a reason is required")
    try:
        check_reason(reason, REASON_LENGTH)
    except ReasonTooLong as error:
        raise PostpayError(str(error)) from None
    return reason


def contract_of(session: Session, account_id: int) -> Contract | None:
    return session.scalars(select(Contract).where(Contract.account_id == account_id)
                           .execution_options(populate_existing=True)).first()


def apply(*, session: Session, account_id: int, user_id: int, form: ApplicationForm, operator: str,
          now: datetime) -> Application:
    """A company asks for invoice billing: the contract is `applied` (again, after a decline) and
    the operator (`operator`, an address) is mailed through the outbox."""
    with db.write(session):
        account = session.get(Account, account_id)
        if account.kind != AccountKind.COMPANY:
            raise NotACompany("invoice billing is for company accounts")
        contract = contract_of(session, account_id)
        if contract is not None and contract.status in (ContractStatus.APPROVED, ContractStatus.SUSPENDED):
            raise AlreadyApproved("this account already has a credit line")
        if contract is None:
            contract = Contract(account_id=account_id, status=ContractStatus.APPLIED, created_at=now, updated_at=now)
            session.add(contract)
        contract.status, contract.reason, contract.updated_at = ContractStatus.APPLIED, None, now
        application = Application(account_id=account_id, user_id=user_id, created_at=now, **form.__dict__)
        session.add(application)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.POSTPAY_APPLIED, now=now,
                     detail=f"applied for invoice billing, expecting ¥{form.expected_monthly_yen:,} a month")
        session.flush()
        mail.queue(session, to=operator, template="postpay_application", language="ja", now=now, account=account,
                   application=application)
        return application


def approve(*, session: Session, account_id: int, limit_yen: int, due_days: int | None, terms: str | None,
            bank_account_ready: bool, now: datetime) -> Contract:
    """Open the credit line (or change its limit and terms when it is open): prepaid credit is
    still spent first, then the line up to `limit_yen` (tax excluded)."""
    if not 1 <= limit_yen <= rules.MAX_LIMIT_YEN:
        raise LimitOutOfRange(f"the limit must be between ¥1 and ¥{rules.MAX_LIMIT_YEN:,}")
    if due_days is not None and not 1 <= due_days <= 120:
        raise PostpayError("--due-days must be between 1 and 120")
    if not bank_account_ready:
        raise BankAccountMissing("set PORTAL_BANK_TRANSFER_ACCOUNT (bank|branch|type|number|holder) before "
                                 "approving a credit line: every invoice names the account to pay into")
    with db.write(session):
        state, _ = steps.lock(session, account_id)
        key = f"postpay:line:{line_bookings(session, account_id) + 1}"
        account = session.get(Account, account_id)
        if account is None or account.kind != AccountKind.COMPANY:
            raise NotACompany("invoice billing is for company accounts")
        contract = contract_of(session, account_id)
        if contract is None:
            contract = Contract(account_id=account_id, status=ContractStatus.APPLIED, created_at=now, updated_at=now)
            session.add(contract)
            session.flush()
        limit = limit_yen * MILLI_YEN
        if contract.lot_id is None:
            contract.lot_id = ledger_line.open_in(session, state, limit=limit, key=key,
                                                  reason=f"credit line opened, limit ¥{limit_yen:,}", now=now)
            contract.status = ContractStatus.APPROVED
            # a contract lifts the trial limits (live sends only to the account's own numbers)
            session.execute(update(STATES).where(STATES.c.account_id == account_id).values(has_purchased=True))
            detail = f"approved a credit line of ¥{limit_yen:,}"
        else:
            try:
                ledger_line.resize_in(session, state, lot_id=contract.lot_id, limit=limit, key=key,
                                      reason=f"credit line limit ¥{contract.limit_yen:,} → ¥{limit_yen:,}", now=now)
            except ledger_line.LimitBelowUsage as error:
                raise LimitBelowUsage(f"¥{-(-error.used // MILLI_YEN):,} of the line is used: the limit cannot go "
                                      "below it") from None
            detail = f"changed the credit line from ¥{contract.limit_yen:,} to ¥{limit_yen:,}"
        contract.limit_yen, contract.due_days, contract.terms = limit_yen, due_days, (terms or "").strip() or None
        contract.reason, contract.updated_at = None, now
        due = "end of the following month" if due_days is None else f"{due_days} days after the invoice"
        audit.record(session, account_id=account_id, user_id=None, action=AuditAction.POSTPAY_APPROVED, now=now,
                     detail=f"{detail}, due {due}")
        tell(session, account_id, "postpay_approved", now, contract=contract)
        return contract


def line_bookings(session: Session, account_id: int) -> int:
    """How many journal lines the account's credit line has booked on itself (under the lock:
    the next one's key is unique however many decisions share one moment)."""
    return session.scalar(select(func.count()).select_from(JOURNAL).where(
        JOURNAL.c.account_id == account_id, JOURNAL.c.kind == TransactionKind.LINE))


def decline(*, session: Session, account_id: int, reason: str, now: datetime) -> Contract:
    reason = _reason(reason)
    with db.write(session):
        contract = contract_of(session, account_id)
        if contract is None:
            raise NoContract("this account has not applied for invoice billing")
        if contract.status != ContractStatus.APPLIED:
            raise WrongStatus(f"only an application can be declined; this contract is {contract.status}")
        contract.status, contract.reason, contract.updated_at = ContractStatus.DECLINED, reason, now
        audit.record(session, account_id=account_id, user_id=None, action=AuditAction.POSTPAY_DECLINED, now=now,
                     detail=f"declined: {reason}")
        tell(session, account_id, "postpay_declined", now, contract=contract)
        return contract


def mailed_to(session: Session, account_id: int) -> list[tuple[str, str]]:
    """(address, language) of the owners and billing members: they receive invoices, reminders
    and the line's changes."""
    rows = session.execute(select(User.email, User.language).join(Membership, Membership.user_id == User.id).where(
        Membership.account_id == account_id, Membership.role.in_((Role.OWNER, Role.BILLING)),
        User.disabled_at.is_(None)).order_by(User.id))
    return [(email, str(language)) for email, language in rows]


def tell(session: Session, account_id: int, template: str, now: datetime, **context) -> None:
    """Mail the owners and billing members through the outbox, in the caller's transaction."""
    for address, language in mailed_to(session, account_id):
        mail.queue(session, to=address, template=template, language=language, now=now, **context)


def suspend_in(session: Session, contract: Contract, *, by: SuspendedBy, reason: str, now: datetime) -> None:
    """Inside the caller's unit: live sends stop spending the line; prepaid credit still works."""
    state, _ = steps.lock(session, contract.account_id)
    ledger_line.close_for_sends_in(session, state, lot_id=contract.lot_id, now=now)
    contract.status, contract.suspended_by, contract.reason, contract.updated_at = (
        ContractStatus.SUSPENDED, by, reason, now)
    audit.record(session, account_id=contract.account_id, user_id=None, action=AuditAction.POSTPAY_SUSPENDED, now=now,
                 detail=f"suspended ({by}): {reason}")
    tell(session, contract.account_id, "postpay_suspended", now, contract=contract, overdue=by == SuspendedBy.OVERDUE)


def resume_in(session: Session, contract: Contract, *, reason: str, now: datetime) -> None:
    state, _ = steps.lock(session, contract.account_id)
    ledger_line.reopen_in(session, state, lot_id=contract.lot_id)
    contract.status, contract.suspended_by, contract.reason, contract.updated_at = (
        ContractStatus.APPROVED, None, reason, now)
    audit.record(session, account_id=contract.account_id, user_id=None, action=AuditAction.POSTPAY_RESUMED, now=now,
                 detail=f"resumed: {reason}")
    tell(session, contract.account_id, "postpay_resumed", now, contract=contract)


def suspend(*, session: Session, account_id: int, reason: str, now: datetime) -> Contract:
    """The operator stops the line (it stays stopped until `resume`, payments or not)."""
    reason = _reason(reason)
    with db.write(session):
        contract = contract_of(session, account_id)
        if contract is None or contract.status not in (ContractStatus.APPROVED, ContractStatus.SUSPENDED):
            raise WrongStatus("only an approved credit line can be suspended")
        if contract.status == ContractStatus.SUSPENDED and contract.suspended_by == SuspendedBy.OPERATOR:
            raise WrongStatus("the credit line is already suspended by an operator")
        suspend_in(session, contract, by=SuspendedBy.OPERATOR, reason=reason, now=now)
        return contract


def resume(*, session: Session, account_id: int, reason: str, now: datetime) -> Contract:
    reason = _reason(reason)
    with db.write(session):
        contract = contract_of(session, account_id)
        if contract is None or contract.status != ContractStatus.SUSPENDED:
            raise WrongStatus("only a suspended credit line can be resumed")
        resume_in(session, contract, reason=reason, now=now)
        return contract


def contracts(*, session: Session, status: ContractStatus | None = None) -> list[tuple[Contract, str]]:
    """Every contract (or those of one status) with its account's name, newest change first."""
    query = select(Contract, Account.name).join(Account, Account.id == Contract.account_id)
    if status is not None:
        query = query.where(Contract.status == status)
    with db.read(session):
        return [(contract, name) for contract, name in session.execute(query.order_by(Contract.updated_at.desc(),
                                                                                      Contract.id.desc()))]
