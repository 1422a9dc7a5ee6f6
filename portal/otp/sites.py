"""OTP sites: registration (one per domain per account), settings, the ownership proof, the
blocks an owner lifts, and the credentials limited to some sites."""

import hmac
import secrets
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy import Row, Select, bindparam, delete, exists, select, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from portal import audit, db
from portal.audit import AuditAction
from portal.credentials import service as credentials
from portal.credentials.models import Credential
from portal.credentials.service import Principal
from portal.messaging import validation
from portal.otp import ownership, rules
from portal.otp.errors import NotLiftable, ScopeMissing, SiteExists, SiteNotAllowed, SiteNotFound
from portal.otp.models import (SITE_DOMAIN_TAKEN, BlockReason, OtpBlocked, OtpCredentialSite, OtpSite,
                               TemplateLanguage)

RECHECK_EVERY = timedelta(days=30)
Given = object  # a field's value as the client sent it


def require_scope(principal: Principal) -> None:
    """Every OTP call of the API needs the `otp` scope."""
    if "otp" not in principal.scopes:
        raise ScopeMissing("otp")


def register_site(*, session: Session, account_id: int, website: Given, now: datetime,
                  display_name: str | None = None, language: TemplateLanguage = TemplateLanguage.JA) -> OtpSite:
    """Register a website (a URL or a domain) with the default settings and a fresh ownership
    token. One site per domain per account: SiteExists otherwise."""
    form = validation.Form({"website": website})
    domain = form.read("website", rules.domain_of)
    form.raise_if_invalid()
    settings = rules.default_settings(display_name or domain, language)
    try:
        with db.write(session):
            if _domain_taken(session, account_id, domain):
                raise SiteExists(domain)
            site = OtpSite(account_id=account_id, domain=domain, ownership_token=secrets.token_urlsafe(32),
                           created_at=now, **_columns(settings))
            session.add(site)
            session.flush()
    except IntegrityError as clash:  # registered by a concurrent request meanwhile
        if db.violated_constraint(clash) == SITE_DOMAIN_TAKEN:
            raise SiteExists(domain) from None
        raise
    return site


def _domain_taken(session: Session, account_id: int, domain: str) -> bool:
    return session.scalars(select(OtpSite.id).where(OtpSite.account_id == account_id,
                                                    OtpSite.domain == domain)).first() is not None


def register_site_by_api(*, session: Session, principal: Principal, website: Given, now: datetime) -> OtpSite:
    """The API's registration: the credential needs the `otp` scope."""
    require_scope(principal)
    return register_site(session=session, account_id=principal.account_id, website=website, now=now)


def _columns(settings: rules.Settings) -> dict:
    values = asdict(settings)
    values["allowed_countries"] = ",".join(settings.allowed_countries)
    values["display_name"] = settings.display_name.strip()
    return values


def update_settings(*, session: Session, account_id: int, site_id: int, settings: rules.Settings,
                    now: datetime) -> OtpSite:
    """Replace a site's settings with `settings`, all checked first (InvalidFields names every
    wrong one); codes already sent keep the lifetime and attempts they were sent with."""
    rules.checked(settings)
    with db.write(session):
        site = own_site(session, account_id, site_id)
        for name, value in _columns(settings).items():
            setattr(site, name, value)
    return site


def site_of(*, session: Session, account_id: int, site_id: int) -> OtpSite:
    with db.read(session):
        return own_site(session, account_id, site_id)


def sites_of(*, session: Session, account_id: int) -> list[OtpSite]:
    with db.read(session):
        return list(session.scalars(select(OtpSite).where(OtpSite.account_id == account_id).order_by(OtpSite.domain)))


def mark_proven(*, session: Session, account_id: int, site_id: int, proven: bool, now: datetime) -> OtpSite:
    """Record the result of an ownership check (the token file found, or not any more)."""
    with db.write(session):
        site = own_site(session, account_id, site_id)
        site.checked_at = now
        site.proven_at = (site.proven_at or now) if proven else None
    return site


