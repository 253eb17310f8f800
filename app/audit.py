"""Audit events: who did what, from where. Append-only."""

from __future__ import annotations

import time
from enum import StrEnum
from typing import Any

from flask import has_request_context, request
from flask_login import current_user

from app.extensions import db, redis
from app.models import AuditEvent


class Action(StrEnum):
    """Every action the audit trail records: the one list, so pages, filters and the API
    name the same things (the stored value is the string)."""

    APP_CREATED = "app.created"
    APP_DELETED = "app.deleted"
    APP_GIT_SETTINGS_UPDATED = "app.git_settings_updated"
    APP_UPDATED = "app.updated"
    BACKUP_RESTORE_STARTED = "backup.restore_started"
    BACKUP_STARTED = "backup.started"
    BACKUP_DESTINATION_DELETED = "backup_destination.deleted"
    BACKUP_DESTINATION_SAVED = "backup_destination.saved"
    BACKUP_POLICY_DELETED = "backup_policy.deleted"
    BACKUP_POLICY_SAVED = "backup_policy.saved"
    DEPLOY_CANCEL_REQUESTED = "deploy.cancel_requested"
    DEPLOY_CANCELLED = "deploy.cancelled"
    DEPLOY_STARTED = "deploy.started"
    DEPLOY_KEY_GENERATED = "deploy_key.generated"
    DOMAIN_ADDED = "domain.added"
    DOMAIN_CERTIFICATE_RETRIED = "domain.certificate_retried"
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
    WEBHOOK_REFUSED = "webhook.refused"
    WEBHOOK_SECRET_ROTATED = "webhook.secret_rotated"
    WEBHOOK_SECRET_REVEALED = "webhook.secret_revealed"


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
