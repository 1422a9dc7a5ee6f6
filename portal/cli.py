"""Operator commands: the `portal` command installed by the package."""

import sys

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext

from portal import clock, create_app, db, documents, services
from portal import worker as portal_worker
from portal.accounts.errors import PhoneInvalid, WeakPassword
from portal.accounts.models import Language, Role
from portal.accounts.operator import AmbiguousAccount, NoSuchAccount, account_by_email
from portal.accounts.operator import create_account as create
from portal.accounts.queries import InvalidEmail
from portal.billing import invoices as billing_invoices
from portal.billing.operator import check_payments, reconcile_pending
from portal.config import UnsafeConfiguration
from portal.credentials import service as credentials
from portal.credentials.models import CredentialMode, Scope
from portal.ledger.check import check
from portal.ledger.operator import grant_credit, sweep
from portal.ledger.rules import MILLI_YEN, ReasonTooLong
from portal.messaging import delivery
from portal.migrate import upgrade as run_upgrade
from portal.usage import demo as usage_demo
from portal.postpay.check import check as check_postpay
from portal.postpay_cli import postpay


def _create_app():
    """The worker and the operator commands may run long statements (the daily ledger check,
    sweeps over every account): the web's statement timeout applies only to `portal run`, the
    one command that serves pages (Flask loads the app inside that command's own context)."""
    context = click.get_current_context(silent=True)
    serving = context is not None and context.info_name == "run"
    try:
        return create_app(None if serving else {"DATABASE_STATEMENT_TIMEOUT_MS": 0})
    except UnsafeConfiguration as error:
        raise click.ClickException(f"{error}. On a development machine, set PORTAL_ENV=development.") from None


@click.group(cls=FlaskGroup, create_app=_create_app, add_version_option=False, load_dotenv=False)
def main():
    """Chotto portal: run the web app, the worker and the operator commands."""


def register(app) -> None:
    for command in (database, worker, accounts, credits, ledger, expire, payments, invoices, keys, demo, postpay, sends):
        app.cli.add_command(command)


@click.group("db")
def database():
    """Database schema."""


@database.command("upgrade")
@click.option("--revision", default="head", show_default=True)
@with_appcontext
def upgrade(revision: str):
    """Apply the migrations."""
    run_upgrade(current_app.config["DATABASE_URL"], revision)
    click.echo(f"database at {revision}")


@click.command("worker")
@click.option("--once", is_flag=True, help="Drain what is due now and exit.")
@with_appcontext
def worker(once: bool):
    """Deliver e-mail and SMS from the outbox."""
    app = current_app._get_current_object()
    if once:
        click.echo(f"delivered {portal_worker.drain_once(app)}")
        return
    portal_worker.run(app)


@click.group("accounts")
def accounts():
    """Customer accounts."""


@accounts.command("create")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, required=True, help="Read the password from standard input.")
@click.option("--verified", is_flag=True, help="Mark the e-mail address as verified.")
@click.option("--phone", default=None, help="A verified mobile number in E.164 form, e.g. +819012345678.")
@click.option("--name", default=None, help="The owner's name (defaults to the e-mail name).")
@click.option("--language", type=click.Choice(list(Language)), default=Language.JA, show_default=True)
@with_appcontext
def create_account(email, password_stdin, verified, phone, name, language):
    """Create a customer account and its owner."""
    password = sys.stdin.readline().rstrip("\n")
    try:
        user = create(
            session=db.session(), email=email, password=password, name=name, language=language,
            verified=verified, phone=phone, trial_amount=current_app.config["TRIAL_CREDIT_YEN"] * MILLI_YEN,
            now=clock.now(),
        )
    except WeakPassword as error:
        raise click.ClickException("password refused: " + ", ".join(error.reasons)) from None
    except (InvalidEmail, PhoneInvalid) as error:
        raise click.ClickException(f"invalid input: {error or 'phone number'}") from None
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"created account for {user.email} (user #{user.id})")


@click.group("credits")
def credits():
    """Customer credit."""


@credits.command("grant")
@click.argument("email")
@click.argument("yen", type=click.IntRange(min=1, max=1_000_000))
@click.option("--reason", required=True, help="Why: shown on the customer's statement.")
@click.option("--account", "account_id", type=int, default=None, help="Account id, when EMAIL owns several.")
@with_appcontext
def grant_credits(email, yen, reason, account_id):
    """Grant YEN of credit (valid 90 days) to the account owned by EMAIL."""
    if not reason.strip():
        raise click.ClickException("--reason must say why")
    owner = _account_of(email, account_id, roles=(Role.OWNER,))
    try:
        lot = grant_credit(session=db.session(), account_id=owner.account_id, yen=yen, reason=reason, now=clock.now())
    except ReasonTooLong as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"granted ¥{yen:,} to account {lot.account_id} as lot #{lot.id}, expiring {lot.expires_at.isoformat()}")


@click.command("expire")
@with_appcontext
def expire():
    """Write off expired credit and release stale holds, once, for every account."""
    accounts, lines = sweep(engine=db.engine(), now=clock.now())
    click.echo(f"expiry sweep: {lines} journal lines in {accounts} accounts")


@click.group("ledger")
def ledger():
    """The credit ledger."""


@ledger.command("check")
@with_appcontext
def check_ledger():
    """Verify the ledger's invariants for every account; exit 1 on any mismatch."""
    problems, notes = check(db.session(), now=clock.now())
    problems = [*problems, *check_payments(db.session()), *check_postpay(db.session())]
    for note in notes:
        click.echo(f"note: {note}")
    for problem in problems:
        click.echo(f"MISMATCH {problem}", err=True)
    if problems:
        sys.exit(1)
    click.echo("ledger check passed")


