"""Persistent volumes of an app: every write the Volumes tab (and the pipeline) shares.

A volume is a named Docker volume (``runtime.volumes``) mounted at a checked path.
Deleting one takes two steps: :func:`detach` keeps it for ``VOLUME_GRACE_DAYS``
(the running container keeps it until the next deploy; :func:`reattach` undoes it),
then :func:`purge_now` (an admin, behind a confirmation) or the scheduler's
:func:`purge_due` removes it from the engine. An app that is deleted detaches its
volumes (:func:`detach_all`); nothing else ever removes a volume.

``exclusive`` (the default) means one writer: the pipeline stops the old version
before it starts the new one. ``shared`` means the app tolerates two writers
(normal blue/green).
"""

from __future__ import annotations

import logging
from datetime import timedelta

from flask import current_app
from sqlalchemy import select

from app import audit, names
from app.extensions import db
from app.models import Application
from app.models.base import utcnow
from app.models.databases import MountMode, Volume, VolumeState
from app.runtime import volumes as runtime_volumes

log = logging.getLogger("slipway.volumes")


class VolumeError(ValueError):
    """``field``: the form field the message belongs next to (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def of_app(app: Application) -> list[Volume]:
    """The app's volumes: active ones by mount path, then detached ones."""
    found = db.session.scalars(
        select(Volume)
        .where(Volume.application_id == app.id, Volume.state != VolumeState.purged.value)
        .order_by(Volume.mount_path, Volume.id)
    ).all()
    return sorted(found, key=lambda v: v.state != VolumeState.active.value)


def active_of(app_id: int) -> list[Volume]:
    """The volumes the app's next deployment mounts."""
    return list(
        db.session.scalars(
            select(Volume)
            .where(Volume.application_id == app_id, Volume.state == VolumeState.active.value)
            .order_by(Volume.mount_path)
        )
    )


def is_exclusive(app_id: int) -> bool:
    """Whether a deploy of the app must stop the old version before starting the new."""
    return any(v.mode == MountMode.exclusive.value for v in active_of(app_id))


def mounts_of(app_id: int) -> list[runtime_volumes.Mount]:
    """The app's active volumes as mounts, each created on the engine if missing."""
    mounts = []
    for volume in active_of(app_id):
        # Checked again at use: a path written straight into the database must not reach
        # the engine either (SECURITY case 27).
        path = runtime_volumes.check_mount_path(volume.mount_path)
        if volume.docker_name != runtime_volumes.volume_name(volume.id):
            # Its own volume only, never another app's (SECURITY case 27).
            raise runtime_volumes.MountPathError(f"volume {volume.label} is not this app's")
        runtime_volumes.ensure(
            volume.docker_name, volume_id=volume.id, project_id=volume.project_id,
            app_id=app_id,
        )  # fmt: skip
        mounts.append(runtime_volumes.Mount(volume.docker_name, path))
    return mounts


def _owner_label(app: Application) -> str:
    return f"app {app.name} of project {app.project.name}"


def _mode(mode: str) -> str:
    try:
        return MountMode(mode).value
    except ValueError:
        raise VolumeError("The mode is exclusive or shared.", "mode") from None


def _check_path(app: Application, mount_path: str, volume_id: int | None = None) -> str:
    try:
        path = runtime_volumes.check_mount_path(mount_path)
    except runtime_volumes.MountPathError as exc:
        raise VolumeError(str(exc), "mount_path") from None
    taken = db.session.scalar(
        select(Volume).where(Volume.application_id == app.id, Volume.mount_path == path)
    )
    if taken is not None and taken.id != volume_id:
        if taken.state == VolumeState.detached.value:
            raise VolumeError(
                f"A detached volume ({taken.label}) is kept at {path} until "
                f"{taken.purge_after:%Y-%m-%d}: re-attach it, or purge it first.",
                "mount_path",
            )
        raise VolumeError(f"{path} is already mounted ({taken.label}).", "mount_path")
    return path


def add(
    app: Application, *, label: str, mount_path: str, mode: str = MountMode.exclusive.value,
    by=None,
) -> Volume:  # fmt: skip
    """A new volume of ``app`` mounted at ``mount_path`` from its next deployment on."""
    try:
        label = names.slug(label, "Label")
    except names.InvalidValue as exc:
        raise VolumeError(str(exc), "label") from None
    path = _check_path(app, mount_path)
    mode = _mode(mode)
    volume = Volume(
        project_id=app.project_id, application_id=app.id, label=label, mount_path=path,
        mode=mode, state=VolumeState.active.value, owner_label=_owner_label(app),
    )  # fmt: skip
    db.session.add(volume)
    db.session.flush()
    volume.docker_name = runtime_volumes.volume_name(volume.id)
    _record(audit.Action.VOLUME_ADDED, volume, by, mount_path=path, mode=mode)
    db.session.commit()
    return volume


