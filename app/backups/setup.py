"""Backup destinations, policies and notification channels as forms save them.

Secrets (the S3 secret key, a database password, a webhook URL, an SMTP
password) are encrypted here and never come back to a page: an empty secret
field on an edit form keeps the stored value.
"""

from __future__ import annotations

from sqlalchemy import select

from app import audit, crypto, notify
from app.backups import runs, targets
from app.extensions import db
from app.models import (
    Backup,
    BackupDestination,
    BackupPolicy,
    ChannelKind,
    NotificationChannel,
    Restore,
)


def destinations(team_id: int) -> list[BackupDestination]:
    return list(db.session.scalars(
        select(BackupDestination).where(BackupDestination.team_id == team_id)
        .order_by(BackupDestination.name)
    ))  # fmt: skip


def policies(team_id: int) -> list[BackupPolicy]:
    return list(db.session.scalars(
        select(BackupPolicy).where(BackupPolicy.team_id == team_id).order_by(BackupPolicy.name)
    ))  # fmt: skip


def recent_backups(team_id: int, limit: int = 50) -> list[Backup]:
    return list(db.session.scalars(
        select(Backup).where(Backup.team_id == team_id).order_by(Backup.id.desc()).limit(limit)
    ))  # fmt: skip


def recent_restores(team_id: int, limit: int = 20) -> list[Restore]:
    return list(db.session.scalars(
        select(Restore).where(Restore.team_id == team_id).order_by(Restore.id.desc()).limit(limit)
    ))  # fmt: skip


def name_taken(model, team_id: int, name: str, exclude_id: int | None = None) -> bool:
    query = select(model.id).where(model.team_id == team_id, model.name == name)
    if exclude_id is not None:
        query = query.where(model.id != exclude_id)
    return db.session.scalar(query) is not None


def save_destination(form, dest: BackupDestination) -> BackupDestination:
    for field in ("name", "endpoint_url", "region", "bucket", "prefix", "access_key_id",
                  "path_style"):  # fmt: skip
        setattr(dest, field, getattr(form, field).data)
    if form.secret_access_key.data:
        dest.secret_access_key = crypto.encrypt(
            form.secret_access_key.data, context=targets.S3_SECRET
        )
    db.session.add(dest)
    db.session.flush()
    audit.record(
        audit.Action.BACKUP_DESTINATION_SAVED, team_id=dest.team_id, target=dest, name=dest.name
    )
    db.session.commit()
    return dest


class InUse(Exception):
    """The destination still has a policy that writes to it."""


def delete_destination(dest: BackupDestination) -> None:
    """Delete a destination no policy uses (its objects in S3 stay)."""
    if db.session.scalar(select(BackupPolicy.id).where(BackupPolicy.destination_id == dest.id)):
        raise InUse("A policy still uses this destination; change or delete it first.")
    _delete(dest, audit.Action.BACKUP_DESTINATION_DELETED)


def target_name(policy: BackupPolicy) -> str:
    """The name a restore is confirmed with: the database's (or the volume's label)."""
    from app.models import Database, Volume

    if policy.target_type == "database":
        found = db.session.get(Database, policy.database_id or 0)
        return found.name if found else f"database-{policy.database_id}"
    if policy.target_type == "volume":
        found = db.session.get(Volume, policy.volume_id or 0)
        return found.label if found else f"volume-{policy.volume_id}"
    url = policy.database_url or ""
    return url.rsplit("/", 1)[-1] if url else "slipway"


def policy_choices(form, team_id: int) -> None:
    """The policy form's targets: the team's live managed databases and app volumes."""
    from app.models import Application, Database, Project, Volume

    found = db.session.execute(
        select(Database.id, Database.name, Database.engine, Project.name)
        .join(Project, Project.id == Database.project_id)
        .where(Project.team_id == team_id, Database.deleted_at.is_(None))
        .order_by(Project.name, Database.name)
    ).all()  # fmt: skip
    form.database_id.choices = [(i, f"{p} / {n} ({e})") for i, n, e, p in found]
    vols = db.session.execute(
        select(Volume.id, Volume.label, Application.name, Project.name)
        .join(Application, Application.id == Volume.application_id)
        .join(Project, Project.id == Volume.project_id)
        .where(Project.team_id == team_id, Volume.state == "active")
        .order_by(Project.name, Application.name, Volume.label)
    ).all()  # fmt: skip
    form.volume_id.choices = [(i, f"{p} / {a}: {label}") for i, label, a, p in vols]


