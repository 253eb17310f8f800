"""Backups: S3 destinations, policies, runs (and run now), restores.

The values pass the dashboard's forms (``app.backups.forms``: names, the public-host
check on endpoints and database URLs, Slipway's own database for the installation owner
only) and are saved by ``app.backups.setup``, as on the page. Secret values (the S3
secret key, a database password) are write-only. A restore needs ``backup.restore``
(the ``admin`` scope and an admin role) and, over the same database, its name typed in
``confirm``, as on the page; the page's password check again has no equivalent for a key.
"""

from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select

from app import access, outbound
from app.access import Action
from app.backups import restores, runs, setup
from app.backups.forms import DestinationForm, PolicyForm, RestoreForm
from app.models import Backup, BackupDestination, BackupPolicy, BackupStatus, Restore
from app.models.backups import FINAL_BACKUP_STATUSES
from app.web.api import base, forms, spec
from app.web.api.base import bp
from app.web.api.conventions import iso

TAG = "Backups"
DESTINATION_FIELDS = ("name", "endpoint_url", "region", "bucket", "prefix", "access_key_id",
                      "path_style")  # fmt: skip
POLICY_FIELDS = ("name", "target_type", "destination_id", "cron", "keep_local_days",
                 "keep_daily", "keep_weekly", "enabled")  # fmt: skip


def present_destination(dest: BackupDestination) -> dict:
    return {
        "id": dest.id, "name": dest.name, "endpoint_url": dest.endpoint_url,
        "region": dest.region, "bucket": dest.bucket, "prefix": dest.prefix or "",
        "access_key_id": dest.access_key_id, "path_style": bool(dest.path_style),
        "has_secret_key": bool(dest.secret_access_key), "created_at": iso(dest.created_at),
    }  # fmt: skip


def present_policy(policy: BackupPolicy) -> dict:
    return {
        "id": policy.id, "name": policy.name, "target_type": policy.target_type,
        "database_url": policy.database_url,
        "has_database_password": bool(policy.database_password),
        "destination_id": policy.destination_id, "cron": policy.cron,
        "keep_local_days": policy.keep_local_days, "keep_daily": policy.keep_daily,
        "keep_weekly": policy.keep_weekly, "enabled": bool(policy.enabled),
        "created_at": iso(policy.created_at), "updated_at": iso(policy.updated_at),
    }  # fmt: skip


def present_backup(backup: Backup) -> dict:
    return {
        "id": backup.id, "policy_id": backup.policy_id, "policy": backup.policy.name,
        "trigger": backup.trigger, "status": backup.status,
        "final": backup.status in FINAL_BACKUP_STATUSES, "error": backup.error,
        "started_at": iso(backup.started_at), "finished_at": iso(backup.finished_at),
        "duration_seconds": backup.duration_seconds, "size_bytes": backup.size_bytes,
        "sha256": backup.sha256, "bucket": backup.bucket, "object_key": backup.object_key,
        "uploaded": bool(backup.uploaded), "has_local_copy": bool(backup.local_path),
        "row_counts": backup.row_counts or {}, "created_at": iso(backup.created_at),
        "url": f"/api/v1/backups/{backup.id}",
    }  # fmt: skip


def present_restore(restore: Restore) -> dict:
    return {
        "id": restore.id, "backup_id": restore.backup_id, "kind": restore.kind,
        "target_database": restore.target_database, "status": restore.status,
        "final": restore.status in FINAL_BACKUP_STATUSES, "error": restore.error,
        "log": restore.log or "", "comparison": restore.comparison or {},
        "started_at": iso(restore.started_at), "finished_at": iso(restore.finished_at),
        "duration_seconds": restore.duration_seconds, "user_id": restore.user_id,
        "created_at": iso(restore.created_at), "url": f"/api/v1/restores/{restore.id}",
    }  # fmt: skip


def _name_free(model, team_id: int, name: str, what: str, exclude_id: int | None = None):
    if setup.name_taken(model, team_id, name, exclude_id):
        forms.fail_fields({"name": f"Your team already has a {what} with this name."})


# ---- destinations -------------------------------------------------------------------


@bp.get("/backups/destinations")
@spec.operation("listBackupDestinations", TAG, "The team's S3 destinations", Action.BACKUP_READ,
                query="PageQuery", response="DestinationPage")  # fmt: skip
def destinations_list():
    team = access.in_current_team(Action.BACKUP_READ)
    params = base.query()
    statement = select(BackupDestination).where(BackupDestination.team_id == team.id)
    return base.page(statement, BackupDestination.id, present_destination, params,
                     newest_first=False)  # fmt: skip


