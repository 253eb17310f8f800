"""The final backup of a managed database before it is deleted (the delete job calls
:func:`take` in the worker, synchronously)."""

from __future__ import annotations

from sqlalchemy import select

from app import audit
from app.extensions import db
from app.models import Backup, BackupPolicy, BackupStatus, Database, TargetType


class FinalBackupError(Exception):
    """No final backup: the message says why, for the person deleting the database."""


def policy_for(database: Database) -> BackupPolicy | None:
    """The first enabled policy of the database's team that targets it."""
    return db.session.scalar(
        select(BackupPolicy).where(
            BackupPolicy.target_type == TargetType.database.value,
            BackupPolicy.database_id == database.id,
            BackupPolicy.team_id == database.project.team_id,
            BackupPolicy.enabled,
        ).order_by(BackupPolicy.id).limit(1)
    )  # fmt: skip


def take(database_id: int) -> int:
    """Back the database up now, through its first enabled policy; returns the backup's
    id. Raises :class:`FinalBackupError` when no policy covers it or the backup fails."""
    from app.backups import runs

    database = db.session.get(Database, database_id)
    if database is None:
        raise FinalBackupError(f"database {database_id} does not exist")
    policy = policy_for(database)
    if policy is None:
        raise FinalBackupError(f"no backup policy covers database {database.name}: add one, "
                               "or untick the final backup")  # fmt: skip
    backup = Backup(team_id=policy.team_id, policy_id=policy.id, trigger="final")
    db.session.add(backup)
    db.session.flush()
    audit.record(audit.Action.BACKUP_STARTED, team_id=policy.team_id, target=backup,
                 policy=policy.name)  # fmt: skip
    db.session.commit()
    status = runs.run(backup.id)
    if status != BackupStatus.succeeded.value:
        db.session.refresh(backup)
        raise FinalBackupError(f"the final backup of database {database.name} failed: "
                               f"{backup.error or status}")  # fmt: skip
    return backup.id
