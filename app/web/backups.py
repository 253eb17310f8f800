"""Backups: S3 destinations, policies, the backups list, downloads, restores, drills.

Viewers may look; admins manage destinations and policies, run, download and
restore. Anything about Slipway's own database needs the installation owner.
"""

from __future__ import annotations

from pathlib import Path

from flask import (
    Blueprint,
    Response,
    abort,
    flash,
    redirect,
    render_template,
    send_file,
    stream_with_context,
    url_for,
)
from flask_login import current_user

from app import access, crypto, outbound
from app.backups import checks, restores, runs, setup, storage, targets
from app.backups.forms import DestinationForm, PolicyForm, RestoreForm
from app.models import BackupDestination, BackupPolicy, BackupStatus
from app.models.backups import FINAL_BACKUP_STATUSES
from app.web import reauth
from app.web.htmx import is_htmx

bp = Blueprint("backups", __name__, url_prefix="/backups")


def _allowed() -> tuple[str, ...]:
    return outbound.allowed_hosts()


@bp.get("/")
def index():
    team = access.in_current_team(access.Action.BACKUP_READ)
    backup_rows = setup.recent_backups(team.id)
    context = {
        "backups": backup_rows,
        "restores": setup.recent_restores(team.id),
        "busy": any(b.status not in FINAL_BACKUP_STATUSES for b in backup_rows),
        "can_manage": access.allows(access.Action.BACKUP_MANAGE, team),
    }
    if is_htmx():
        return render_template("backups/_list.html", **context)
    return render_template(
        "backups/index.html",
        destinations=setup.destinations(team.id),
        policies=setup.policies(team.id),
        is_owner=access.is_installation_owner(current_user.id),
        **context,
    )


# ---- destinations -------------------------------------------------------------


def _destination_form_page(form, dest, status=200):
    return render_template("backups/destination_form.html", form=form, dest=dest), status


@bp.get("/destinations/new")
def destination_new_get():
    access.in_current_team(access.Action.BACKUP_MANAGE)
    return _destination_form_page(DestinationForm(), None)


