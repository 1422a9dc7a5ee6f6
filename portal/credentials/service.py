"""API credentials: create, rotate, revoke, list, and authenticate a request.

A token is shown once, at creation or rotation; the database holds its SHA-256 digest, a
display prefix and its last four characters. Revocation takes effect on the next request
(every request reads the database; nothing is cached). "Last used" is written at most once a
minute per credential, by one conditional UPDATE.

A credential's callback signing secret is random and stored as it is (the worker signs with
it); it is shown only on demand after a recent password, and rotates with an overlap during
which callbacks carry one signature per secret."""

import ipaddress
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, or_, select, update
from sqlmodel import Session

from portal import audit, db, mail
from portal.accounts.models import Account, Membership, Role, User
from portal.accounts.queries import lock_account
from portal.audit import AuditAction
from portal.credentials import tokens
from portal.credentials.models import CallbackSecret, Credential, CredentialMode, CredentialSecret, Scope
from portal.ledger import steps as ledger_steps
from portal.ledger.models import CreditState

log = logging.getLogger("portal.credentials")
MAX_OVERLAP = timedelta(days=7)
LAST_USED_EVERY = timedelta(minutes=1)
MAX_NETWORKS = 50
MANAGERS = (Role.OWNER, Role.DEVELOPER)  # who may create, rotate and revoke credentials
IP_LENGTH = 45  # the longest written form of an address (IPv6 with an IPv4 tail)


class InvalidCredential(ValueError):
    """`field` names what is wrong: name, scopes, networks, monthly_cap, overlap."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


class UnknownCredential(LookupError):
    pass


class NotAManager(PermissionError):
    """The person is no longer an owner or developer of the account (removed or demoted)."""


class Unauthenticated(Exception):
    """No valid SID and token: answered 401 without saying which half was wrong."""


class NotFromHere(Exception):
    """The credential's IP allow-list does not include the caller."""


@dataclass(frozen=True)
class Principal:
    """Who is calling the API: the credential and its account. Without a credential
    (`credential_id` None), Chotto itself sending for the account (messaging.service.chotto_principal)."""

    credential_id: int | None
    sid: str | None
    account_id: int
    mode: CredentialMode
    scopes: frozenset[Scope]
    monthly_cap: int | None
    allowed_countries: tuple[str, ...] = ("JP",)
    has_purchased: bool = False  # read before the account is locked: it only ever turns true


def parse_networks(text: str) -> list[str]:
    networks = []
    for raw in (text or "").replace(",", "\n").splitlines():
        raw = raw.strip()
        if not raw:
            continue
        try:
            networks.append(str(ipaddress.ip_network(raw, strict=False)))
        except ValueError:
            raise InvalidCredential("networks", raw) from None
    if len(networks) > MAX_NETWORKS:
        raise InvalidCredential("networks", f"at most {MAX_NETWORKS}")
    return networks


def _check(name: str, scopes: list[str], monthly_cap: int | None) -> None:
    if not name.strip() or len(name) > 100:
        raise InvalidCredential("name", name)
    if not scopes or any(scope not in list(Scope) for scope in scopes):
        raise InvalidCredential("scopes", ",".join(scopes))
    if monthly_cap is not None and monthly_cap <= 0:
        raise InvalidCredential("monthly_cap", str(monthly_cap))


def create(
    *, session: Session, account_id: int, user_id: int, name: str, mode: str, scopes: list[str],
    networks: list[str], monthly_cap: int | None, now: datetime, expires_at: datetime | None = None,
) -> tuple[Credential, str]:
    """A new credential and its token (the only time the token exists outside the caller)."""
    _check(name, scopes, monthly_cap)
    if mode not in list(CredentialMode):
        raise InvalidCredential("mode", mode)
    with db.write(session):
        _lock_manager(session, account_id=account_id, user_id=user_id)
        credential = Credential(
            sid=tokens.new_sid(), account_id=account_id, name=name.strip(), mode=CredentialMode(mode),
            scopes=",".join(scope for scope in Scope if scope in scopes), allowed_networks="\n".join(networks),
            monthly_cap=monthly_cap, created_by=user_id, created_at=now,
        )
        if expires_at is not None and expires_at <= now:
            raise InvalidCredential("expires_at", str(expires_at))
        session.add(credential)
        session.flush()
        token = _add_secret(session, credential, user_id, now, expires_at)
        _add_callback_secret(session, credential, now)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.CREDENTIAL_CREATED,
                     detail=f"{credential.name} ({credential.sid}, {mode}, {credential.scopes})", now=now)
        _tell_owners(session, account_id, "credential_created", credential, user_id, now)
    log.info("api credential created sid=%s prefix=%s account=%s by user=%s", credential.sid,
             tokens.PREFIXES[mode], account_id, user_id)
    return credential, token


