"""Single sign-on with OpenID Connect: the providers, the sign-in, password login's switch.

The installation's owner configures providers (``OidcProvider``); the client secret is
stored encrypted (``app.crypto``) and never shown back. A sign-in is the authorization
code flow with PKCE (S256), ``state`` and ``nonce``: the pending flow lives in Redis under
the hash of its state for at most ten minutes, and the browser's session holds the
state of at most one pending flow per provider. The callback must bring back that state,
and consumes the flow (GETDEL) before anything else, so a replayed callback finds
nothing. The protocol itself (discovery, code exchange, id token checks) is
``app.accounts.oidc``.

Who gets in: a verified email (``email_verified`` true) in one of the provider's
allowed domains (exact, case-insensitive; no subdomains). The user is found by the
provider's subject; else an account with that email is linked (audited); else one is
created in the provider's team, with the role its groups map to (the highest of the
matching groups) or the default role. Single sign-on never grants ``owner``: the
mapping and the default role stop at ``admin`` (an owner is made on the members page,
by an owner). The role applies when the account is created; afterwards roles are the
members page's business.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import time
from dataclasses import dataclass

from flask import session
from sqlalchemy import func, select

from app import audit, crypto, names
from app.accounts import oidc
from app.extensions import db, redis
from app.models import Installation, Membership, Role, Team, User
from app.models.base import utcnow
from app.models.sso import OidcIdentity, OidcProvider

SECRET_CONTEXT = "oidc-client-secret"
FLOW_SECONDS = 600
SESSION_KEY = "sso_flows"
# The highest role single sign-on hands out (see the module's docstring).
MAX_ROLE = Role.admin
SSO_ROLES = tuple(role for role in Role if not role.allows(Role.owner))
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[a-z0-9.-]{1,253}$")


class ProviderInvalid(ValueError):
    """A provider's settings were refused; ``errors`` maps each field to its message."""

    def __init__(self, errors: dict[str, str]):
        super().__init__("; ".join(errors.values()))
        self.errors = errors


class LoginRefused(Exception):
    """A sign-in was refused. ``reason`` goes to the audit log; the message to the page."""

    def __init__(self, reason: str, message: str, status: int = 403):
        super().__init__(message)
        self.reason = reason
        self.status = status


class PasswordLoginRefused(ValueError):
    """Password login cannot be turned off now (no enabled provider); says why."""


def _now() -> float:
    return time.time()


# ---- providers -----------------------------------------------------------------------


def providers() -> list[OidcProvider]:
    return list(db.session.scalars(select(OidcProvider).order_by(OidcProvider.name)))


def enabled_providers() -> list[OidcProvider]:
    query = select(OidcProvider).where(OidcProvider.enabled).order_by(OidcProvider.name)
    return list(db.session.scalars(query))


def enabled_provider(slug: str) -> OidcProvider | None:
    return db.session.scalar(
        select(OidcProvider).where(OidcProvider.slug == slug, OidcProvider.enabled)
    )


def teams() -> list[Team]:
    """The teams new users may join: every team of the installation."""
    return list(db.session.scalars(select(Team).order_by(Team.name)))


def group_roles_text(mapping: dict[str, str] | None) -> str:
    return "\n".join(f"{group}={role}" for group, role in (mapping or {}).items())