def check_ownership(*, session: Session, account_id: int, site_id: int, fetch: ownership.Fetch, https: bool,
                    now: datetime) -> bool:
    """Fetch the site's token file (outside any transaction) and record the result: proven
    while the file holds the site's token, unproven again once it does not."""
    site = site_of(session=session, account_id=account_id, site_id=site_id)
    text = fetch(ownership.token_url(site.domain, https=https))
    proven = text is not None and hmac.compare_digest(text.strip().encode(), site.ownership_token.encode())
    mark_proven(session=session, account_id=account_id, site_id=site_id, proven=proven, now=now)
    return proven


def sites_to_recheck(*, session: Session, now: datetime, limit: int = 100) -> list[tuple[int, int]]:
    """(account_id, site_id) of proven sites last checked a month ago or more: the worker
    checks them again."""
    with db.read(session):
        return [tuple(row) for row in session.execute(
            select(OtpSite.account_id, OtpSite.id).where(OtpSite.proven_at.is_not(None),
                                                         OtpSite.checked_at <= now - RECHECK_EVERY)
            .order_by(OtpSite.checked_at).limit(limit))]


def resume_site(*, session: Session, account_id: int, site_id: int, user_id: int, now: datetime) -> OtpSite:
    """An owner lifts the pause: the completion rate is counted afresh from now on."""
    with db.write(session):
        site = own_site(session, account_id, site_id)
        site.paused_at, site.resumed_at = None, now
        session.execute(update(OtpBlocked).where(
            OtpBlocked.site_id == site.id, OtpBlocked.reason == BlockReason.PAUSED, OtpBlocked.lifted_at.is_(None),
        ).values(lifted_at=now, lifted_by=user_id))
    return site


LIFTABLE = (BlockReason.NUMBER_LIMIT, BlockReason.LOCKED, BlockReason.IP_LIMIT, BlockReason.PREFIX_LIMIT,
            BlockReason.PAUSED)  # a country or an unproven site is lifted by the settings or the proof


def lift_block(*, session: Session, account_id: int, block_id: int, user_id: int, now: datetime) -> OtpBlocked:
    """An owner lifts a block: what was counted against the number, range or IP before now no
    longer counts (a locked number's wrong attempts included); a paused site is resumed.
    NotLiftable for a country or an unproven site."""
    with db.write(session):
        block = session.get(OtpBlocked, block_id, populate_existing=True)
        if block is None or block.account_id != account_id:
            raise SiteNotFound("block")
        if block.reason not in LIFTABLE:
            raise NotLiftable(block.reason)
        if block.reason == BlockReason.PAUSED:
            resume_site(session=session, account_id=account_id, site_id=block.site_id, user_id=user_id, now=now)
        block.lifted_at, block.lifted_by = now, user_id
    return block


def blocked_of(*, session: Session, account_id: int, site_id: int, limit: int = 100) -> list[OtpBlocked]:
    with db.read(session):
        own_site(session, account_id, site_id)
        return list(session.scalars(select(OtpBlocked).where(OtpBlocked.site_id == site_id)
                                    .order_by(OtpBlocked.id.desc()).limit(limit)))


def own_site(session: Session, account_id: int, site_id: int) -> OtpSite:
    """The account's site, or SiteNotFound (another account's site is not found either)."""
    site = session.get(OtpSite, site_id, populate_existing=True)
    if site is None or site.account_id != account_id:
        raise SiteNotFound("site")
    return site


_CREDENTIAL_SITES = OtpCredentialSite.__table__
SITE_FOR = (  # the site, whether the credential is limited to some sites, and whether this is one of them
    select(OtpSite,
           exists().where(_CREDENTIAL_SITES.c.credential_id == bindparam("credential_id")).label("limited"),
           exists().where(_CREDENTIAL_SITES.c.credential_id == bindparam("credential_id"),
                          _CREDENTIAL_SITES.c.site_id == OtpSite.id).label("allowed"))
    .where(OtpSite.account_id == bindparam("account_id"), OtpSite.domain == bindparam("domain"))
    .execution_options(populate_existing=True)
)


def site_for(session: Session, principal: Principal, domain: str) -> OtpSite:
    """The site of the caller's account with this domain, if the credential may use it."""
    return site_with(session, principal, domain, SITE_FOR, {})[0]