@bp.post("/backups/destinations")
@spec.operation("createBackupDestination", TAG, "Add an S3 destination", Action.BACKUP_MANAGE,
                body="DestinationCreate", response="Destination", status=201)  # fmt: skip
def destination_create():
    team = access.in_current_team(Action.BACKUP_MANAGE)
    values = base.body().model_dump()
    form = forms.validated(DestinationForm, values, allowed_hosts=outbound.allowed_hosts())
    _name_free(BackupDestination, team.id, form.name.data, "destination")
    dest = setup.save_destination(form, BackupDestination(team_id=team.id))
    location = f"/api/v1/backups/destinations/{dest.id}"
    return base.respond(present_destination(dest), 201, etag=True, headers={"Location": location})


@bp.get("/backups/destinations/<int:destination_id>")
@spec.operation("getBackupDestination", TAG, "One destination", Action.BACKUP_READ,
                response="Destination", etag=True)  # fmt: skip
def destination_get(destination_id: int):
    dest = access.backup_destination(destination_id, Action.BACKUP_READ)
    return base.respond(present_destination(dest), etag=True)


@bp.patch("/backups/destinations/<int:destination_id>")
@spec.operation("updateBackupDestination", TAG, "Change a destination", Action.BACKUP_MANAGE,
                body="DestinationUpdate", response="Destination", etag=True)  # fmt: skip
def destination_update(destination_id: int):
    dest = access.backup_destination(destination_id, Action.BACKUP_MANAGE)
    changes = base.body().model_dump(exclude_unset=True)
    base.if_match(present_destination(dest))
    values = {field: getattr(dest, field) for field in DESTINATION_FIELDS} | changes
    form = forms.validated(DestinationForm, values, allowed_hosts=outbound.allowed_hosts(),
                           editing=True)  # fmt: skip
    _name_free(BackupDestination, dest.team_id, form.name.data, "destination", dest.id)
    setup.save_destination(form, dest)
    return base.respond(present_destination(dest), etag=True)


@bp.delete("/backups/destinations/<int:destination_id>")
@spec.operation("deleteBackupDestination", TAG, "Delete a destination no policy uses",
                Action.BACKUP_MANAGE, status=204, etag=True)  # fmt: skip
def destination_delete(destination_id: int):
    dest = access.backup_destination(destination_id, Action.BACKUP_MANAGE)
    base.if_match(present_destination(dest))
    try:
        setup.delete_destination(dest)
    except setup.InUse as exc:
        base.fail(409, "in_use", str(exc))
    return base.no_content()


# ---- policies ---------------------------------------------------------------------------


def _policy_form(team_id: int, values: dict, **kwargs):
    def choices(form):
        form.destination_id.choices = [(d.id, d.name) for d in setup.destinations(team_id)]

    may_own = access.is_installation_owner(current_user.id)
    return forms.validated(PolicyForm, values, choices, allowed_hosts=outbound.allowed_hosts(),
                           may_own=may_own, **kwargs)  # fmt: skip


@bp.get("/backups/policies")
@spec.operation("listBackupPolicies", TAG, "The team's backup policies", Action.BACKUP_READ,
                query="PageQuery", response="PolicyPage")  # fmt: skip
def policies_list():
    team = access.in_current_team(Action.BACKUP_READ)
    params = base.query()
    statement = select(BackupPolicy).where(BackupPolicy.team_id == team.id)
    return base.page(statement, BackupPolicy.id, present_policy, params, newest_first=False)


@bp.post("/backups/policies")
@spec.operation("createBackupPolicy", TAG, "Add a backup policy", Action.BACKUP_MANAGE,
                body="PolicyCreate", response="Policy", status=201)  # fmt: skip
def policy_create():
    team = access.in_current_team(Action.BACKUP_MANAGE)
    form = _policy_form(team.id, base.body().model_dump())
    _name_free(BackupPolicy, team.id, form.name.data, "policy")
    policy = setup.save_policy(form, BackupPolicy(team_id=team.id))
    return base.respond(present_policy(policy), 201, etag=True,
                        headers={"Location": f"/api/v1/backups/policies/{policy.id}"})  # fmt: skip


@bp.get("/backups/policies/<int:policy_id>")
@spec.operation("getBackupPolicy", TAG, "One backup policy", Action.BACKUP_READ,
                response="Policy", etag=True)  # fmt: skip
def policy_get(policy_id: int):
    policy = access.backup_policy(policy_id, Action.BACKUP_READ)
    return base.respond(present_policy(policy), etag=True)