def parse_group_roles(text: str | None) -> dict[str, str]:
    """``group=role`` lines (blank lines ignored) into a mapping; roles up to admin."""
    mapping: dict[str, str] = {}
    for number, raw in enumerate((text or "").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        group, sep, role = (part.strip() for part in line.partition("="))
        if not sep or not group or not role:
            raise names.InvalidValue(f"Line {number}: write group=role.")
        if role not in {r.value for r in SSO_ROLES}:
            raise names.InvalidValue(
                f"Line {number}: the role must be viewer, developer or admin (single sign-on "
                "never makes an owner)."
            )
        mapping[group[:200]] = role
    return mapping


def parse_domains(text: str | None) -> str:
    """Space- or comma-separated email domains, lowercased, without a trailing dot."""
    found: list[str] = []
    for word in (text or "").replace(",", " ").split():
        domain = names.hostname(word.lower(), "Each allowed domain")
        if "." not in domain:
            raise names.InvalidValue(f"{domain} is not a full domain such as example.com.")
        if domain not in found:
            found.append(domain)
    if not found:
        raise names.InvalidValue("Name at least one email domain, such as example.com.")
    return " ".join(found)


@dataclass
class ProviderFields:
    """What the provider form sends; ``client_secret`` blank keeps the stored one."""

    slug: str
    name: str
    discovery_url: str
    client_id: str
    client_secret: str
    allowed_domains: str
    team_id: int | None
    default_role: str
    groups_claim: str
    group_roles: str
    enabled: bool


def _parsed(fields: ProviderFields, errors: dict[str, str]) -> dict:
    """The values that have a parsing rule, normalised; each failure goes into ``errors``."""
    values: dict = {"name": fields.name.strip(), "client_id": fields.client_id.strip(),
                    "groups_claim": fields.groups_claim.strip() or None,
                    "enabled": fields.enabled}  # fmt: skip
    rules = {
        "slug": lambda: names.slug(fields.slug.strip(), "The slug"),
        "allowed_domains": lambda: parse_domains(fields.allowed_domains),
        "group_roles": lambda: parse_group_roles(fields.group_roles),
        "discovery_url": lambda: oidc.check_url(
            oidc.discovery_url(fields.discovery_url), "discovery URL"
        ),
    }
    for key, rule in rules.items():
        try:
            values[key] = rule()
        except names.InvalidValue as exc:
            errors[key] = str(exc)
    if len(fields.slug.strip()) > 40:
        errors["slug"] = "The slug is limited to 40 characters."
    return values


def _checked(fields: ProviderFields, provider: OidcProvider | None) -> dict:
    errors: dict[str, str] = {}
    values = _parsed(fields, errors)
    slug_query = select(OidcProvider.id).where(OidcProvider.slug == values.get("slug"))
    taken = db.session.scalar(slug_query)
    if "slug" not in errors and taken is not None and (provider is None or taken != provider.id):
        errors["slug"] = "Another provider has this slug."
    for key, what in (("name", "a name"), ("client_id", "the client id")):
        if not values[key]:
            errors[key] = f"Enter {what}."
    if not fields.client_secret and provider is None:
        errors["client_secret"] = "Enter the client secret."
    if fields.team_id is None or db.session.get(Team, fields.team_id) is None:
        errors["team_id"] = "Choose the team new users join."
    if fields.default_role not in {r.value for r in SSO_ROLES}:
        errors["default_role"] = "Choose viewer, developer or admin."
    if values.get("group_roles") and not values["groups_claim"]:
        errors["groups_claim"] = "Name the claim that lists the groups."
    if provider is not None and provider.enabled and not fields.enabled and _locks_out(provider):
        errors["enabled"] = _LOCKOUT
    if "discovery_url" not in errors:
        try:
            oidc.fetch_discovery(values["discovery_url"])
        except oidc.ProviderError as exc:
            errors["discovery_url"] = str(exc)
    if errors:
        raise ProviderInvalid(errors)
    return values


_LOCKOUT = (
    "Password login is off: turn it on first, or keep another provider enabled, so that "
    "members can still sign in."
)


def _locks_out(provider: OidcProvider) -> bool:
    """Whether disabling or deleting ``provider`` leaves password login off with no way in."""
    others = [p for p in enabled_providers() if p.id != provider.id]
    return not password_login_on() and not others


def save_provider(provider: OidcProvider | None, fields: ProviderFields) -> OidcProvider:
    """Create (``provider`` None) or update a provider, after every check passed.

    The discovery document is fetched and checked before anything is stored. Raises
    :class:`ProviderInvalid` with a message per field. Audited (``sso.provider_saved``,
    never the secret) and committed."""
    values = _checked(fields, provider)
    created = provider is None
    if provider is None:
        provider = OidcProvider()
        db.session.add(provider)
    for key, value in values.items():
        setattr(provider, key, value)
    provider.team_id = fields.team_id
    provider.default_role = fields.default_role
    if fields.client_secret:
        provider.client_secret = crypto.encrypt(fields.client_secret, context=SECRET_CONTEXT)
    db.session.flush()
    audit.record(audit.Action.SSO_PROVIDER_SAVED, target=provider, slug=provider.slug,
                 created=created, secret_changed=bool(fields.client_secret))  # fmt: skip
    db.session.commit()
    return provider


def delete_provider(provider: OidcProvider) -> None:
    """Delete a provider and the identities it vouched for (their accounts stay)."""
    if provider.enabled and _locks_out(provider):
        raise PasswordLoginRefused(_LOCKOUT)
    audit.record(audit.Action.SSO_PROVIDER_DELETED, target=provider, slug=provider.slug)
    db.session.delete(provider)
    db.session.commit()


# ---- password login ------------------------------------------------------------------


def password_login_on() -> bool:
    value = db.session.scalar(select(Installation.password_login).where(Installation.id == 1))
    return value is None or bool(value)


def is_owner_somewhere(user_id: int) -> bool:
    """The installation's owner, or an owner of some team."""
    owner = db.session.scalar(select(Installation.owner_id).where(Installation.id == 1))
    if owner == user_id:
        return True
    query = select(Membership.id).where(
        Membership.user_id == user_id, Membership.role == Role.owner.value
    )
    return db.session.scalar(query.limit(1)) is not None


def password_allowed(user: User) -> bool:
    """Whether ``user`` may sign in with a password: always while password login is on;
    when it is off, only owners (of a team or of the installation)."""
    return password_login_on() or is_owner_somewhere(user.id)


def set_password_login(on: bool) -> None:
    """Turn password login on, or off for everyone but owners (refused without an enabled
    provider: nobody else could sign in). Audited and committed."""
    if not on and not enabled_providers():
        raise PasswordLoginRefused(
            "Enable a single sign-on provider first: with password login off, members "
            "other than owners can only sign in through one."
        )
    installation = db.session.get(Installation, 1)
    if installation.password_login == on:
        return
    installation.password_login = on
    audit.record(audit.Action.PASSWORD_LOGIN_CHANGED, target=installation, password_login=on)
    db.session.commit()


# ---- the sign-in ---------------------------------------------------------------------


def _flow_key(state: str) -> str:
    return "slipway:sso-flow:" + hashlib.sha256(state.encode()).hexdigest()


def begin_login(provider: OidcProvider, redirect_uri: str, next_url: str | None) -> str:
    """Start a sign-in: a new state, nonce and PKCE verifier; returns the provider's URL.

    A flow already pending for this provider in this session is dropped."""
    try:
        metadata = oidc.fetch_discovery(provider.discovery_url)
    except oidc.ProviderError as exc:
        raise LoginRefused("discovery_failed", f"The identity provider: {exc}", 400) from None
    state, nonce = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    verifier = secrets.token_urlsafe(64)
    flows = dict(session.get(SESSION_KEY) or {})
    if flows.get(provider.slug):
        redis.client.delete(_flow_key(flows[provider.slug]))
    record = {"provider_id": provider.id, "nonce": nonce, "verifier": verifier,
              "created": _now(), "next": next_url or ""}  # fmt: skip
    redis.client.set(_flow_key(state), json.dumps(record), ex=FLOW_SECONDS)
    flows[provider.slug] = state
    session[SESSION_KEY] = flows
    return oidc.authorization_url(
        metadata, client_id=provider.client_id, redirect_uri=redirect_uri, state=state,
        nonce=nonce, verifier=verifier,
    )  # fmt: skip


def _take_flow(provider: OidcProvider, state: str | None) -> dict:
    """The pending flow the callback's ``state`` names, consumed (it cannot be used twice)."""
    flows = dict(session.get(SESSION_KEY) or {})
    expected = flows.pop(provider.slug, None)
    session[SESSION_KEY] = flows
    if not state or not expected or not hmac.compare_digest(state.encode(), expected.encode()):
        if expected:
            redis.client.delete(_flow_key(expected))  # this browser's flow ends here too
        raise LoginRefused(
            "state_mismatch",
            "This sign-in was not started here (its state does not match). Start again.",
            400,
        )
    raw = redis.client.getdel(_flow_key(state))
    if raw is None:
        raise LoginRefused(
            "flow_expired", "This sign-in has expired or was already used. Start again.", 400
        )
    record = json.loads(raw)
    if record.get("provider_id") != provider.id or _now() - record["created"] > FLOW_SECONDS:
        raise LoginRefused(
            "flow_expired", "This sign-in has expired or was already used. Start again.", 400
        )
    return record


def complete_login(
    provider: OidcProvider, args: dict, redirect_uri: str
) -> tuple[User, str | None]:
    """Finish a sign-in from the callback's query ``args``: the user and where to go next.

    Raises :class:`LoginRefused` (audited as ``sso.login_failed`` with the reason, never a
    token); nothing is logged in then."""
    try:
        record = _take_flow(provider, args.get("state"))
        if args.get("error"):
            error = re.sub(r"[^a-z_]", "", str(args["error"]))[:40] or "error"
            raise LoginRefused(f"provider_{error}", f"The identity provider said: {error}.")
        if not args.get("code"):
            raise LoginRefused("no_code", "The identity provider sent no code.", 400)
        claims = _claims(provider, record, args["code"], redirect_uri)
        user = _user_for(provider, claims)
    except LoginRefused as exc:
        db.session.rollback()
        audit.record_counted(
            audit.Action.SSO_LOGIN_FAILED, key=f"{provider.slug}|{exc.reason}",
            provider=provider.slug, reason=exc.reason,
        )  # fmt: skip
        db.session.commit()
        raise
    user.last_login_at = utcnow()
    audit.record(audit.Action.SSO_LOGIN_SUCCEEDED, user_id=user.id, target=user,
                 provider=provider.slug)  # fmt: skip
    db.session.commit()
    return user, record.get("next") or None


def _claims(provider: OidcProvider, record: dict, code: str, redirect_uri: str) -> dict:
    try:
        metadata = oidc.fetch_discovery(provider.discovery_url)
        secret = crypto.decrypt_stored(
            provider.client_secret, context=SECRET_CONTEXT, what="The client secret",
            remedy="enter it again on the provider's settings.",
        )  # fmt: skip
        token = oidc.exchange_code(
            metadata, client_id=provider.client_id, client_secret=secret,
            redirect_uri=redirect_uri, code=code, verifier=record["verifier"],
        )  # fmt: skip
    except (oidc.ProviderError, crypto.SecretError) as exc:
        raise LoginRefused("token_exchange_failed", str(exc), 400) from None
    try:
        return oidc.validate_id_token(
            metadata, token["id_token"], client_id=provider.client_id, nonce=record["nonce"],
            access_token=token.get("access_token"),
        )  # fmt: skip
    except oidc.TokenRefused as exc:
        raise LoginRefused(exc.reason, str(exc)) from None


def _email(provider: OidcProvider, claims: dict) -> str:
    if claims.get("email_verified") not in (True, "true"):
        raise LoginRefused(
            "email_unverified", "The identity provider has not verified your email address."
        )
    email = str(claims.get("email") or "").strip().lower()
    if not EMAIL_RE.fullmatch(email) or ".." in email:
        raise LoginRefused("email_invalid", "The identity provider sent no usable email address.")
    domain = email.rsplit("@", 1)[1]
    if domain not in (provider.allowed_domains or "").split():
        raise LoginRefused(
            "domain_not_allowed", f"Accounts of {domain} may not sign in with {provider.name}."
        )
    return email


def role_for(provider: OidcProvider, claims: dict) -> Role:
    """The highest role the user's groups map to, else the default; never above admin."""
    groups = claims.get(provider.groups_claim) if provider.groups_claim else None
    if isinstance(groups, str):
        groups = groups.split()
    mapped = [
        Role(provider.group_roles[g])
        for g in (groups if isinstance(groups, list) else [])
        if isinstance(g, str) and g in (provider.group_roles or {})
    ]
    role = max(mapped, key=lambda r: r.rank) if mapped else Role(provider.default_role)
    return role if MAX_ROLE.allows(role) else MAX_ROLE


def _user_for(provider: OidcProvider, claims: dict) -> User:
    subject = str(claims.get("sub") or "")
    if not subject or len(subject) > 255:
        raise LoginRefused("no_subject", "The identity provider sent no usable subject.")
    email = _email(provider, claims)
    identity = db.session.scalar(
        select(OidcIdentity).where(
            OidcIdentity.provider_id == provider.id, OidcIdentity.subject == subject
        )
    )
    if identity is not None:
        return identity.user
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if user is not None:
        return _link(provider, user, subject)
    return _create(provider, claims, subject, email)


def _link(provider: OidcProvider, user: User, subject: str) -> User:
    other = db.session.scalar(
        select(OidcIdentity.id).where(
            OidcIdentity.provider_id == provider.id, OidcIdentity.user_id == user.id
        )
    )
    if other is not None:
        # The provider vouches for this address under another subject now: an account
        # recreated there, or an address reassigned. Not silently the same person.
        raise LoginRefused(
            "identity_conflict",
            f"This email address is linked to another {provider.name} account. Ask an owner.",
        )
    db.session.add(OidcIdentity(provider_id=provider.id, subject=subject, user_id=user.id))
    audit.record(audit.Action.SSO_IDENTITY_LINKED, user_id=user.id, target=user,
                 provider=provider.slug)  # fmt: skip
    return user


def _display_name(claims: dict, email: str) -> str:
    name = claims.get("name")
    if not isinstance(name, str) or not name.strip():
        parts = [claims.get("given_name"), claims.get("family_name")]
        name = " ".join(p for p in parts if isinstance(p, str) and p.strip())
    return (name.replace("\x00", "").strip() or email.split("@")[0])[:100]


def _create(provider: OidcProvider, claims: dict, subject: str, email: str) -> User:
    team = db.session.get(Team, provider.team_id) if provider.team_id else None
    if team is None:
        raise LoginRefused(
            "no_team", f"{provider.name} has no team for new users. Ask the installation's owner."
        )
    user = User(email=email, name=_display_name(claims, email))
    # A password nobody knows: the account signs in through the provider (or sets one by
    # "Forgot password?"). A real hash, so a password try costs what any other does.
    user.set_password(secrets.token_urlsafe(32))
    db.session.add(user)
    db.session.flush()
    role = role_for(provider, claims)
    db.session.add(Membership(team_id=team.id, user_id=user.id, role=role.value))
    db.session.add(OidcIdentity(provider_id=provider.id, subject=subject, user_id=user.id))
    audit.record(audit.Action.SSO_USER_CREATED, team_id=team.id, user_id=user.id, target=user,
                 provider=provider.slug, role=role.value)  # fmt: skip
    return user
