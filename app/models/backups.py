"""Backups: S3 destinations, policies (what, where, when, how long), backup runs,
and restores (including the monthly restore drill)."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, BigId, Timestamped, UTCDateTime, utcnow


class TargetType(enum.StrEnum):
    slipway = "slipway"  # Slipway's own database (installation owner only)
    postgres = "postgres"  # a PostgreSQL database registered by URL
    database = "database"  # a managed database of a project (app.databases), any engine
    volume = "volume"  # a persistent volume, as a tar stream


class BackupStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


# A backup, restore or drill in one of these has ended.
FINAL_BACKUP_STATUSES = frozenset({BackupStatus.succeeded.value, BackupStatus.failed.value})


class BackupDestination(Timestamped, Base):
    """An S3-compatible bucket (and prefix) a team's backups are written to."""

    __tablename__ = "backup_destinations"
    __table_args__ = (UniqueConstraint("team_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    endpoint_url: Mapped[str] = mapped_column(String(500))
    region: Mapped[str] = mapped_column(String(63), default="us-east-1")
    bucket: Mapped[str] = mapped_column(String(63))
    prefix: Mapped[str] = mapped_column(String(200), default="")
    access_key_id: Mapped[str] = mapped_column(String(200))
    secret_access_key: Mapped[str] = mapped_column(Text)  # ciphertext (app.crypto)
    path_style: Mapped[bool] = mapped_column(Boolean, default=False)


class BackupPolicy(Timestamped, Base):
    """What to back up, where, when (cron in the server's time zone), how long to keep."""

    __tablename__ = "backup_policies"
    __table_args__ = (UniqueConstraint("team_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    target_type: Mapped[str] = mapped_column(String(20))
    # postgresql://user@host:port/db — the password is never part of it.
    database_url: Mapped[str | None] = mapped_column(String(500))
    database_password: Mapped[str | None] = mapped_column(Text)  # ciphertext
    # target_type "database" / "volume": which one. No foreign keys (added to tables that
    # SQLite cannot alter without a rebuild); databases and volumes are never deleted as
    # rows (marked deleted, purged), so the backups stay listed with their target.
    database_id: Mapped[int | None] = mapped_column(Integer, index=True)
    volume_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # A volume backup stops the app first for a consistent copy (and starts it after).
    stop_app: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    destination_id: Mapped[int] = mapped_column(
        ForeignKey("backup_destinations.id", ondelete="RESTRICT"), index=True
    )
    cron: Mapped[str] = mapped_column(String(100), default="0 2 * * *")
    keep_local_days: Mapped[int] = mapped_column(Integer, default=7)
    keep_daily: Mapped[int] = mapped_column(Integer, default=30)
    keep_weekly: Mapped[int] = mapped_column(Integer, default=12)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # The scheduler compares this to what it scheduled: a change applies without a restart.
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    destination: Mapped[BackupDestination] = relationship()


class Backup(Timestamped, Base):
    """One backup run: the row is the truth about it."""

    __tablename__ = "backups"
    # A scheduled slot is backed up once, however many schedulers or retries fire it.
    __table_args__ = (UniqueConstraint("policy_id", "slot"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    policy_id: Mapped[int] = mapped_column(
        ForeignKey("backup_policies.id", ondelete="CASCADE"), index=True
    )
    slot: Mapped[str | None] = mapped_column(String(40))
    trigger: Mapped[str] = mapped_column(String(20), default="schedule")
    status: Mapped[str] = mapped_column(String(20), default=BackupStatus.queued.value)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    sha256: Mapped[str | None] = mapped_column(String(64))
    etag: Mapped[str | None] = mapped_column(String(80))
    bucket: Mapped[str | None] = mapped_column(String(63))
    object_key: Mapped[str | None] = mapped_column(String(500))
    upload_id: Mapped[str | None] = mapped_column(String(500))  # while a multipart is open
    local_path: Mapped[str | None] = mapped_column(String(500))
    uploaded: Mapped[bool] = mapped_column(Boolean, default=False)
    row_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    rq_job_id: Mapped[str | None] = mapped_column(String(100))

    policy: Mapped[BackupPolicy] = relationship()

    def mark_failed(self, reason: str) -> None:
        self.status = BackupStatus.failed.value
        self.error = reason[:2000]
        self.finished_at = utcnow()


class Restore(Timestamped, Base):
    """A restore of one backup (into its database or a new one), or a restore drill."""

    __tablename__ = "restores"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    backup_id: Mapped[int] = mapped_column(ForeignKey("backups.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # restore | drill
    target_database: Mapped[str | None] = mapped_column(String(63))  # None: the same one
    # A managed database restored into (a new one made for it, or the backup's own).
    target_database_id: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=BackupStatus.queued.value)
    error: Mapped[str | None] = mapped_column(Text)
    log: Mapped[str] = mapped_column(Text, default="")
    comparison: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    duration_seconds: Mapped[float | None] = mapped_column(Float)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    backup: Mapped[Backup] = relationship()

    def note(self, line: str) -> None:
        """Append a progress line (kept short; the page shows the log)."""
        stamp = utcnow().strftime("%H:%M:%S")
        self.log = (self.log or "") + f"{stamp} {line}\n"
