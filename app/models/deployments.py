"""Deployments and their build log, one row per line."""

from __future__ import annotations

import enum
import json
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    func,
    select,
)
from sqlalchemy.orm import Mapped, aliased, mapped_column, object_session, relationship

from app.models.accounts import User
from app.models.applications import Application
from app.models.base import Base, BigId, Timestamped, UTCDateTime, utcnow


class DeploymentStatus(enum.StrEnum):
    queued = "queued"
    building = "building"
    deploying = "deploying"
    running = "running"
    failed = "failed"
    cancelled = "cancelled"
    superseded = "superseded"
    # Was running; a newer deployment now serves. Its image may be kept for rollback.
    replaced = "replaced"


class DeployStep(enum.StrEnum):
    clone = "clone"
    build = "build"
    start = "start"
    health = "health"
    switch = "switch"
    # Serving, with the old version still running: a failure now reverts to it.
    watch = "watch"


ACTIVE_STATUSES = (DeploymentStatus.queued, DeploymentStatus.building, DeploymentStatus.deploying)
FINAL_STATUSES = tuple(s for s in DeploymentStatus if s not in ACTIVE_STATUSES)
# Versions that served traffic: the ones a rollback can return to (their image is kept).
SERVED_STATUSES = (DeploymentStatus.running, DeploymentStatus.replaced)
# Before it serves, a deployment can be cancelled (queued: dropped; building: stopped).
CANCELLABLE_STATUSES = (DeploymentStatus.queued, DeploymentStatus.building)
# Triggers that start an image a deployment already ran: no clone, no build.
REUSE_TRIGGERS = ("rollback", "apply", "restart")
ENV_SOURCES = {
    "current": "the app's env when it started",
    "restored": "the env that deployment ran with (restored)",
    "kept": "today's env (kept at the rollback)",
    "unrecorded": "today's env: that deployment recorded none",
}


class Deployment(Timestamped, Base):
    __tablename__ = "deployments"
    __table_args__ = (
        Index("ix_deployments_app_id", "application_id", "id"),
        {"sqlite_autoincrement": True},  # image and container names carry the id
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(20), default=DeploymentStatus.queued.value)
    trigger: Mapped[str] = mapped_column(String(20), default="manual")
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    commit_message: Mapped[str | None] = mapped_column(Text)
    commit_author: Mapped[str | None] = mapped_column(String(255))
    # The ref a webhook named (a tag, or the app's branch); None = the app's branch.
    git_ref: Mapped[str | None] = mapped_column(String(255))
    # The pipeline step in progress while building/deploying (clone → … → switch).
    step: Mapped[str | None] = mapped_column(String(20))
    rollback_of_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL")
    )
    image_tag: Mapped[str | None] = mapped_column(String(255))
    # The content id (sha256:…) of the image built or pulled: a rollback runs this id,
    # and only while image_tag still names it.
    image_id: Mapped[str | None] = mapped_column(String(100))
    # The digest (repo@sha256:…) a pulled image had: what an image app really ran.
    image_digest: Mapped[str | None] = mapped_column(String(255))
    # The release: the env it ran with (one ciphertext, app.crypto), a digest of the
    # env as stored (pages compare without decrypting) and the runtime settings (JSON).
    # A rollback, apply or restart row may carry them from the moment it is queued.
    env_ciphertext: Mapped[str | None] = mapped_column(Text)
    env_digest: Mapped[str | None] = mapped_column(String(64))
    # Whose env it ran with: current | restored | kept | unrecorded (ENV_SOURCES).
    env_source: Mapped[str | None] = mapped_column(String(20))
    settings: Mapped[str | None] = mapped_column(Text)
    # While in the watch window: when it ends (the old version then stops).
    watch_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # An exclusive volume: how long no version ran (old stopped → new accepting), in ms.
    volume_gap_ms: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(Text)
    rq_job_id: Mapped[str | None] = mapped_column(String(64))
    triggered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The build log passed BUILD_LOG_MAX_BYTES: later build output was counted, not stored.
    log_truncated: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    log_dropped_lines: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    log_dropped_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")

    application: Mapped[Application] = relationship()
    triggered_by: Mapped[User | None] = relationship()

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at is None or self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()

    @property
    def is_final(self) -> bool:
        return self.status not in ACTIVE_STATUSES

    @property
    def can_cancel(self) -> bool:
        return self.status in CANCELLABLE_STATUSES

    @property
    def runtime_settings(self) -> dict | None:
        """The runtime settings it ran with (or was queued to run with), if recorded."""
        return json.loads(self.settings) if self.settings else None

    @property
    def watching(self) -> bool:
        return self.status == DeploymentStatus.deploying.value and self.step == "watch"

    @property
    def can_roll_back(self) -> bool:
        """It served traffic and its image is kept: deploying it again needs no build."""
        return self.status in SERVED_STATUSES and bool(self.image_tag)

    @property
    def needs_build(self) -> bool:
        """The lane rule: a git app's deployment queued without an image builds one (and
        waits for a build slot); rollbacks, applies and restarts carry their image id."""
        return self.application.source_type == "git" and not self.image_id

    @property
    def waiting_for(self) -> str | None:
        """What a queued deployment waits for, in words; None when it waits for nothing
        but a worker to take it (or is not queued)."""
        if self.status != DeploymentStatus.queued.value or self.id is None:
            return None
        session = object_session(self)
        before = session.scalar(
            select(Deployment.id)
            .where(
                Deployment.application_id == self.application_id,
                Deployment.id != self.id,
                Deployment.status.in_(_WORKING),
            )
            .order_by(Deployment.id)
            .limit(1)
        )
        if before is not None:
            return f"waiting for the previous deployment of this app (#{before}) to finish"
        if not self.needs_build:
            return None
        from flask import current_app

        slots = current_app.config["BUILD_CONCURRENCY"]
        ahead = _builds_ahead(session, self.id)
        if ahead < slots:
            return None
        plural = "s" if ahead != 1 else ""
        return f"waiting for a build slot: {ahead} build{plural} ahead of it ({slots} at a time)"

    def mark_failed(self, reason: str) -> None:
        """End this deployment as failed, keeping the reason for the user."""
        self.status = DeploymentStatus.failed.value
        self.error = reason
        self.finished_at = utcnow()


_WORKING = (DeploymentStatus.building.value, DeploymentStatus.deploying.value)


def _builds_ahead(session, deployment_id: int) -> int:
    """Builds running now, and queued builds before this one that wait for no app."""
    other = aliased(Deployment)
    app_busy = (
        select(other.id)
        .where(other.application_id == Deployment.application_id, other.status.in_(_WORKING))
        .exists()
    )
    building = session.scalar(
        select(func.count(Deployment.id))
        .join(Application, Application.id == Deployment.application_id)
        .where(Deployment.status == DeploymentStatus.building.value,
               Application.source_type == "git")
    )  # fmt: skip
    queued = session.scalar(
        select(func.count(Deployment.id))
        .join(Application, Application.id == Deployment.application_id)
        .where(
            Deployment.status == DeploymentStatus.queued.value,
            Deployment.id < deployment_id,
            Application.source_type == "git",
            Deployment.image_id.is_(None),
            ~app_busy,
        )
    )
    return building + queued


class DeploymentLogLine(Base):
    __tablename__ = "deployment_log_lines"
    __table_args__ = (UniqueConstraint("deployment_id", "seq"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    deployment_id: Mapped[int] = mapped_column(ForeignKey("deployments.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    stream: Mapped[str] = mapped_column(String(10), default="stdout")
    text: Mapped[str] = mapped_column(Text)
