"""The team's audit trail, newest first, with the audit page's filters (admins and
owners: ``audit.read``), paged by cursor through ``app.audit.query``."""

from __future__ import annotations

from datetime import UTC

from app import access, audit
from app.access import Action
from app.models.base import Base
from app.web.api import base, conventions, forms, spec
from app.web.api.base import bp
from app.web.api.conventions import iso


def present_event(row: audit.Row) -> dict:
    details = row.shown_details()
    key_id = (row.details or {}).get("api_key_id")
    return {
        "id": row.id, "created_at": iso(row.created_at), "user_id": row.user_id,
        "user_name": row.user_name, "user_email": row.user_email, "action": row.action,
        "target_type": row.target_type, "target_id": row.target_id, "ip": row.ip,
        "api_key_id": key_id if isinstance(key_id, int) else None, "details": details,
    }  # fmt: skip


def _known_action(value: str) -> bool:
    names = {action.value for action in audit.Action}
    if value.endswith("."):
        return any(name.startswith(value) for name in names)
    return value in names


def _object_types() -> set[str]:
    # What ``audit.record`` stores as target_type (the page's choices): model class names.
    return {mapper.class_.__name__.lower() for mapper in Base.registry.mappers}


def _utc(value):
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def _filters(params) -> audit.Filters:
    """The page's filters, checked as its form checks them."""
    refused = {}
    if params.action and not _known_action(params.action):
        refused["action"] = "Not an audited action, nor a family of them (such as member.)."
    if params.target_type and params.target_type not in _object_types():
        refused["target_type"] = "Not a type of object the audit log names."
    if params.target_id is not None and not params.target_type:
        refused["target_id"] = "Choose the object's type too."
    since, until = _utc(params.since), _utc(params.until)
    if since and until and until < since:
        refused["until"] = "The end is before the start."
    if refused:
        forms.fail_fields(refused)
    return audit.Filters(
        user_id=params.user_id, action=params.action or None,
        target_type=params.target_type or None, target_id=params.target_id,
        since=since, until=until,
    )  # fmt: skip


@bp.get("/audit-events")
@spec.operation(
    "listAuditEvents", "Audit", "The team's audit events, newest first", Action.AUDIT_READ,
    query="AuditQuery", response="AuditEventPage",
    description="`since` is inclusive, `until` exclusive; a time without an offset is UTC.",
)  # fmt: skip
def audit_events_list():
    team = access.in_current_team(Action.AUDIT_READ)
    params = base.query()
    filters = _filters(params)
    before = conventions.decode_cursor(params.cursor) if params.cursor else None
    rows, older = audit.query(team.id, filters, before_id=before, limit=params.limit)
    return base.respond({
        "data": [present_event(row) for row in rows],
        "next_cursor": conventions.encode_cursor(older) if older else None,
    })  # fmt: skip
