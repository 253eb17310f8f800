"""An app's Volumes tab: its persistent volumes (label, mount path, mode, state, kept
until), add, switch the mode, detach (kept for the grace period), re-attach, and purge
a detached one now (an admin; the worker removes it)."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from app import access
from app.extensions import queue
from app.forms import MOUNT_MODES, VolumeForm, VolumeModeForm
from app.models import Application
from app.projects import volumes

bp = Blueprint("volumes", __name__)


def _page(app: Application, form: VolumeForm, status: int = 200):
    rows = volumes.of_app(app)
    return render_template(
        "volumes/index.html", app=app, rows=rows, form=form,
        can_manage=access.allows(access.Action.VOLUME_MANAGE, app),
        can_purge=access.allows(access.Action.VOLUME_PURGE, app),
        modes=MOUNT_MODES,
        one_replica=app.replicas > 1 and any(
            v.state == "active" and v.mode == "exclusive" for v in rows
        ),
    ), status  # fmt: skip


def _back(app: Application):
    return redirect(url_for("volumes.index", app_id=app.id), 303)


@bp.get("/apps/<int:app_id>/volumes")
def index(app_id: int):
    app = access.application(app_id)
    return _page(app, VolumeForm(formdata=None))


@bp.post("/apps/<int:app_id>/volumes")
def add(app_id: int):
    app = access.application(app_id, access.Action.VOLUME_MANAGE)
    form = VolumeForm()
    if not form.validate():
        return _page(app, form, 422)
    try:
        volume = volumes.add(app, label=form.label.data, mount_path=form.mount_path.data,
                             mode=form.mode.data, by=current_user)  # fmt: skip
    except volumes.VolumeError as exc:
        field = getattr(form, exc.field or "label")
        field.errors = [*field.errors, str(exc)]
        return _page(app, form, 422)
    flash(f"Volume {volume.label} is mounted at {volume.mount_path} from the next deployment.",
          "success")  # fmt: skip
    return _back(app)


@bp.post("/apps/<int:app_id>/volumes/<int:volume_id>/mode")
def mode(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_MANAGE)
    volume = access.volume(app, volume_id)
    form = VolumeModeForm()
    if not form.validate():
        flash("The mode is exclusive or shared.", "error")
        return _back(app)
    volumes.set_mode(volume, form.mode.data, by=current_user)
    flash(f"Volume {volume.label} is {volume.mode} from the next deployment.", "success")
    return _back(app)


@bp.get("/apps/<int:app_id>/volumes/<int:volume_id>/detach")
def detach_get(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_MANAGE)
    volume = access.volume(app, volume_id)
    return render_template(
        "confirm.html",
        title=f"Detach volume {volume.label} ({volume.mount_path})?",
        message=(
            "The next deployment no longer mounts it; the running container keeps it until "
            "then. Its data is kept for the grace period, when it can be re-attached, and "
            "only then removed."
        ),
        action=url_for("volumes.detach_post", app_id=app.id, volume_id=volume.id),
        confirm_label="Detach volume",
        back=url_for("volumes.index", app_id=app.id),
    )


@bp.post("/apps/<int:app_id>/volumes/<int:volume_id>/detach")
def detach_post(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_MANAGE)
    volume = access.volume(app, volume_id)
    try:
        volumes.detach(volume, by=current_user)
    except volumes.VolumeError as exc:
        flash(str(exc), "error")
        return _back(app)
    flash(f"Volume {volume.label} detached: kept until {volume.purge_after:%Y-%m-%d}.",
          "success")  # fmt: skip
    return _back(app)


@bp.post("/apps/<int:app_id>/volumes/<int:volume_id>/reattach")
def reattach(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_MANAGE)
    volume = access.volume(app, volume_id)
    try:
        volumes.reattach(volume, by=current_user)
    except volumes.VolumeError as exc:
        flash(str(exc), "error")
        return _back(app)
    flash(f"Volume {volume.label} is mounted again from the next deployment.", "success")
    return _back(app)


@bp.get("/apps/<int:app_id>/volumes/<int:volume_id>/purge")
def purge_get(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_PURGE)
    volume = access.volume(app, volume_id)
    return render_template(
        "confirm.html",
        title=f"Purge volume {volume.label} now?",
        message=(
            f"Its data ({volume.mount_path}) is removed for good, without waiting for the "
            "grace period. This cannot be undone."
        ),
        action=url_for("volumes.purge_post", app_id=app.id, volume_id=volume.id),
        confirm_label="Purge volume",
        back=url_for("volumes.index", app_id=app.id),
    )


@bp.post("/apps/<int:app_id>/volumes/<int:volume_id>/purge")
def purge_post(app_id: int, volume_id: int):
    app = access.application(app_id, access.Action.VOLUME_PURGE)
    volume = access.volume(app, volume_id)
    if volume.state != "detached":
        flash("Only a detached volume can be purged.", "error")
        return _back(app)
    queue("default").enqueue("app.jobs.purge_volume", volume.id, current_user.id,
                             job_id=f"purge-volume-{volume.id}")  # fmt: skip
    flash(f"Volume {volume.label} is being purged; a container still using it delays that "
          "until its next deployment.", "success")  # fmt: skip
    return _back(app)
