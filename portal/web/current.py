"""Who is signed in: Flask-Login's user is the person, the session row and the account in use."""

from dataclasses import dataclass
from functools import wraps

from flask import abort, flash, g, redirect, request, session, url_for
from flask_babel import gettext as _
from flask_login import UserMixin, current_user, login_required
from flask_login.utils import login_url

from portal import clock, db
from portal.accounts import sessions
from portal.accounts.models import Account, Membership, User, UserSession
from portal.accounts.queries import memberships_of
from portal.extensions import login_manager
from portal.web import kept


@dataclass
class SignedIn(UserMixin):
    user: User
    row: UserSession
    membership: Membership | None
    account: Account | None

    def get_id(self) -> str:
        return str(self.user.id)

    @property
    def id(self) -> int:
        return self.user.id

    @property
    def email(self) -> str:
        return self.user.email

    @property
    def name(self) -> str:
        return self.user.name

    @property
    def language(self) -> str:
        return self.user.language

    @property
    def role(self) -> str | None:
        return self.membership.role if self.membership else None


@login_manager.user_loader
def load_user(user_id: str) -> SignedIn | None:
    token = session.get("sid")
    if not token:
        return None
    found = sessions.resolve(session=db.session(), token=token, now=clock.now())
    if found is None or str(found[1].id) != user_id:
        return None
    row, user = found
    membership, account = _account_in_use(row)
    return SignedIn(user=user, row=row, membership=membership, account=account)


@login_manager.unauthorized_handler
def sign_in_first():
    """Flask-Login's redirect to the sign-in page, back to this page afterwards; a form sent
    after the session ended keeps what was typed for that page."""
    if kept.keep():
        flash(_("Your session has ended. Sign in again to continue: what you typed is kept."), "info")
    return redirect(login_url(login_manager.login_view, request.url))


def _account_in_use(row: UserSession) -> tuple[Membership | None, Account | None]:
    with db.read(db.session()):
        pairs = memberships_of(db.session(), user_id=row.user_id)
    for membership, account in pairs:
        if account.id == row.account_id:
            return membership, account
    return pairs[0] if pairs else (None, None)


def accounts_of_current_user() -> list[tuple[Membership, Account]]:
    if "my_accounts" not in g:
        with db.read(db.session()):
            g.my_accounts = memberships_of(db.session(), user_id=current_user.id)
    return g.my_accounts


def verified_email_required(view):
    """Signed in with a proven e-mail address."""

    @wraps(view)
    @login_required
    def guarded(*args, **kwargs):
        if current_user.user.email_verified_at is None:
            return redirect(url_for("auth.check_email"))
        return view(*args, **kwargs)

    return guarded


def role_required(*roles: str):
    """Signed in, verified, and holding one of `roles` in the account in use."""

    def decorate(view):
        @wraps(view)
        @verified_email_required
        def guarded(*args, **kwargs):
            if current_user.membership is None:
                return redirect(url_for("dashboard.show"))
            if current_user.role not in roles:
                abort(403)
            return view(*args, **kwargs)

        guarded.required_roles = roles
        return guarded

    return decorate


def reauthentication_redirect(back: str | None = None):
    """A redirect to the password prompt when the last sign-in is over 10 minutes old (for
    changes of the phone number, password, and API keys); None when it is recent. The prompt
    returns to this page, or for a refused POST to `back` (a POST-only address cannot be
    revisited by the browser)."""
    if sessions.is_fresh(current_user.row, clock.now()):
        return None
    flash(_("Please confirm your password to continue."), "info")
    kept.keep()  # a form sent with a stale sign-in is filled in again after the password prompt
    target = request.full_path if request.method == "GET" else back or request.full_path
    return redirect(url_for("auth.reauthenticate", next=target))
