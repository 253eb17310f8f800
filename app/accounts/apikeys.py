"""API keys: create one (shown once), find the key a request carries, revoke.

A key is ``slw_<id>_<secret>``: the id finds the row without a scan, the secret (256
random bits) is checked against its SHA-256 in constant time. A fast hash is enough for
a random secret, where a password needs Argon2: nothing can be guessed from it.

What a key may do is the intersection of three things, checked by ``app.access`` on
every question it answers while the key is the request's credential:

- its member's role (a key never does more than the person who made it);
- its scopes, each a set of actions (:data:`SCOPES`; ``admin`` holds every action);
- its projects, when it has a list: other projects are hidden (404), and on the team
  itself it may only read, as a project-limited membership may.

A member removed from the team, or given a lower role or fewer projects, has their keys
for that team revoked (``app.accounts.members``), as their sessions end.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app, g, has_request_context, request
from sqlalchemy import select, update

from app import access, audit
from app.access import Action
from app.extensions import db
from app.models import ApiKey, Membership, Project, Team, User
from app.models.base import utcnow

TOKEN_PREFIX = "slw_"
NAME_MAX = 100

_READ = frozenset(a for a in Action if a.value.endswith(".read"))
_DEPLOY = _READ | {Action.APP_DEPLOY}
_WRITE = _DEPLOY | {
    Action.PROJECT_CREATE, Action.PROJECT_UPDATE, Action.APP_CREATE, Action.APP_UPDATE,
    Action.BACKUP_MANAGE, Action.NOTIFICATION_MANAGE, Action.DATABASE_MANAGE,
}  # fmt: skip

# Scope -> the actions it allows (the role decides the rest). Ordered narrowest first.
SCOPES: dict[str, frozenset[Action]] = {
    "read": _READ,
    "deploy": _DEPLOY,
    "write": _WRITE,
    "admin": frozenset(Action),
}
SCOPE_LABELS = {
    "read": "Read everything the member can see",
    "deploy": "Read, and deploy, cancel and roll back",
    "write": "Deploy; create and change projects, apps, variables, domains, databases, backups",
    "admin": "Everything the member's role allows, members and deletes included",
}

# A key's last use is written at most this often (a write per request would cost more
# than the request).
LAST_USED_EVERY = timedelta(minutes=1)


class KeyRefused(ValueError):
    """A key that cannot be made as asked (the message says why, for the field)."""

    def __init__(self, message: str, field: str = "scopes"):
        super().__init__(message)
        self.field = field


class KeyExceeds(KeyRefused):
    """A key asked to make (or revoke) a key broader than itself: a 403, not bad input."""


@dataclass(frozen=True)
class Credential:
    """What ``app.access`` needs of the key a request carries."""

    key_id: int
    team_id: int
    actions: frozenset[Action]
    project_ids: frozenset[int] | None  # None: every project
    scopes: tuple[str, ...] = ()


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def actions_of(scopes: list[str]) -> frozenset[Action]:
    found: frozenset[Action] = frozenset()
    for scope in scopes:
        found |= SCOPES.get(scope, frozenset())
    return found


def _checked_projects(user: User, team: Team, project_ids) -> list[int] | None:
    """The key's projects: each one of ``team``'s that ``user`` may see (and, when a key
    makes the key, that key may see); another project is refused as not there at all."""
    if project_ids is None:
        return None
    wanted = sorted({int(pid) for pid in project_ids})
    if not wanted:
        raise KeyRefused("Choose at least one project, or every project.", "projects")
    found = set(
        db.session.scalars(
            select(Project.id).where(Project.team_id == team.id, Project.id.in_(wanted))
        )
    )
    visible = access.visible_project_ids(user, team.id)
    if visible is not None:
        found &= visible
    if found != set(wanted):
        raise KeyRefused("A project is not in this team.", "projects")
    return wanted


def check_within(
    parent: ApiKey,
    scopes: list[str],
    project_ids: list[int] | None,
    expires_at: datetime | None,
    what: str = "make",
) -> None:
    """Refuse (:class:`KeyExceeds`) a key broader than ``parent``, the key of the request
    that makes or revokes it: a key never mints or removes more than it holds. Every
    action of the new key's scopes must be one of ``parent``'s (so its scopes are among
    ``parent``'s); a project-limited parent only reaches keys limited to some of its
    projects; an expiring parent (making a key) only makes keys that expire no later."""
    if not actions_of(scopes) <= actions_of(parent.scopes):
        raise KeyExceeds(
            f"This key ({', '.join(parent.scopes)}) cannot {what} a key with more scopes.", "scopes"
        )
    if parent.project_ids is not None and (
        project_ids is None or not set(project_ids) <= set(parent.project_ids)
    ):
        raise KeyExceeds(
            f"This key is limited to some projects: it can only {what} keys limited to them.",
            "project_ids",
        )
    if (
        what == "make"
        and parent.expires_at is not None
        and (expires_at is None or expires_at > parent.expires_at)
    ):
        raise KeyExceeds("This key expires: a key it makes must expire no later.", "expires_at")


def create(
    user: User,
    team: Team,
    name: str,
    scopes: list[str],
    project_ids: list[int] | None = None,
    expires_at: datetime | None = None,
    within: ApiKey | None = None,
) -> tuple[ApiKey, str]:
    """A new key for ``user`` in ``team``; returns the row and the token (shown once).
    ``within``: the key of the API request making it (:func:`check_within`)."""
    name = (name or "").strip()
    if not name or len(name) > NAME_MAX:
        raise KeyRefused(f"Give the key a name of 1 to {NAME_MAX} characters.", "name")
    scopes = [s for s in SCOPES if s in set(scopes or [])]
    if not scopes or len(scopes) != len(set(scopes or [])):
        raise KeyRefused(f"Choose scopes among {', '.join(SCOPES)}.", "scopes")
    if expires_at is not None and expires_at <= utcnow():
        raise KeyRefused("The expiry must be in the future.", "expires_at")
    if within is not None:
        check_within(within, scopes, project_ids, expires_at)
    membership = db.session.scalar(
        select(Membership).where(Membership.team_id == team.id, Membership.user_id == user.id)
    )
    if membership is None:
        raise KeyRefused("Only a member of the team can make a key for it.", "team")
    key = ApiKey(
        user_id=user.id,
        team_id=team.id,
        name=name,
        scopes=scopes,
        project_ids=_checked_projects(user, team, project_ids),
        expires_at=expires_at,
        prefix="",
        secret_hash="",
    )
    db.session.add(key)
    db.session.flush()
    secret = secrets.token_urlsafe(32)
    token = f"{TOKEN_PREFIX}{key.id}_{secret}"
    key.secret_hash = _digest(secret)
    key.prefix = token[: len(f"{TOKEN_PREFIX}{key.id}_") + 4]
    audit.record(
        audit.Action.API_KEY_CREATED, team_id=team.id, target=key, user_id=user.id,
        name=name, prefix=key.prefix, scopes=scopes, projects=key.project_ids,
        expires_at=expires_at.isoformat() if expires_at else None,
    )  # fmt: skip
    db.session.commit()
    return key, token


def parse(token: str) -> tuple[int, str] | None:
    """(key id, secret) of a well-formed token, else None."""
    if not token.startswith(TOKEN_PREFIX):
        return None
    key_id, sep, secret = token[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not key_id.isdigit() or len(key_id) > 12 or not 20 <= len(secret) <= 100:
        return None
    return int(key_id), secret


def find(token: str) -> ApiKey | None:
    """The live key ``token`` names (not revoked, not expired, its member still in the
    team), else None; its user comes loaded with it (one query). Every refusal takes the
    same path: a hash compare runs even when no row matched."""
    parsed = parse(token)
    found = None
    if parsed:
        found = db.session.execute(
            select(ApiKey, User, Membership.id)
            .join(User, User.id == ApiKey.user_id)
            .outerjoin(
                Membership,
                (Membership.team_id == ApiKey.team_id) & (Membership.user_id == ApiKey.user_id),
            )
            .where(ApiKey.id == parsed[0])
        ).first()
    key, member = (found[0], found[2]) if found else (None, None)
    expected = key.secret_hash if key is not None else _digest("no such key")
    given = _digest(parsed[1]) if parsed else _digest("")
    if not hmac.compare_digest(expected, given) or key is None:
        return None
    if key.revoked_at is not None:
        return None
    if key.expires_at is not None and key.expires_at <= utcnow():
        return None
    return key if member is not None else None


def use(key: ApiKey) -> Credential:
    """Make ``key`` this request's credential (``app.access`` reads it) and note its use."""
    now = utcnow()
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_EVERY:
        key.last_used_at = now
        key.last_used_ip = request.remote_addr if has_request_context() else None
        db.session.commit()
    credential = Credential(
        key_id=key.id,
        team_id=key.team_id,
        actions=actions_of(key.scopes),
        project_ids=frozenset(key.project_ids) if key.project_ids is not None else None,
        scopes=tuple(key.scopes),
    )
    if has_request_context():
        g.api_credential = credential
    return credential


def current() -> Credential | None:
    """The key this request authenticated with (None: a session, or no request)."""
    return g.get("api_credential") if has_request_context() else None


def revoke(actor: User, key: ApiKey, reason: str = "revoked") -> None:
    if key.revoked_at is not None:
        return
    key.revoked_at = utcnow()
    key.revoked_reason = reason
    audit.record(
        audit.Action.API_KEY_REVOKED, team_id=key.team_id, target=key, user_id=actor.id,
        prefix=key.prefix, reason=reason,
    )  # fmt: skip
    db.session.commit()


def revoke_for_member(user_id: int, team_id: int, reason: str) -> int:
    """Revoke ``user_id``'s live keys for ``team_id`` (in the caller's transaction);
    returns how many."""
    result = db.session.execute(
        update(ApiKey)
        .where(ApiKey.user_id == user_id, ApiKey.team_id == team_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow(), revoked_reason=reason)
    )
    return result.rowcount or 0


def listing(user: User, team: Team) -> list[ApiKey]:
    """``user``'s keys for ``team``, newest first (revoked ones too, marked)."""
    return list(
        db.session.scalars(
            select(ApiKey)
            .where(ApiKey.user_id == user.id, ApiKey.team_id == team.id)
            .order_by(ApiKey.id.desc())
        )
    )


def own_key(user: User, key_id: int) -> ApiKey | None:
    key = db.session.get(ApiKey, key_id)
    return key if key is not None and key.user_id == user.id else None


def rate_limit() -> str:
    return current_app.config["API_RATE_LIMIT"]
