"""Audit events: who did what, from where. Append-only."""

from __future__ import annotations

from typing import Any

from flask import has_request_context, request
from flask_login import current_user

from app.extensions import db
from app.models import AuditEvent


def record(
    action: str,
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
        action=action,
        team_id=team_id,
        user_id=user_id,
        target_type=type(target).__name__.lower() if target is not None else None,
        target_id=getattr(target, "id", None),
        ip=request.remote_addr if has_request_context() else None,
        details=details,
    )
    db.session.add(event)
    return event