@bp.patch("/backups/policies/<int:policy_id>")
@spec.operation("updateBackupPolicy", TAG, "Change a backup policy", Action.BACKUP_MANAGE,
                body="PolicyUpdate", response="Policy", etag=True)  # fmt: skip
def policy_update(policy_id: int):
    policy = access.backup_policy(policy_id, Action.BACKUP_MANAGE)
    changes = base.body().model_dump(exclude_unset=True)
    base.if_match(present_policy(policy))
    values = {field: getattr(policy, field) for field in POLICY_FIELDS} | changes
    form = _policy_form(policy.team_id, values, editing=True)
    _name_free(BackupPolicy, policy.team_id, form.name.data, "policy", policy.id)
    if form.target_type.data == "postgres" and not (form.parsed_url or policy.database_url):
        forms.fail_fields({"database_url": "Enter the database URL, password included."})
    setup.save_policy(form, policy)
    return base.respond(present_policy(policy), etag=True)


@bp.delete("/backups/policies/<int:policy_id>")
@spec.operation("deleteBackupPolicy", TAG, "Delete a policy (its backup records go)",
                Action.BACKUP_MANAGE, status=204, etag=True)  # fmt: skip
def policy_delete(policy_id: int):
    policy = access.backup_policy(policy_id, Action.BACKUP_MANAGE)
    base.if_match(present_policy(policy))
    setup.delete_policy(policy)
    return base.no_content()


@bp.post("/backups/policies/<int:policy_id>/run")
@spec.operation("runBackupPolicy", TAG, "Back up now", Action.BACKUP_MANAGE, response="Backup",
                status=202)  # fmt: skip
def policy_run(policy_id: int):
    policy = access.backup_policy(policy_id, Action.BACKUP_MANAGE)
    backup = runs.start_now(policy)
    return base.respond(present_backup(backup), 202,
                        headers={"Location": f"/api/v1/backups/{backup.id}"})  # fmt: skip


# ---- runs and restores ----------------------------------------------------------------------


@bp.get("/backups")
@spec.operation("listBackups", TAG, "The team's backups, newest first", Action.BACKUP_READ,
                query="BackupQuery", response="BackupPage")  # fmt: skip
def backups_list():
    team = access.in_current_team(Action.BACKUP_READ)
    params = base.query()
    statement = select(Backup).where(Backup.team_id == team.id)
    if params.policy_id is not None:
        statement = statement.where(Backup.policy_id == params.policy_id)
    return base.page(statement, Backup.id, present_backup, params)


@bp.get("/backups/<int:backup_id>")
@spec.operation("getBackup", TAG, "One backup", Action.BACKUP_READ, response="Backup",
                etag=True)  # fmt: skip
def backup_get(backup_id: int):
    backup = access.backup(backup_id, Action.BACKUP_READ)
    return base.respond(present_backup(backup), etag=True)


def _database_name(backup: Backup) -> str:
    url = backup.policy.database_url or ""
    return url.rsplit("/", 1)[-1] if url else "slipway"


@bp.post("/backups/<int:backup_id>/restore")
@spec.operation(
    "restoreBackup", TAG, "Restore a backup (into a new database, or over its own)",
    Action.BACKUP_RESTORE, body="RestoreCreate", response="Restore", status=202,
    description="Over the same database, `confirm` must be that database's name.",
)  # fmt: skip
def backup_restore(backup_id: int):
    backup = access.backup(backup_id, Action.BACKUP_RESTORE)
    values = base.body().model_dump()
    if backup.status != BackupStatus.succeeded.value and not backup.local_path:
        base.fail(409, "no_copy", "Only a backup with a copy can be restored.")
    form = forms.validated(RestoreForm, values, database_name=_database_name(backup))
    if form.mode.data == "same" and backup.policy.target_type == "slipway":
        forms.fail_fields({"mode": "Slipway's own database is restored into a new database only."})
    target = form.new_database.data if form.mode.data == "new" else None
    restore = restores.start(backup, kind="restore", target_database=target,
                             user_id=current_user.id)  # fmt: skip
    return base.respond(present_restore(restore), 202,
                        headers={"Location": f"/api/v1/restores/{restore.id}"})  # fmt: skip


@bp.get("/restores/<int:restore_id>")
@spec.operation("getRestore", TAG, "One restore (or drill)", Action.BACKUP_READ,
                response="Restore", etag=True)  # fmt: skip
def restore_get(restore_id: int):
    restore = access.restore(restore_id, Action.BACKUP_READ)
    return base.respond(present_restore(restore), etag=True)