@bp.post("/destinations/new")
def destination_new_post():
    team = access.in_current_team(access.Action.BACKUP_MANAGE)
    form = DestinationForm(allowed_hosts=_allowed())
    if form.validate() and setup.name_taken(BackupDestination, team.id, form.name.data):
        form.name.errors.append("Your team already has a destination with this name.")
    if form.errors:
        return _destination_form_page(form, None, 422)
    dest = setup.save_destination(form, BackupDestination(team_id=team.id))
    flash(f"Destination {dest.name} saved. Test the connection next.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.get("/destinations/<int:destination_id>/edit")
def destination_edit_get(destination_id: int):
    dest = access.backup_destination(destination_id, access.Action.BACKUP_MANAGE)
    return _destination_form_page(DestinationForm(obj=dest, editing=True), dest)


@bp.post("/destinations/<int:destination_id>/edit")
def destination_edit_post(destination_id: int):
    dest = access.backup_destination(destination_id, access.Action.BACKUP_MANAGE)
    form = DestinationForm(allowed_hosts=_allowed(), editing=True)
    if form.validate() and setup.name_taken(
        BackupDestination, dest.team_id, form.name.data, dest.id
    ):
        form.name.errors.append("Your team already has a destination with this name.")
    if form.errors:
        return _destination_form_page(form, dest, 422)
    setup.save_destination(form, dest)
    flash("Destination saved.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.post("/destinations/<int:destination_id>/test")
def destination_test_post(destination_id: int):
    dest = access.backup_destination(destination_id, access.Action.BACKUP_MANAGE)
    try:
        steps = checks.probe(targets.s3_target(dest))  # SSRF-checked at use in storage
    except crypto.SecretError as exc:
        steps = [("secret key", False, str(exc))]
    except storage.StorageError as exc:
        steps = [("connect", False, str(exc))]
    result = {"dest": dest, "steps": steps, "ok": all(ok for _, ok, _ in steps)}
    if is_htmx():
        return render_template("backups/_probe.html", **result)
    return render_template("backups/probe.html", **result)


@bp.get("/destinations/<int:destination_id>/delete")
def destination_delete_get(destination_id: int):
    dest = access.backup_destination(destination_id, access.Action.BACKUP_MANAGE)
    return render_template(
        "confirm.html", title=f"Delete destination {dest.name}?",
        message="Backups already in the bucket stay there; Slipway forgets the credentials.",
        action=url_for("backups.destination_delete_post", destination_id=dest.id),
        confirm_label="Delete destination", back=url_for("backups.index"),
    )  # fmt: skip


@bp.post("/destinations/<int:destination_id>/delete")
def destination_delete_post(destination_id: int):
    dest = access.backup_destination(destination_id, access.Action.BACKUP_MANAGE)
    name = dest.name
    try:
        setup.delete_destination(dest)
    except setup.InUse as exc:
        flash(str(exc), "error")
        return redirect(url_for("backups.index"), 303)
    flash(f"Destination {name} deleted.", "success")
    return redirect(url_for("backups.index"), 303)


# ---- policies -----------------------------------------------------------------


def _policy_form(team_id: int, **kwargs) -> PolicyForm:
    form = PolicyForm(allowed_hosts=_allowed(),
                      may_own=access.is_installation_owner(current_user.id), **kwargs)  # fmt: skip
    form.destination_id.choices = [(d.id, d.name) for d in setup.destinations(team_id)]
    setup.policy_choices(form, team_id)
    return form


def _policy_page(form, policy, status=200):
    return render_template("backups/policy_form.html", form=form, policy=policy), status


@bp.get("/policies/new")
def policy_new_get():
    team = access.in_current_team(access.Action.BACKUP_MANAGE)
    return _policy_page(_policy_form(team.id), None)


@bp.post("/policies/new")
def policy_new_post():
    team = access.in_current_team(access.Action.BACKUP_MANAGE)
    form = _policy_form(team.id)
    if form.validate() and setup.name_taken(BackupPolicy, team.id, form.name.data):
        form.name.errors.append("Your team already has a policy with this name.")
    if form.errors:
        return _policy_page(form, None, 422)
    policy = setup.save_policy(form, BackupPolicy(team_id=team.id))
    flash(f"Policy {policy.name} saved; the scheduler picks it up within 30 s.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.get("/policies/<int:policy_id>/edit")
def policy_edit_get(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    form = _policy_form(policy.team_id, obj=policy, editing=True)
    form.database_url.data = ""
    return _policy_page(form, policy)


@bp.post("/policies/<int:policy_id>/edit")
def policy_edit_post(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    form = _policy_form(policy.team_id, editing=True)
    if form.validate() and setup.name_taken(
        BackupPolicy, policy.team_id, form.name.data, policy.id
    ):
        form.name.errors.append("Your team already has a policy with this name.")
    if (
        not form.errors
        and form.target_type.data == "postgres"
        and not (form.parsed_url or policy.database_url)
    ):
        form.database_url.errors = ["Enter the database URL, password included."]
    if form.errors:
        return _policy_page(form, policy, 422)
    setup.save_policy(form, policy)
    flash("Policy saved.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.get("/policies/<int:policy_id>/delete")
def policy_delete_get(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    return render_template(
        "confirm.html", title=f"Delete policy {policy.name}?",
        message="Its schedule stops and its backup records go; files and objects stay.",
        action=url_for("backups.policy_delete_post", policy_id=policy.id),
        confirm_label="Delete policy", back=url_for("backups.index"),
    )  # fmt: skip


@bp.post("/policies/<int:policy_id>/delete")
def policy_delete_post(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    name = policy.name
    setup.delete_policy(policy)
    flash(f"Policy {name} deleted.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.post("/policies/<int:policy_id>/run")
def policy_run_post(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    backup = runs.start_now(policy)
    flash(f"Backup #{backup.id} of {policy.name} queued.", "success")
    return redirect(url_for("backups.index"), 303)


@bp.post("/policies/<int:policy_id>/drill")
def policy_drill_post(policy_id: int):
    policy = access.backup_policy(policy_id, access.Action.BACKUP_MANAGE)
    latest = runs.latest_good(policy.id)
    if latest is None:
        flash("This policy has no successful backup to drill yet.", "error")
        return redirect(url_for("backups.index"), 303)
    drill = restores.start(latest, kind="drill", target_database=None, user_id=current_user.id)
    return redirect(url_for("backups.restore_show", restore_id=drill.id), 303)


# ---- one backup -----------------------------------------------------------------


@bp.get("/<int:backup_id>/download")
def download(backup_id: int):
    """Streams through Slipway with the user's permissions: the local copy, else S3."""
    backup = access.backup(backup_id, access.Action.BACKUP_MANAGE)
    name = Path(backup.object_key or backup.local_path or f"backup-{backup.id}").name
    if backup.local_path and Path(backup.local_path).exists():
        return send_file(backup.local_path, as_attachment=True, download_name=name)
    if not backup.uploaded:
        abort(404, "This backup has no copy left (expired or failed).")
    try:
        chunks = storage.iter_object(targets.s3_target(backup.policy.destination),
                                     backup.object_key)  # fmt: skip
    except (crypto.SecretError, storage.StorageError) as exc:
        abort(502, f"The backup could not be read from S3: {exc}.")
    return Response(
        stream_with_context(chunks), mimetype="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{name}"',
                 "Content-Length": str(backup.size_bytes or "")},
    )  # fmt: skip


def _database_name(backup) -> str:
    return setup.target_name(backup.policy)


def _restore_page(backup, form, status=200):
    return render_template("backups/restore_form.html", backup=backup, form=form,
                           database=_database_name(backup)), status  # fmt: skip


@bp.get("/<int:backup_id>/restore")
def restore_get(backup_id: int):
    backup = access.backup(backup_id, access.Action.BACKUP_RESTORE)
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    return _restore_page(backup, RestoreForm(database_name=_database_name(backup)))


@bp.post("/<int:backup_id>/restore")
def restore_post(backup_id: int):
    backup = access.backup(backup_id, access.Action.BACKUP_RESTORE)
    back = url_for("backups.restore_get", backup_id=backup.id)
    if (redirect_ := reauth.required(back)) is not None:
        return redirect_
    form = RestoreForm(database_name=_database_name(backup))
    if backup.status != BackupStatus.succeeded.value and not backup.local_path:
        form.mode.errors = ["Only a backup with a copy can be restored."]
    if form.validate() and form.mode.data == "same" and backup.policy.target_type == "slipway":
        form.mode.errors.append("Slipway's own database is restored into a new database only.")
    if form.errors:
        return _restore_page(backup, form, 422)
    target = form.new_database.data if form.mode.data == "new" else None
    restore = restores.start(backup, kind="restore", target_database=target,
                             user_id=current_user.id)  # fmt: skip
    return redirect(url_for("backups.restore_show", restore_id=restore.id), 303)


@bp.get("/restores/<int:restore_id>")
def restore_show(restore_id: int):
    restore = access.restore(restore_id)
    template = "backups/_restore.html" if is_htmx() else "backups/restore.html"
    return render_template(template, restore=restore, final=restore.status in FINAL_BACKUP_STATUSES)
