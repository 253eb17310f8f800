"""Audit events: who did what, from where. Append-only."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from flask import current_app, g, has_request_context, request
from flask_login import current_user
from sqlalchemy import delete, select

from app.extensions import db, redis
from app.models import AuditEvent, Team, User
from app.models.base import utcnow


class Action(StrEnum):
    """Every action the audit trail records: the one list, so pages, filters and the API
    name the same things (the stored value is the string)."""

    API_KEY_CREATED = "api_key.created"
    API_KEY_REVOKED = "api_key.revoked"
    APP_CREATED = "app.created"
    AUDIT_EXPORTED = "audit.exported"
    INVITATION_ACCEPTED = "invitation.accepted"
    INVITATION_CREATED = "invitation.created"
    INVITATION_REFUSED = "invitation.refused"
    INVITATION_REVOKED = "invitation.revoked"
    INVITATION_SENT = "invitation.sent"
    MEMBER_LEFT = "member.left"
    MEMBER_PROJECTS_CHANGED = "member.projects_changed"
    MEMBER_REMOVED = "member.removed"
    MEMBER_ROLE_CHANGED = "member.role_changed"
    OWNERSHIP_TRANSFERRED = "member.ownership_transferred"
    PASSWORD_LOGIN_CHANGED = "installation.password_login_changed"
    REAUTH_FAILED = "reauth.failed"
    REAUTH_SUCCEEDED = "reauth.succeeded"
    RECOVERY_CODE_USED = "two_factor.recovery_code_used"
    RECOVERY_CODES_REGENERATED = "two_factor.recovery_codes_regenerated"
    SSO_IDENTITY_LINKED = "sso.identity_linked"
    SSO_LOGIN_FAILED = "sso.login_failed"
    SSO_LOGIN_SUCCEEDED = "sso.login_succeeded"
    SSO_PROVIDER_DELETED = "sso.provider_deleted"
    SSO_PROVIDER_SAVED = "sso.provider_saved"
    SSO_USER_CREATED = "sso.user_created"
    TEAM_CREATED = "team.created"
    TEAM_DELETED = "team.deleted"
    TEAM_RENAMED = "team.renamed"
    TEAM_SETTINGS_UPDATED = "team.settings_updated"
    TWO_FACTOR_DISABLED = "two_factor.disabled"
    TWO_FACTOR_ENABLED = "two_factor.enabled"
    TWO_FACTOR_FAILED = "two_factor.failed"
    APP_DELETED = "app.deleted"
    APP_GIT_SETTINGS_UPDATED = "app.git_settings_updated"
    APP_UPDATED = "app.updated"
    BACKUP_RESTORE_STARTED = "backup.restore_started"
    BACKUP_STARTED = "backup.started"
    BACKUP_DESTINATION_DELETED = "backup_destination.deleted"
    BACKUP_DESTINATION_SAVED = "backup_destination.saved"
    BACKUP_DRILL_STARTED = "backup.drill_started"
    BACKUP_POLICY_DELETED = "backup_policy.deleted"
    BACKUP_POLICY_SAVED = "backup_policy.saved"
    DATABASE_CREATED = "database.created"
    DATABASE_DELETED = "database.deleted"
    DATABASE_LINKED = "database.linked"
    DATABASE_PASSWORD_ROTATED = "database.password_rotated"
    DATABASE_PORT_CLOSED = "database.port_closed"
    DATABASE_PORT_OPENED = "database.port_opened"
    DATABASE_RESTARTED = "database.restarted"
    DATABASE_STARTED = "database.started"
    DATABASE_STOPPED = "database.stopped"
    DATABASE_UNLINKED = "database.unlinked"
    DEPLOY_CANCEL_REQUESTED = "deploy.cancel_requested"
    DEPLOY_CANCELLED = "deploy.cancelled"
    DEPLOY_STARTED = "deploy.started"
    DEPLOY_KEY_GENERATED = "deploy_key.generated"
    DOMAIN_ADDED = "domain.added"
    DOMAIN_CERTIFICATE_RETRIED = "domain.certificate_retried"
    DOMAIN_CERTIFICATE_UPLOADED = "domain.certificate_uploaded"
    DOMAIN_REMOVED = "domain.removed"
    DOMAIN_UPDATED = "domain.updated"
    ENV_DELETED = "env.deleted"
    ENV_SET = "env.set"
    GIT_HOST_KEY_FORGOTTEN = "git_host_key.forgotten"
    GIT_HOST_KEY_PINNED = "git_host_key.pinned"
    GIT_TOKEN_CLEARED = "git_token.cleared"
    GIT_TOKEN_SET = "git_token.set"
    INSTALLATION_ADMIN_NAMED = "installation.admin_named"
    INSTALLATION_ADMIN_REMOVED = "installation.admin_removed"
    JOB_RETRIED = "job.retried"
    LOGIN_FAILED = "login.failed"
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGOUT = "logout"
    NOTIFICATION_CHANNEL_DELETED = "notification_channel.deleted"
    NOTIFICATION_CHANNEL_SAVED = "notification_channel.saved"
    NOTIFICATION_SIGNING_SECRET_ROTATED = "notification_channel.signing_secret_rotated"
    PASSWORD_CHANGED = "password.changed"
    PASSWORD_RESET = "password.reset"
    PASSWORD_RESET_REQUESTED = "password.reset_requested"
    PROJECT_CREATED = "project.created"
    PROJECT_DELETED = "project.deleted"
    PROJECT_UPDATED = "project.updated"
    SESSIONS_REVOKED = "sessions.revoked"
    SETUP_COMPLETED = "setup.completed"
    # Volumes of apps (app.projects.volumes).
    VOLUME_ADDED = "volume.added"
    VOLUME_DETACHED = "volume.detached"
    VOLUME_PURGED = "volume.purged"
    VOLUME_REATTACHED = "volume.reattached"
    VOLUME_UPDATED = "volume.updated"
    WEBHOOK_REFUSED = "webhook.refused"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"
    WEBHOOK_SECRET_REVEALED = "webhook.secret_revealed"


# Events about a person rather than one team's object: recorded with the team the person
# works in (``users.current_team_id``, else their first team), so that team's Audit log
# shows its members' sign-ins, failed logins and account changes.
PERSONAL = frozenset({
    Action.LOGIN_FAILED, Action.LOGIN_SUCCEEDED, Action.LOGOUT, Action.PASSWORD_CHANGED,
    Action.PASSWORD_RESET, Action.PASSWORD_RESET_REQUESTED, Action.SESSIONS_REVOKED,
    Action.TWO_FACTOR_ENABLED, Action.TWO_FACTOR_DISABLED, Action.TWO_FACTOR_FAILED,
    Action.RECOVERY_CODE_USED, Action.RECOVERY_CODES_REGENERATED, Action.REAUTH_FAILED,
    Action.REAUTH_SUCCEEDED, Action.SSO_LOGIN_SUCCEEDED, Action.SSO_IDENTITY_LINKED,
})  # fmt: skip


def home_team_id(user_id: int) -> int | None:
    """The team a user works in: their current team if they still belong to it, else
    their first; None for a user in no team."""
    from app.models import Membership

    chosen = db.session.scalar(select(User.current_team_id).where(User.id == user_id))
    teams = list(
        db.session.scalars(
            select(Membership.team_id).where(Membership.user_id == user_id).order_by(Membership.id)
        )
    )
    if chosen in teams:
        return chosen
    return teams[0] if teams else None


def record(
    action: Action,
    *,
    team_id: int | None = None,
    target: Any = None,
    user_id: int | None = None,
    **details: Any,
) -> AuditEvent:
    """Add an audit row to the current transaction (the caller commits).

    ``details`` must never hold secret values; callers pass keys and names only.
    """
    if user_id is None and has_request_context() and current_user.is_authenticated:
        user_id = current_user.id
    if team_id is None and Action(action) in PERSONAL:
        subject = target.id if isinstance(target, User) else user_id
        if subject is not None:
            team_id = home_team_id(subject)
    key = g.get("api_credential") if has_request_context() else None
    if key is not None:
        details.setdefault("api_key_id", key.key_id)  # done with a key, not in a browser
    event = AuditEvent(
        action=Action(action).value,  # an action outside the list is a bug: ValueError
        team_id=team_id,
        user_id=user_id,
        target_type=type(target).__name__.lower() if target is not None else None,
        target_id=getattr(target, "id", None),
        ip=request.remote_addr if has_request_context() else None,
        details=details,
    )
    db.session.add(event)
    return event


def record_counted(
    action: Action, *, key: str, window_seconds: int = 60, **details: Any
) -> AuditEvent | None:
    """Record an event a flood can repeat (a failed login): one row per ``key`` per window.

    The first event of a window adds a row with ``count`` 1; later ones in the same
    window raise that row's ``count`` (the count lives in Redis, so concurrent events
    agree on it) instead of adding rows. A flood adds at most one row per key a window,
    however fast it comes. Returns the row written or updated (the caller commits).
    """
    window = int(time.time() // window_seconds)
    name = f"slipway:audit-count:{Action(action).value}:{key}:{window}"
    pipe = redis.client.pipeline()
    pipe.incr(name)
    pipe.expire(name, window_seconds * 2)
    count = int(pipe.execute()[0])
    if count == 1:
        event = record(action, count=1, window_seconds=window_seconds, **details)
        db.session.flush()
        redis.client.set(f"{name}:row", event.id, ex=window_seconds * 2)
        return event
    row_id = redis.client.get(f"{name}:row")
    event = db.session.get(AuditEvent, int(row_id)) if row_id else None
    if event is None:
        return None  # the first event's row is not committed yet; a later one catches up
    if int((event.details or {}).get("count", 0)) < count:
        event.details = {**(event.details or {}), "count": count}
    return event


# ---- reading the trail: the team's audit page and its CSV export ------------------

PAGE_SIZE = 50
EXPORT_BATCH = 1000
RETENTION_BATCH = 10_000
# Detail keys never shown (``record`` forbids secret values; this holds if one slips in).
_HIDDEN_DETAIL = ("secret", "password", "token", "private", "ciphertext")


@dataclass(frozen=True)
class Filters:
    """What the audit page narrows a team's events to; None means any.

    ``action`` is one action's value, or a prefix ending in ``.`` (``member.``) for a
    family of them. ``since`` is inclusive, ``until`` exclusive (UTC datetimes).
    """

    user_id: int | None = None
    action: str | None = None
    target_type: str | None = None
    target_id: int | None = None
    since: datetime | None = None
    until: datetime | None = None

    def as_details(self) -> dict[str, Any]:
        """The filters as plain values (the export's own audit event)."""
        values = asdict(self)
        for key in ("since", "until"):
            if values[key] is not None:
                values[key] = values[key].isoformat()
        return {k: v for k, v in values.items() if v is not None}


@dataclass(frozen=True)
class Row:
    id: int
    created_at: datetime
    user_id: int | None
    user_name: str | None
    user_email: str | None
    action: str
    target_type: str | None
    target_id: int | None
    ip: str | None
    details: dict[str, Any]

    def shown_details(self) -> dict[str, Any]:
        """The details without keys that name a secret, whatever their value."""
        return {
            k: v for k, v in (self.details or {}).items()
            if not any(word in k.lower() for word in _HIDDEN_DETAIL)
        }  # fmt: skip

    def summary(self, width: int = 80) -> str:
        """``key=value`` pairs of the shown details, each value cut to ``width`` characters."""
        parts = []
        for key, value in sorted(self.shown_details().items()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            parts.append(f"{key}={text[:width] + '…' if len(text) > width else text}")
        return " ".join(parts)


def _statement(team_id: int, filters: Filters, before_id: int | None, limit: int):
    """Newest first within one team, actor's name and email joined (one query).

    Each filter matches an index that ends in ``id`` (migration 0019), so the database
    walks the index backwards from ``before_id`` and stops after ``limit`` rows: the
    page costs the same on the first page and the thousandth, however large the trail.
    An action prefix is a range (``>= 'member.' AND < 'member/'``) rather than a
    ``LIKE``, which PostgreSQL cannot serve from a b-tree under a non-C collation.
    """
    event = AuditEvent
    query = (
        select(
            event.id, event.created_at, event.user_id, User.name.label("user_name"),
            User.email.label("user_email"), event.action, event.target_type, event.target_id,
            event.ip, event.details,
        )
        .outerjoin(User, User.id == event.user_id)
        .where(event.team_id == team_id)
    )  # fmt: skip
    if filters.user_id is not None:
        query = query.where(event.user_id == filters.user_id)
    if filters.action:
        if filters.action.endswith("."):
            upper = filters.action[:-1] + chr(ord(".") + 1)
            query = query.where(event.action >= filters.action, event.action < upper)
        else:
            query = query.where(event.action == filters.action)
    if filters.target_type:
        query = query.where(event.target_type == filters.target_type)
        if filters.target_id is not None:
            query = query.where(event.target_id == filters.target_id)
    if filters.since is not None:
        query = query.where(event.created_at >= filters.since)
    if filters.until is not None:
        query = query.where(event.created_at < filters.until)
    if before_id is not None:
        query = query.where(event.id < before_id)
    return query.order_by(event.id.desc()).limit(limit)


def query(
    team_id: int,
    filters: Filters = Filters(),
    *,
    before_id: int | None = None,
    limit: int = PAGE_SIZE,
) -> tuple[list[Row], int | None]:
    """One page of a team's events, newest first: (rows, cursor of the next older page
    or None). Keyset pagination: pass the cursor back as ``before_id``."""
    found = db.session.execute(_statement(team_id, filters, before_id, limit + 1)).all()
    rows = [Row(**r._mapping) for r in found[:limit]]
    return rows, (rows[-1].id if len(found) > limit and rows else None)


# ---- retention: the only code that deletes audit rows ------------------------------


def _delete_older(team_id: int | None, cutoff: datetime, batch: int) -> int:
    """Delete one team's rows (or the team-less rows) created before ``cutoff``, ``batch``
    rows per statement and transaction, so no lock is held for long."""
    removed = 0
    owner = AuditEvent.team_id.is_(None) if team_id is None else AuditEvent.team_id == team_id
    while True:
        ids = select(AuditEvent.id).where(owner, AuditEvent.created_at < cutoff).limit(batch)
        count = db.session.execute(delete(AuditEvent).where(AuditEvent.id.in_(ids))).rowcount
        db.session.commit()
        removed += count or 0
        if not count or count < batch:
            return removed


def apply_retention(now: datetime | None = None, batch: int = RETENTION_BATCH) -> dict[str, int]:
    """Delete audit rows older than their team's ``audit_retention_days`` (rows of no
    team: the installation's ``AUDIT_RETENTION_DAYS``). The scheduler runs it daily
    (``app.jobs.apply_audit_retention``). Nothing else updates or deletes an audit row
    (``tests/test_audit_append_only.py`` holds the code to that). Returns the counts:
    ``{"teams": teams looked at, "deleted": rows deleted, "teamless": of which no team's}``.
    """
    now = now or utcnow()
    default_days = int(current_app.config["AUDIT_RETENTION_DAYS"])
    teams = db.session.execute(select(Team.id, Team.audit_retention_days)).all()
    deleted = 0
    for team_id, days in teams:
        deleted += _delete_older(team_id, now - timedelta(days=days or default_days), batch)
    teamless = _delete_older(None, now - timedelta(days=default_days), batch)
    return {"teams": len(teams), "deleted": deleted + teamless, "teamless": teamless}
