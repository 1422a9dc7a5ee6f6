"""`portal postpay …`: the operator's side of invoice billing (the contracts, the month close,
the bank transfers received). Each decision is audited by the service that makes it."""

from datetime import date

import click
from flask.cli import with_appcontext

from portal import clock, db, services
from portal.accounts.models import Role
from portal.accounts.operator import AmbiguousAccount, NoSuchAccount, account_by_email
from portal.ledger.rules import MILLI_YEN
from portal.postpay import contracts, invoices, rules
from portal.postpay.models import ContractStatus
from portal.postpay.queries import line_in
from portal.postpay.rules import PostpayError


@click.group("postpay")
def postpay():
    """Invoice billing for companies (請求書後払い)."""


def _account(email: str, account_id: int | None) -> int:
    try:
        return account_by_email(db.session(), email=email, account_id=account_id, roles=(Role.OWNER,)).account_id
    except (NoSuchAccount, AmbiguousAccount) as error:
        raise click.ClickException(str(error)) from None


def _yen(milli: int) -> str:
    return f"¥{milli // MILLI_YEN:,}"


ACCOUNT = click.option("--account", "account_id", type=int, default=None, help="Account id, when EMAIL owns several.")
REASON = click.option("--reason", required=True, help="Why: kept in the audit trail and shown to the customer.")


@postpay.command("list")
@click.option("--status", type=click.Choice([status.value for status in ContractStatus]), default=None)
@with_appcontext
def list_contracts(status):
    """The contracts (or those of one status), with each line's limit, use and availability."""
    found = contracts.contracts(session=db.session(), status=ContractStatus(status) if status else None)
    with db.read(db.session()):
        for contract, name in found:
            line = line_in(db.session(), contract)
            figures = (f"limit {_yen(line.limit)}, used {_yen(line.used)}, available {_yen(line.available)}"
                       if line else "no line")
            due = "end of next month" if contract.due_days is None else f"{contract.due_days} days"
            click.echo(f"account {contract.account_id} {name}: {contract.status}"
                       f"{' (' + contract.suspended_by + ')' if contract.suspended_by else ''}; {figures}; due {due}"
                       f"{'; ' + contract.reason if contract.reason else ''}")
    if not found:
        click.echo("no contracts")


@postpay.command("approve")
@click.argument("email")
@click.option("--limit", "limit_yen", type=click.IntRange(min=1, max=rules.MAX_LIMIT_YEN), required=True,
              help="The credit line's limit in yen, tax excluded.")
@click.option("--due-days", type=click.IntRange(min=1, max=120), default=None,
              help="Due this many days after the invoice date (default: the end of the following month).")
@click.option("--terms", default=None, help="Terms to show the customer (e.g. the paper contract's number).")
@ACCOUNT
@with_appcontext
def approve(email, limit_yen, due_days, terms, account_id):
    """Open (or change) the credit line of EMAIL's company account, with or without an application."""
    account = _account(email, account_id)
    try:
        contract = contracts.approve(session=db.session(), account_id=account, limit_yen=limit_yen, due_days=due_days,
                                     terms=terms, bank_account_ready=services.bank_account() is not None,
                                     now=clock.now())
    except PostpayError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"account {account}: credit line approved, limit ¥{contract.limit_yen:,}")


def _decision(action, email, reason, account_id, done: str):
    account = _account(email, account_id)
    try:
        action(session=db.session(), account_id=account, reason=reason, now=clock.now())
    except PostpayError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"account {account}: {done}")


@postpay.command("decline")
@click.argument("email")
@REASON
@ACCOUNT
@with_appcontext
def decline(email, reason, account_id):
    """Decline EMAIL's application."""
    _decision(contracts.decline, email, reason, account_id, "application declined")


@postpay.command("suspend")
@click.argument("email")
@REASON
@ACCOUNT
@with_appcontext
def suspend(email, reason, account_id):
    """Stop live sends on EMAIL's credit line (prepaid credit still works) until `resume`."""
    _decision(contracts.suspend, email, reason, account_id, "credit line suspended")


@postpay.command("resume")
@click.argument("email")
@REASON
@ACCOUNT
@with_appcontext
def resume(email, reason, account_id):
    """Open EMAIL's suspended credit line again."""
    _decision(contracts.resume, email, reason, account_id, "credit line resumed")


@postpay.command("record-payment")
@click.argument("number")
@click.option("--amount", "amount_yen", type=click.IntRange(min=1), required=True, help="Yen received.")
@click.option("--paid-on", type=click.DateTime(formats=["%Y-%m-%d"]), required=True, help="The transfer's date.")
@click.option("--reference", required=True, help="The bank's reference of the transfer.")
@with_appcontext
def record_payment(number, amount_yen, paid_on, reference):
    """Record a bank transfer for invoice NUMBER (partial payments add up; overpayment is refused)."""
    try:
        payment = invoices.record_payment(session=db.session(), number=number, amount_yen=amount_yen,
                                          paid_on=date(paid_on.year, paid_on.month, paid_on.day), reference=reference,
                                          now=clock.now())
    except invoices.AlreadyRecorded as repeated:
        click.echo(str(repeated))
        return
    except PostpayError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"recorded ¥{payment.amount_yen:,} for {number}; {_yen(payment.restored)} of usage back on the line")


@postpay.command("close-month")
@click.option("--month", default=None, help="YYYY-MM (Japan time); default: the month that ended last.")
@with_appcontext
def close_month(month):
    """Issue every account's invoice for the month (safe to rerun: an issued invoice is kept)."""
    bank = services.bank_account()
    if bank is None:
        raise click.ClickException("set PORTAL_BANK_TRANSFER_ACCOUNT: every invoice names the account to pay into")
    try:
        chosen = rules.parse_month(month) if month else rules.last_closable(clock.now())
        issued = invoices.close_month(session=db.session(), month=chosen, issuer=services.issuer(), bank=bank,
                                      now=clock.now())
    except PostpayError as error:
        raise click.ClickException(str(error)) from None
    for invoice in issued:
        click.echo(f"{invoice.number}: account {invoice.account_id}, ¥{invoice.total_yen:,} due {invoice.due_on}")
    click.echo(f"{chosen} closed: {len(issued)} invoices")