def _lock_manager(session: Session, *, account_id: int, user_id: int) -> None:
    """Under the account's lock, which a member's removal also takes: a credential is either
    created before the removal (and listed by it) or refused after it, never missed."""
    lock_account(session, account_id)
    role = session.scalar(select(Membership.role).where(Membership.account_id == account_id,
                                                        Membership.user_id == user_id))
    if role not in MANAGERS:
        raise NotAManager()


def _add_secret(session: Session, credential: Credential, user_id: int, now: datetime,
                expires_at: datetime | None = None) -> str:
    token = tokens.new_token(credential.mode)
    session.add(CredentialSecret(credential_id=credential.id, digest=tokens.digest(token),
                                 prefix=tokens.PREFIXES[credential.mode], last4=token[-4:], created_by=user_id,
                                 created_at=now, expires_at=expires_at))
    return token


def _owned(session: Session, account_id: int, credential_id: int) -> Credential:
    credential = session.scalars(
        select(Credential).where(Credential.id == credential_id, Credential.account_id == account_id)
        .with_for_update()
    ).first()
    if credential is None or credential.revoked_at is not None:
        raise UnknownCredential(credential_id)
    return credential


def rotate(*, session: Session, account_id: int, user_id: int, credential_id: int, overlap: timedelta,
           now: datetime) -> tuple[Credential, str]:
    """A new token; the current ones keep working for `overlap` (0 to 7 days), then stop."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidCredential("overlap", str(overlap))
    with db.write(session):
        credential = _owned(session, account_id, credential_id)
        ends = now + overlap
        current_expiry = session.scalar(select(CredentialSecret.expires_at).where(
            CredentialSecret.credential_id == credential.id, CredentialSecret.expires_at.is_not(None),
            CredentialSecret.expires_at > now).order_by(CredentialSecret.expires_at.desc()))
        session.execute(
            update(CredentialSecret).where(
                CredentialSecret.credential_id == credential.id,
                or_(CredentialSecret.expires_at.is_(None), CredentialSecret.expires_at > ends),
            ).values(expires_at=ends)
        )
        token = _add_secret(session, credential, user_id, now,
                            current_expiry if current_expiry and current_expiry > ends else None)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.CREDENTIAL_ROTATED,
                     detail=f"{credential.name} ({credential.sid}); old token valid for {overlap}", now=now)
    log.info("api credential rotated sid=%s overlap=%s by user=%s", credential.sid, overlap, user_id)
    return credential, token


def revoke(*, session: Session, account_id: int, user_id: int, credential_id: int, now: datetime) -> Credential:
    with db.write(session):
        credential = _owned(session, account_id, credential_id)
        revoke_in_transaction(session, credential=credential, user_id=user_id, now=now)
        _tell_owners(session, account_id, "credential_revoked", credential, user_id, now)
    return credential


def revoke_in_transaction(session: Session, *, credential: Credential, user_id: int, now: datetime) -> None:
    """Revoke a credential the caller has locked, in the caller's unit of work (the caller tells
    the owners): refused from the next request on, with its audit event."""
    credential.revoked_at = now
    audit.record(session, account_id=credential.account_id, user_id=user_id, action=AuditAction.CREDENTIAL_REVOKED,
                 detail=f"{credential.name} ({credential.sid})", now=now)
    log.info("api credential revoked sid=%s by user=%s", credential.sid, user_id)


def live_known_to(session: Session, *, account_id: int, user_id: int, now: datetime,
                  lock: bool = False) -> list[Credential]:
    """The account's unrevoked credentials whose token `user_id` may know: those they created,
    and those with a still-working token they issued by rotating (`lock`: FOR UPDATE)."""
    issued = select(CredentialSecret.credential_id).where(
        CredentialSecret.created_by == user_id,
        or_(CredentialSecret.expires_at.is_(None), CredentialSecret.expires_at > now))
    query = select(Credential).where(
        Credential.account_id == account_id, Credential.revoked_at.is_(None),
        or_(Credential.created_by == user_id, Credential.id.in_(issued))).order_by(Credential.id)
    return list(session.scalars(query.with_for_update() if lock else query))


def _tell_owners(session: Session, account_id: int, template: str, credential: Credential, user_id: int,
                 now: datetime) -> None:
    actor = session.get(User, user_id)
    owners = session.scalars(select(User).join(Membership, Membership.user_id == User.id)
                             .where(Membership.account_id == account_id, Membership.role == Role.OWNER)).all()
    account = session.get(Account, account_id)
    for owner in owners:
        mail.queue(session, to=owner.email, template=template, language=owner.language, now=now,
                   credential=credential, actor=actor, account=account)


@dataclass(frozen=True)
class Listed:
    credential: Credential
    secrets: list[CredentialSecret]


def credentials_of(session: Session, *, account_id: int, now: datetime) -> list[Listed]:
    with db.read(session):
        rows = session.scalars(select(Credential).where(Credential.account_id == account_id)
                               .order_by(Credential.revoked_at.is_not(None), Credential.id.desc())).all()
        secrets = session.scalars(select(CredentialSecret).where(
            CredentialSecret.credential_id.in_([row.id for row in rows]),
            or_(CredentialSecret.expires_at.is_(None), CredentialSecret.expires_at > now),
        ).order_by(CredentialSecret.id)).all()
    return [Listed(row, [s for s in secrets if s.credential_id == row.id]) for row in rows]


# -- callback signing secrets -----------------------------------------------------------------


def _add_callback_secret(session: Session, credential: Credential, now: datetime) -> None:
    session.add(CallbackSecret(credential_id=credential.id, secret=tokens.new_callback_secret(), created_at=now))


def credential_of(*, session: Session, account_id: int, credential_id: int) -> Credential:
    """One credential of the account, not revoked (for a page about it)."""
    with db.read(session):
        credential = session.scalars(select(Credential).where(
            Credential.id == credential_id, Credential.account_id == account_id, Credential.revoked_at.is_(None))).first()
    if credential is None:
        raise UnknownCredential(credential_id)
    return credential


def _callback_secrets(session: Session, credential_id: int, now: datetime) -> list[CallbackSecret]:
    """The secrets in force, newest first."""
    return list(session.scalars(select(CallbackSecret).where(
        CallbackSecret.credential_id == credential_id,
        or_(CallbackSecret.expires_at.is_(None), CallbackSecret.expires_at > now),
    ).order_by(CallbackSecret.id.desc())))


def reveal_callback_secrets(*, session: Session, account_id: int, user_id: int, credential_id: int,
                            now: datetime) -> tuple[Credential, list[CallbackSecret]]:
    """The secrets in force, for the one answer that shows them; the showing is audited."""
    with db.write(session):
        credential = _owned(session, account_id, credential_id)
        shown = _callback_secrets(session, credential.id, now)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.CALLBACK_SECRET_SHOWN,
                     detail=f"{credential.name} ({credential.sid})", now=now)
    log.info("callback secret shown sid=%s to user=%s", credential.sid, user_id)
    return credential, shown


def rotate_callback_secret(*, session: Session, account_id: int, user_id: int, credential_id: int,
                           overlap: timedelta, now: datetime) -> tuple[Credential, list[CallbackSecret]]:
    """A new secret; the current ones keep signing for `overlap` (0 to 7 days), then stop."""
    if not timedelta(0) <= overlap <= MAX_OVERLAP:
        raise InvalidCredential("overlap", str(overlap))
    with db.write(session):
        credential = _owned(session, account_id, credential_id)
        ends = now + overlap
        session.execute(update(CallbackSecret).where(
            CallbackSecret.credential_id == credential.id,
            or_(CallbackSecret.expires_at.is_(None), CallbackSecret.expires_at > ends),
        ).values(expires_at=ends))
        _add_callback_secret(session, credential, now)
        session.flush()
        shown = _callback_secrets(session, credential.id, now)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.CALLBACK_SECRET_ROTATED,
                     detail=f"{credential.name} ({credential.sid}); old secret signs for {overlap}", now=now)
    log.info("callback secret rotated sid=%s overlap=%s by user=%s", credential.sid, overlap, user_id)
    return credential, shown


def callback_signing_secrets(*, session: Session, sid: str, now: datetime) -> list[str]:
    """What signs a callback of credential `sid` now: one secret, two during an overlap."""
    with db.read(session):
        credential_id = session.scalar(select(Credential.id).where(Credential.sid == sid))
        return [row.secret for row in _callback_secrets(session, credential_id, now)] if credential_id else []


# -- authentication ---------------------------------------------------------------------------


_CREDENTIALS, _SECRETS = Credential.__table__, CredentialSecret.__table__
_AUTHENTICATE = (  # Core, not ORM: this runs on every API request
    select(_CREDENTIALS.c.id, _CREDENTIALS.c.sid, _CREDENTIALS.c.account_id, _CREDENTIALS.c.mode, _CREDENTIALS.c.scopes,
           _CREDENTIALS.c.monthly_cap, _CREDENTIALS.c.allowed_networks, _CREDENTIALS.c.last_used_at,
           Account.__table__.c.allowed_countries, CreditState.__table__.c.has_purchased)
    .select_from(_CREDENTIALS.join(_SECRETS, _SECRETS.c.credential_id == _CREDENTIALS.c.id)
                 .join(Account.__table__, Account.__table__.c.id == _CREDENTIALS.c.account_id)
                 .join(CreditState.__table__, CreditState.__table__.c.account_id == _CREDENTIALS.c.account_id))
    .where(_SECRETS.c.digest == bindparam("digest"), _CREDENTIALS.c.sid == bindparam("sid"),
           _CREDENTIALS.c.revoked_at.is_(None),
           or_(_SECRETS.c.expires_at.is_(None), _SECRETS.c.expires_at > bindparam("now")))
)


_AUTHENTICATE_AND_LOCK = ledger_steps.locking(_AUTHENTICATE)


def authenticate(*, session: Session, sid: str, token: str, ip: str, now: datetime,
                 lock_account: bool = False) -> Principal:
    """The request's leading read (`db.leading_read`: on PostgreSQL the request's unit of work
    continues its transaction; on SQLite it never waits for the write lock); the first request
    in a minute also notes the use in a short write unit of its own. With `lock_account`, on
    PostgreSQL, the same statement locks the credential's account for the request's unit of
    work (`ledger.steps.locked_ahead`), which then needs no statement of its own to lock it."""
    if not tokens.well_formed(token) or len(sid) != 32:
        raise Unauthenticated()
    locking = lock_account and session.get_bind().dialect.name == "postgresql"
    rows = db.leading_read(session, _AUTHENTICATE_AND_LOCK if locking else _AUTHENTICATE,
                           {"digest": tokens.digest(token), "sid": sid, "now": now})
    row = rows[0] if rows else None
    if row is None:
        raise Unauthenticated()
    if locking:
        ledger_steps.locked_ahead(session, row.account_id, rows)
    if row.allowed_networks and not _allowed(ip, row.allowed_networks):
        raise NotFromHere()
    if row.last_used_at is None or row.last_used_at <= now - LAST_USED_EVERY:
        _note_use(session, row.id, ip, now)
    return Principal(row.id, row.sid, row.account_id, row.mode, frozenset(Scope(s) for s in row.scopes.split(",") if s),
                     row.monthly_cap, tuple(c for c in (row.allowed_countries or "JP").split(",") if c),
                     bool(row.has_purchased))


def _note_use(session: Session, credential_id: int, ip: str, now: datetime) -> None:
    """One conditional UPDATE, so parallel requests write it once. An address longer than any
    written IP address is no address: it is kept cut, as a hint for the customer's eyes only."""
    with db.write(session):
        session.execute(update(Credential).where(
            Credential.id == credential_id,
            or_(Credential.last_used_at.is_(None), Credential.last_used_at <= now - LAST_USED_EVERY),
        ).values(last_used_at=now, last_used_ip=ip[:IP_LENGTH]))


def _allowed(ip: str, networks: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(address in ipaddress.ip_network(net) for net in networks.splitlines() if net)