def set_mode(volume: Volume, mode: str, by=None) -> None:
    """Exclusive or shared, from the app's next deployment on."""
    volume.mode = _mode(mode)
    _record(audit.Action.VOLUME_UPDATED, volume, by, mode=volume.mode)
    db.session.commit()


def _detach(volume: Volume) -> None:
    now = utcnow()
    volume.state = VolumeState.detached.value
    volume.detached_at = now
    volume.purge_after = now + timedelta(days=current_app.config["VOLUME_GRACE_DAYS"])


def detach_volume_row(volume: Volume) -> None:
    """Its project is being deleted: detached for the grace period (the caller commits;
    the row outlives the project: ``project_id`` becomes NULL)."""
    _detach(volume)


def detach(volume: Volume, by=None) -> None:
    """The first step of deleting a mount: the next deployment no longer mounts it (the
    running container keeps it until then); the data is kept until ``purge_after``."""
    if volume.state != VolumeState.active.value:
        raise VolumeError("This volume is not attached.")
    _detach(volume)
    _record(audit.Action.VOLUME_DETACHED, volume, by, purge_after=f"{volume.purge_after:%F}")
    db.session.commit()


def reattach(volume: Volume, by=None) -> None:
    """Undo :func:`detach` within the grace period (its mount path must still be free)."""
    if volume.state != VolumeState.detached.value or volume.application is None:
        raise VolumeError("Only a detached volume of an existing app can be re-attached.")
    taken = db.session.scalar(
        select(Volume).where(
            Volume.application_id == volume.application_id,
            Volume.mount_path == volume.mount_path,
            Volume.state == VolumeState.active.value,
            Volume.id != volume.id,
        )
    )
    if taken is not None:
        raise VolumeError(f"{volume.mount_path} is mounted by {taken.label} now.")
    volume.state = VolumeState.active.value
    volume.detached_at = volume.purge_after = None
    _record(audit.Action.VOLUME_REATTACHED, volume, by)
    db.session.commit()


def detach_all(app: Application) -> list[int]:
    """An app being deleted: its volumes are detached, never removed (the caller commits;
    the rows outlive the app: ``application_id`` becomes NULL)."""
    detached = []
    for volume in active_of(app.id):
        _detach(volume)
        detached.append(volume.id)
    return detached


def purge_now(volume: Volume, by=None) -> bool:
    """The second step, asked for: remove a detached volume from the engine now. False
    (nothing changed) while a container still uses it; the scheduled purge retries."""
    if volume.state != VolumeState.detached.value:
        raise VolumeError("Only a detached volume can be purged.")
    if _purge(volume, by):
        return True
    volume.purge_after = min(volume.purge_after or utcnow(), utcnow())  # the hourly purge
    db.session.commit()
    return False


def _purge(volume: Volume, by=None) -> bool:
    if volume.docker_name and not runtime_volumes.remove(volume.docker_name):
        log.info("volume %s (%s) is still in use; purge retried later", volume.id,
                 volume.docker_name)  # fmt: skip
        return False
    volume.state = VolumeState.purged.value
    _record(audit.Action.VOLUME_PURGED, volume, by)
    db.session.commit()
    return True


def purge_due(now=None) -> list[int]:
    """The scheduler's purge: detached volumes whose grace period is over. One still in
    use stays detached and is tried again next time. Returns the ids purged."""
    now = now or utcnow()
    due = db.session.scalars(
        select(Volume).where(Volume.state == VolumeState.detached.value, Volume.purge_after <= now)
    ).all()
    purged = []
    for volume in due:
        try:
            if _purge(volume):
                purged.append(volume.id)
        except Exception:  # noqa: BLE001 - one volume's failure must not stop the others
            db.session.rollback()
            log.exception("purging volume %s failed; retried next time", volume.id)
    return purged


def _record(action, volume: Volume, by, **details) -> None:
    audit.record(
        # A deleted project's volume has no team left: an installation-wide row.
        action, team_id=volume.project.team_id if volume.project else None, target=volume,
        user_id=getattr(by, "id", None), label=volume.label, **details,
    )  # fmt: skip