@click.group("payments")
def payments():
    """Payments at the gateway."""


@payments.command("reconcile")
@with_appcontext
def reconcile_payments():
    """Ask the gateway about purchases still waiting for payment and apply what it says."""
    applied = reconcile_pending(session=db.session(), gateway=services.gateway(), issuer=services.issuer(),
                                now=clock.now())
    click.echo(f"payments reconciled: {applied} purchases updated")


@click.group("sends")
def sends():
    """Customers' messages and calls whose outcome at the carrier is unknown."""


@sends.command("unknown")
@with_appcontext
def unknown_sends():
    """List the UNKNOWN messages and calls (the worker gave up not knowing whether the carrier
    took them): each keeps its charge or hold until the reconcile pass settles it."""
    rows = delivery.in_doubt(db.session())
    for row in rows:
        since = row.in_doubt_since.isoformat() if row.in_doubt_since else "-"
        click.echo(f"{row.channel}\t{row.ref}\taccount {row.account_id}\t{row.mode}\t{row.product}\t"
                   f"created {row.created_at.isoformat()}\tin doubt since {since}\t¥{row.amount / MILLI_YEN:g}")
    click.echo(f"{len(rows)} sends with an unknown outcome")


@sends.command("reconcile")
@with_appcontext
def reconcile_sends():
    """Ask the carrier about the UNKNOWN sends now (the worker does it every five minutes)."""
    settled = portal_worker.reconcile_sends(current_app._get_current_object())
    click.echo(f"sends reconciled: {settled} settled")


@click.group("keys")
def keys():
    """API credentials."""


@keys.command("create")
@click.argument("email")
@click.option("--name", required=True, help="What the credential is for.")
@click.option("--test", "test_mode", is_flag=True, help="A test credential: checked and recorded, never sent or charged.")
@click.option("--scopes", default=",".join(Scope), show_default=True, help="Comma-separated scopes.")
@click.option("--account", "account_id", type=int, default=None, help="Account id, when EMAIL belongs to several.")
@with_appcontext
def create_key(email, name, test_mode, scopes, account_id):
    """Create an API credential for EMAIL's account, where EMAIL is an owner or a developer;
    prints the SID and the token once."""
    member = _account_of(email, account_id, roles=credentials.MANAGERS)
    try:
        credential, token = credentials.create(
            session=db.session(), account_id=member.account_id, user_id=member.user_id, name=name,
            mode=CredentialMode.TEST if test_mode else CredentialMode.LIVE,
            scopes=[s.strip() for s in scopes.split(",") if s.strip()], networks=[], monthly_cap=None, now=clock.now())
    except credentials.InvalidCredential as invalid:
        raise click.ClickException(f"invalid {invalid.field}: {invalid}")
    click.echo(f"SID:   {credential.sid}")
    click.echo(f"Token: {token}")
    click.echo("The token is shown only this once; store it now.")


@click.group("invoices")
def invoices():
    """Receipts and qualified invoices."""


@invoices.command("reissue")
@click.argument("number")
@click.option("--reason", required=True, help="Why it is re-issued: printed on the new document.")
@click.option("--recipient-name", default=None, help="The corrected recipient name (defaults to the original's).")
@with_appcontext
def reissue_invoice(number, reason, recipient_name):
    """Issue a corrected copy of invoice NUMBER under a new number, marked as a re-issue."""
    try:
        copy = billing_invoices.reissue(session=db.session(), number=number, reason=reason,
                                        recipient_name=recipient_name, issuer=services.issuer(), now=clock.now())
    except billing_invoices.UnknownInvoice:
        raise click.ClickException(f"no invoice numbered {number}")
    except billing_invoices.ReasonTooLong as error:
        raise click.ClickException(f"--reason is printed on the invoice: at most {error.limit} characters "
                                   f"(this one has {len(reason)})") from None
    documents.pdf_of(db.session(), invoice_id=copy.id, language=Language.JA, now=clock.now())
    click.echo(f"re-issued {number} as {copy.number}")


@click.group("demo")
def demo():
    """Demo data for development and benchmarks."""


@demo.command("seed")
@click.argument("email")
@click.option("--usage", "rows", type=click.IntRange(min=1, max=20_000_000), required=True,
              help="How many messages and calls to add over the last 13 months.")
@click.option("--account", "account_id", type=int, default=None, help="Account id, when EMAIL owns several.")
@click.option("--seed", "seed", type=int, default=0, show_default=True, help="The same seed gives the same rows.")
@with_appcontext
def seed_demo(email, rows, account_id, seed):
    """Add N demo messages and calls to the account EMAIL owns, for the usage page. They are not
    booked in the ledger (the balance does not move): never use it on a real customer's account."""
    if current_app.config["ENV"] == "production":
        raise click.ClickException("demo data is refused in production")
    owner = _account_of(email, account_id, roles=(Role.OWNER,))
    seeded = usage_demo.seed(db.session(), account_id=owner.account_id, user_id=owner.user_id, rows=rows,
                             now=clock.now(), seed=seed)
    click.echo(f"added {seeded.rows:,} demo messages and calls to account {owner.account_id} "
               f"(credentials {', '.join(map(str, seeded.credentials))}; OTP sites "
               f"{', '.join(map(str, seeded.sites))}); see them on the Usage page")


def _account_of(email: str, account_id: int | None, *, roles: tuple[Role, ...]):
    """The account an operator command is about (portal.accounts.operator.account_by_email)."""
    try:
        return account_by_email(db.session(), email=email, account_id=account_id, roles=roles)
    except (NoSuchAccount, AmbiguousAccount) as error:
        raise click.ClickException(str(error)) from None


if __name__ == "__main__":
    main()