def save_policy(form, policy: BackupPolicy) -> BackupPolicy:
    for field in ("name", "target_type", "destination_id", "cron", "keep_local_days",
                  "keep_daily", "keep_weekly", "enabled"):  # fmt: skip
        setattr(policy, field, getattr(form, field).data)
    policy.database_id = form.database_id.data if policy.target_type == "database" else None
    policy.volume_id = form.volume_id.data if policy.target_type == "volume" else None
    policy.stop_app = bool(form.stop_app.data) and policy.target_type == "volume"
    if policy.target_type in ("slipway", "database", "volume"):
        policy.database_url = policy.database_password = None
    elif form.parsed_url is not None:
        policy.database_url, password = form.parsed_url
        policy.database_password = (
            crypto.encrypt(password, context=runs.DB_PASSWORD) if password else None
        )
    db.session.add(policy)
    db.session.flush()
    audit.record(
        audit.Action.BACKUP_POLICY_SAVED, team_id=policy.team_id, target=policy, name=policy.name
    )
    db.session.commit()
    return policy


def delete_policy(policy: BackupPolicy) -> None:
    """Delete a policy: its schedule stops and its backup rows go; files and objects stay."""
    _delete(policy, audit.Action.BACKUP_POLICY_DELETED)


def save_channel(form, channel: NotificationChannel) -> str | None:
    """Create or edit a channel from a validated :class:`ChannelForm`.

    The kind of an existing channel never changes. An empty URL or SMTP password on an
    edit keeps the stored one. A new generic webhook gets a signing secret, returned
    (the only time it is readable) so that the page can show it once; otherwise None.
    """
    editing = channel.id is not None
    if not editing:
        channel.kind = form.kind.data
    channel.name, channel.events = form.name.data, form.events.data
    if channel.kind == ChannelKind.email.value:
        channel.settings = {
            "host": form.smtp_host.data, "port": form.smtp_port.data or 25,
            "starttls": bool(form.smtp_starttls.data), "username": form.smtp_username.data,
            "sender": form.sender.data, "to": form.to.data,
        }  # fmt: skip
        if form.smtp_password.data:
            channel.secret = crypto.encrypt(form.smtp_password.data, context=notify.SECRET_CONTEXT)
    elif form.url.data:
        from app import names

        channel.settings = {"host": names.url_host(form.url.data)}
        channel.secret = crypto.encrypt(form.url.data, context=notify.SECRET_CONTEXT)
    signing_secret = None
    if channel.kind == ChannelKind.webhook.value and not channel.signing_secret:
        signing_secret = notify.new_signing_secret()
        channel.signing_secret = crypto.encrypt(signing_secret, context=notify.SIGNING_CONTEXT)
    db.session.add(channel)
    db.session.flush()
    audit.record(audit.Action.NOTIFICATION_CHANNEL_SAVED, team_id=channel.team_id, target=channel,
                 name=channel.name, edited=editing, kind=channel.kind)  # fmt: skip
    db.session.commit()
    return signing_secret


def rotate_signing_secret(channel: NotificationChannel) -> str:
    """A new signing secret for a generic webhook channel; returned to be shown once."""
    if channel.kind != ChannelKind.webhook.value:
        raise ValueError("only generic webhook channels sign their bodies")
    signing_secret = notify.new_signing_secret()
    channel.signing_secret = crypto.encrypt(signing_secret, context=notify.SIGNING_CONTEXT)
    audit.record(audit.Action.NOTIFICATION_SIGNING_SECRET_ROTATED, team_id=channel.team_id,
                 target=channel, name=channel.name)  # fmt: skip
    db.session.commit()
    return signing_secret


def delete_channel(channel: NotificationChannel) -> None:
    _delete(channel, audit.Action.NOTIFICATION_CHANNEL_DELETED)


def _delete(row: BackupDestination | BackupPolicy | NotificationChannel, action) -> None:
    audit.record(action, team_id=row.team_id, target=row, name=row.name)
    db.session.delete(row)
    db.session.commit()