def site_with(session: Session, principal: Principal, domain: str, query: Select, params: dict) -> tuple[OtpSite, Row]:
    """site_for with more read in the same statement: `query` is SITE_FOR with more columns
    (and joins), `params` their parameters; the site and the whole row."""
    found = session.execute(query, params | {"credential_id": principal.credential_id,
                                             "account_id": principal.account_id, "domain": domain}).first()
    if found is None:
        raise SiteNotFound()
    if found.limited and not found.allowed:
        raise SiteNotAllowed()
    return found[0], found


def limit_credential(*, session: Session, account_id: int, user_id: int, credential_id: int, site_ids: list[int],
                     now: datetime) -> tuple[Credential, list[OtpSite]]:
    """Limit an unrevoked API credential of the account to these of its sites (none: every
    site, those registered later too); audited. Returns it and the sites it is now limited to.
    SiteNotFound("credential") or SiteNotFound("site") for anything not the account's."""
    with db.write(session):
        credential = session.scalars(select(Credential).where(Credential.id == credential_id)
                                     .with_for_update()).first()  # one change at a time per credential
        if credential is None or credential.account_id != account_id or credential.revoked_at is not None:
            raise SiteNotFound("credential")
        chosen = {site_id: own_site(session, account_id, site_id) for site_id in site_ids}
        sites = sorted(chosen.values(), key=lambda site: site.domain)
        session.execute(delete(OtpCredentialSite).where(OtpCredentialSite.credential_id == credential_id))
        session.add_all(OtpCredentialSite(credential_id=credential_id, site_id=site.id) for site in sites)
        audit.record(session, account_id=account_id, user_id=user_id, action=AuditAction.CREDENTIAL_SITES_LIMITED,
                     detail=f"{credential.name} ({credential.sid}): "
                            f"{', '.join(site.domain for site in sites) or 'every OTP site'}", now=now)
    return credential, sites


def create_credential(*, session: Session, account_id: int, user_id: int, name: str, mode: str, scopes: list[str],
                      networks: list[str], monthly_cap: int | None, site_ids: list[int], now: datetime,
                      expires_at: datetime | None = None) -> tuple[Credential, str]:
    """credentials.create, and the new credential limited to these sites (none: every site) in
    the same unit of work: a site that is not the account's leaves no credential behind."""
    with db.write(session):
        credential, token = credentials.create(
            session=session, account_id=account_id, user_id=user_id, name=name, mode=mode, scopes=scopes,
            networks=networks, monthly_cap=monthly_cap, now=now, expires_at=expires_at)
        if site_ids:
            limit_credential(session=session, account_id=account_id, user_id=user_id, credential_id=credential.id,
                             site_ids=site_ids, now=now)
    return credential, token


@dataclass(frozen=True)
class SiteLimits:
    """An account's OTP sites, and the sites each of its limited credentials may use (a
    credential not in `limits` may use every site)."""

    sites: list[OtpSite]
    limits: dict[int, list[OtpSite]]


def site_limits_of(*, session: Session, account_id: int) -> SiteLimits:
    with db.read(session):
        sites = list(session.scalars(select(OtpSite).where(OtpSite.account_id == account_id).order_by(OtpSite.domain)))
        by_id = {site.id: site for site in sites}
        limits: dict[int, list[OtpSite]] = {}
        for credential_id, site_id in session.execute(
                select(OtpCredentialSite.credential_id, OtpCredentialSite.site_id)
                .where(OtpCredentialSite.site_id.in_(by_id))):
            limits.setdefault(credential_id, []).append(by_id[site_id])
    return SiteLimits(sites, {credential_id: sorted(limited, key=lambda site: site.domain)
                              for credential_id, limited in limits.items()})


def sites_of_credential(*, session: Session, account_id: int, credential_id: int) -> list[int]:
    """The ids of the sites a credential is limited to (empty: every site of its account)."""
    with db.read(session):
        return sorted(session.scalars(select(OtpCredentialSite.site_id).join(OtpSite).where(
            OtpCredentialSite.credential_id == credential_id, OtpSite.account_id == account_id)))
