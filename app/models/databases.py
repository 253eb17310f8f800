"""Managed databases (PostgreSQL, MariaDB, Redis), persistent volumes, and the links
that put a database's variables into an app's environment at every deploy."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.applications import Application
from app.models.base import Base, Timestamped, UTCDateTime
from app.models.projects import Project


class Engine(enum.StrEnum):
    postgres = "postgres"
    mariadb = "mariadb"
    redis = "redis"


class DatabaseStatus(enum.StrEnum):
    creating = "creating"  # pulling the image, creating the volume, first start
    running = "running"  # accepted a connection
    stopped = "stopped"
    failed = "failed"  # ``error`` says why; the row stays so nothing is lost silently
    deleting = "deleting"  # the final backup and the removal are under way
    deleted = "deleted"  # gone from the engine; its volume waits out the grace period


class MountMode(enum.StrEnum):
    # One writer at a time: the old version stops before the new one starts.
    exclusive = "exclusive"
    # The app tolerates two writers: normal blue/green.
    shared = "shared"


class VolumeState(enum.StrEnum):
    active = "active"  # mounted by its app or database
    detached = "detached"  # its owner or mount was deleted; kept until ``purge_after``
    purged = "purged"  # removed from the engine


class Database(Timestamped, Base):
    """A database container of one project, on that project's network only."""

    __tablename__ = "databases"
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # A public port is the host's: one live database holds it (a deleted one lets go).
        Index("ix_databases_public_port", "public_port", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    # Slug; also the host name the project's apps reach it at (a network alias).
    name: Mapped[str] = mapped_column(String(63))
    engine: Mapped[str] = mapped_column(String(20))
    version: Mapped[str] = mapped_column(String(20))
    image: Mapped[str] = mapped_column(String(255))  # the reference it was started from
    username: Mapped[str] = mapped_column(String(63))
    database_name: Mapped[str] = mapped_column(String(63))  # "0" for Redis
    password: Mapped[str] = mapped_column(Text)  # ciphertext (app.crypto)
    password_rotated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cpu_limit: Mapped[float | None] = mapped_column(Numeric(6, 2, asdecimal=False))
    memory_limit_mb: Mapped[int | None] = mapped_column(Integer)
    # Off by default: a Traefik TCP router with TLS (SNI) on this host port.
    public_port: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default=DatabaseStatus.creating.value)
    error: Mapped[str | None] = mapped_column(Text)
    # What the worker is doing now ("pulling postgres:16: 41 of 120 MB"), for the page.
    progress: Mapped[str | None] = mapped_column(String(255))
    container_id: Mapped[str | None] = mapped_column(String(64))
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    project: Mapped[Project] = relationship()
    volume: Mapped[Volume | None] = relationship(
        back_populates="database", uselist=False, foreign_keys="Volume.database_id"
    )
    links: Mapped[list[DatabaseLink]] = relationship(
        back_populates="database", cascade="all, delete-orphan", order_by="DatabaseLink.id"
    )

    @property
    def alias(self) -> str:
        """The stable internal host name on the project's network."""
        return self.name

    @property
    def is_live(self) -> bool:
        return self.status not in (DatabaseStatus.deleting.value, DatabaseStatus.deleted.value)


class Volume(Timestamped, Base):
    """A named Docker volume of an app (mounted at ``mount_path``) or of a database.

    Never removed by a cleanup or retention: a volume whose owner or mount is deleted
    is ``detached`` and kept until ``purge_after``; only then does the purge remove it.
    """

    __tablename__ = "volumes"
    __table_args__ = (
        UniqueConstraint("application_id", "mount_path"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # SET NULL: a deleted project's volumes outlive it for the grace period.
    project_id: Mapped[int | None] = mapped_column(
        ForeignKey("projects.id", ondelete="SET NULL"), index=True
    )
    # The owner: an app or a database. Both SET NULL, so a deleted owner leaves the row
    # (and the data) for the grace period.
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="SET NULL"), index=True
    )
    database_id: Mapped[int | None] = mapped_column(
        ForeignKey("databases.id", ondelete="SET NULL"), index=True
    )
    label: Mapped[str] = mapped_column(String(63))  # the user's name for it
    # The engine's name, ``slipway-<installation>-v<id>``; set once the row has an id.
    docker_name: Mapped[str | None] = mapped_column(String(127), unique=True)
    mount_path: Mapped[str] = mapped_column(String(255))
    mode: Mapped[str] = mapped_column(String(20), default=MountMode.exclusive.value)
    state: Mapped[str] = mapped_column(String(20), default=VolumeState.active.value)
    detached_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    purge_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Who it belonged to, kept after the owner is gone ("app web of project shop").
    owner_label: Mapped[str] = mapped_column(String(255), default="")

    project: Mapped[Project | None] = relationship()
    application: Mapped[Application | None] = relationship()
    database: Mapped[Database | None] = relationship(
        back_populates="volume", foreign_keys=[database_id]
    )


class DatabaseLink(Timestamped, Base):
    """An app that gets a database's variables, computed at each deploy from the
    database's current credentials (never copied into the app's env vars)."""

    __tablename__ = "database_links"
    __table_args__ = (
        UniqueConstraint("application_id", "database_id"),
        UniqueConstraint("application_id", "prefix"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    database_id: Mapped[int] = mapped_column(
        ForeignKey("databases.id", ondelete="CASCADE"), index=True
    )
    # "" gives DATABASE_URL, PGHOST, …; "ANALYTICS" gives ANALYTICS_DATABASE_URL, …
    prefix: Mapped[str] = mapped_column(String(40), default="")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

    application: Mapped[Application] = relationship()
    database: Mapped[Database] = relationship(back_populates="links")
