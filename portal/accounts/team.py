"""Members, roles and invitations. An account always keeps at least one owner. Owners are
mailed when an owner is invited, a role changes or a member is removed; removing a member
revokes the API credentials they created unless the owner keeps each one."""

import logging
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import audit, db, mail
from portal.accounts import mail_quota, passwords, tokens
from portal.accounts.errors import (
    AlreadyMember,
    EmailTaken,
    InvitationForSomeoneElse,
    LastOwner,
    MailQuotaReached,
    NotAMember,
    TokenInvalid,
    WeakPassword,
)
from portal.accounts.models import EMAIL_TAKEN, Account, Invitation, MailPurpose, Membership, Role, User, UserSession
from portal.accounts.queries import lock_account, membership, normalise_email, user_by_email
from portal.accounts.signup import new_user
from portal.audit import AuditAction
from portal.credentials import service as credentials
from portal.credentials.models import Credential

log = logging.getLogger("portal.auth")

INVITATION_TTL = timedelta(days=7)


def members(session: Session, *, account_id: int) -> list[tuple[Membership, User]]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.account_id == account_id)
        .order_by(Membership.id)
    )
    with db.read(session):
        return [tuple(row) for row in session.execute(query)]


def pending_invitations(session: Session, *, account_id: int, now: datetime) -> list[Invitation]:
    query = (
        select(Invitation)
        .where(Invitation.account_id == account_id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .where(Invitation.expires_at > now)
        .order_by(Invitation.id)
    )
    with db.read(session):
        return list(session.scalars(query))


def invite(*, session: Session, account_id: int, inviter_id: int, email: str, role: str, now: datetime) -> Invitation:
    role = _role(role)
    email = normalise_email(email)
    with db.write(session):
        account = lock_account(session, account_id)
        existing = user_by_email(session, email)
        if existing is not None and membership(session, account_id=account_id, user_id=existing.id):
            raise AlreadyMember()
        _revoke_pending(session, account_id=account_id, email=email, now=now)
        token, token_hash = tokens.new_token()
        invitation = Invitation(
            account_id=account_id,
            email=email,
            role=role,
            token_hash=token_hash,
            invited_by_user_id=inviter_id,
            created_at=now,
            expires_at=now + INVITATION_TTL,
        )
        session.add(invitation)
        inviter = session.get(User, inviter_id)
        language = existing.language if existing else account.language
        if not mail_quota.allow_mail(session, email=email, purpose=MailPurpose.INVITATION, now=now):
            raise MailQuotaReached()  # said to the inviter: an invitation that silently never arrives helps nobody
        mail.queue(
            session, to=email, template="invitation", language=language, now=now,
            account=account, inviter=inviter, role=role, token=token, expires_at=invitation.expires_at,
        )
        if role == Role.OWNER:
            audit.record(session, account_id=account_id, user_id=inviter_id, action=AuditAction.OWNER_INVITED,
                         detail=email, now=now)
            _tell(session, _owners(session, account_id), template="team_owner_invited", now=now,
                  account=account, actor=inviter, email=email)
    log.info("invitation sent account_id=%s invitation_id=%s role=%s", account_id, invitation.id, role)
    return invitation


def _revoke_pending(session: Session, *, account_id: int, email: str, now: datetime) -> None:
    session.execute(
        update(Invitation)
        .where(Invitation.account_id == account_id, Invitation.email == email)
        .where(Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _role(role: str) -> Role:
    if role not in list(Role):
        raise ValueError(f"unknown role {role!r}")
    return Role(role)


def revoke_invitation(*, session: Session, account_id: int, invitation_id: int, now: datetime) -> None:
    with db.write(session):
        invitation = session.get(Invitation, invitation_id)
        if invitation is None or invitation.account_id != account_id:
            raise TokenInvalid()
        if invitation.accepted_at is None and invitation.revoked_at is None:
            invitation.revoked_at = now


def open_invitation(session: Session, *, token: str, now: datetime) -> tuple[Invitation, Account]:
    query = select(Invitation).where(Invitation.token_hash == tokens.hash_token(token))
    with db.read(session):
        invitation = session.scalars(query).first()
        if invitation is None or invitation.accepted_at or invitation.revoked_at or invitation.expires_at <= now:
            raise TokenInvalid()
        return invitation, session.get(Account, invitation.account_id)


def accept(*, session: Session, token: str, user_id: int, session_id: int, now: datetime) -> Membership:
    """An existing login joins the account it was invited to (the addresses must match) and
    switches to it."""
    with db.write(session):
        invitation, _ = open_invitation(session, token=token, now=now)
        user = session.get(User, user_id)
        if user.email != invitation.email:
            raise InvitationForSomeoneElse()
        joined = _join(session, invitation=invitation, user=user, now=now)
        session.get(UserSession, session_id).account_id = invitation.account_id
    return joined


def accept_as_new_user(*, session: Session, token: str, name: str, password: str, language: str, now: datetime) -> User:
    """A newcomer sets a name and password; the link proved the mailbox, so it is verified.
    Argon2 runs between a read unit and the write unit, outside any transaction; the write
    unit claims the invitation again (_join), so one used meanwhile refuses."""
    with db.read(session):
        invitation, _ = open_invitation(session, token=token, now=now)
        if user_by_email(session, invitation.email) is not None:
            raise EmailTaken()
    reasons = passwords.problems(password, context_words=(invitation.email.split("@")[0],))
    if reasons:
        raise WeakPassword(reasons)
    password_hash = passwords.hash_password(password)
    user = new_user(email=invitation.email, name=name, password_hash=password_hash, language=language, now=now)
    user.email_verified_at = now
    try:
        with db.write(session):
            session.add(user)
            session.flush()
            _join(session, invitation=invitation, user=user, now=now)
    except IntegrityError as error:
        if db.violated_constraint(error) != EMAIL_TAKEN:
            raise
        raise EmailTaken() from None  # the same address accepted at the same moment
    return user


def _join(session: Session, *, invitation: Invitation, user: User, now: datetime) -> Membership:
    claimed = session.execute(
        update(Invitation)
        .where(Invitation.id == invitation.id, Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .values(accepted_at=now)
    )
    if claimed.rowcount != 1:
        raise TokenInvalid()
    lock_account(session, invitation.account_id)
    if membership(session, account_id=invitation.account_id, user_id=user.id):
        raise AlreadyMember()
    joined = Membership(account_id=invitation.account_id, user_id=user.id, role=invitation.role, created_at=now)
    session.add(joined)
    log.info("invitation accepted account_id=%s user_id=%s role=%s", invitation.account_id, user.id, invitation.role)
    return joined


def _owner_count(session: Session, account_id: int) -> int:
    query = select(func.count()).select_from(Membership).where(
        Membership.account_id == account_id, Membership.role == Role.OWNER
    )
    return session.scalar(query)


def _owners(session: Session, account_id: int) -> list[User]:
    query = (
        select(User)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.account_id == account_id, Membership.role == Role.OWNER)
        .order_by(User.id)
    )
    return list(session.scalars(query))


def _tell(session: Session, recipients: Iterable[User], *, template: str, now: datetime, **context) -> None:
    """One mail per person, in their own language, through the outbox (same transaction)."""
    told = set()
    for user in recipients:
        if user.id not in told:
            told.add(user.id)
            mail.queue(session, to=user.email, template=template, language=user.language, now=now, **context)


def _target(session: Session, account_id: int, membership_id: int) -> tuple[Membership, User]:
    target = session.get(Membership, membership_id)
    if target is None or target.account_id != account_id:
        raise NotAMember()
    return target, session.get(User, target.user_id)


def change_role(
    *, session: Session, account_id: int, membership_id: int, role: str, actor_id: int, now: datetime
) -> Membership:
    role = _role(role)
    with db.write(session):
        account = lock_account(session, account_id)
        target, user = _target(session, account_id, membership_id)
        if target.role == role:
            return target
        if target.role == Role.OWNER and _owner_count(session, account_id) <= 1:
            raise LastOwner()
        owners_before, previous = _owners(session, account_id), target.role
        target.role = role
        session.flush()
        audit.record(session, account_id=account_id, user_id=actor_id, action=AuditAction.ROLE_CHANGED,
                     detail=f"{user.email}: {previous} -> {role}", now=now)
        _tell(session, [*owners_before, *_owners(session, account_id)], template="team_role_changed", now=now,
              account=account, actor=session.get(User, actor_id), member=user, previous=previous, role=role)
    log.info("role changed account_id=%s membership_id=%s role=%s", account_id, membership_id, role)
    return target


def member_and_credentials(
    session: Session, *, account_id: int, membership_id: int, now: datetime
) -> tuple[Membership, User, list[Credential]]:
    """What the owner confirms before a removal: the member and the live credentials whose token
    they may know (created, or rotated by them)."""
    with db.read(session):
        target, user = _target(session, account_id, membership_id)
        return target, user, credentials.live_known_to(session, account_id=account_id, user_id=user.id, now=now)


@dataclass(frozen=True)
class Removal:
    user: User
    revoked: list[Credential]
    kept: list[Credential]


def remove_member(
    *, session: Session, account_id: int, membership_id: int, actor_id: int, keep: Collection[int], now: datetime
) -> Removal:
    """Remove the member and, in the same transaction, revoke every live credential whose token
    they may know (created or rotated by them) except those in `keep` (ids the owner chose to keep, one by one). A credential
    created after the owner saw the list is not in `keep`, so it is revoked too."""
    with db.write(session):
        account = lock_account(session, account_id)
        target, user = _target(session, account_id, membership_id)
        if target.role == Role.OWNER and _owner_count(session, account_id) <= 1:
            raise LastOwner()
        owners_before = _owners(session, account_id)
        revoked, kept = [], []
        for credential in credentials.live_known_to(session, account_id=account_id, user_id=user.id, now=now, lock=True):
            if credential.id in keep:
                kept.append(credential)
            else:
                credentials.revoke_in_transaction(session, credential=credential, user_id=actor_id, now=now)
                revoked.append(credential)
        session.delete(target)
        audit.record(session, account_id=account_id, user_id=actor_id, action=AuditAction.MEMBER_REMOVED,
                     detail=f"{user.email}; revoked {len(revoked)}, kept {len(kept)}", now=now)
        _tell(session, owners_before, template="team_member_removed", now=now, account=account,
              actor=session.get(User, actor_id), member=user, revoked=revoked, kept=kept)
    log.info("member removed account_id=%s membership_id=%s revoked=%s kept=%s", account_id, membership_id,
             len(revoked), len(kept))
    return Removal(user=user, revoked=revoked, kept=kept)
