"""Applications, their environment variables and domains."""

from __future__ import annotations

import enum
from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Timestamped, UTCDateTime, utcnow
from app.models.projects import Environment, Project


class Application(Timestamped, Base):
    __tablename__ = "applications"
    # Unique per project (not per environment): the default address is
    # <app>.<project>.<base domain>.
    # Container, image and route names carry ids: SQLite must never reuse one.
    __table_args__ = (
        UniqueConstraint("project_id", "name"),
        # The default address's label part, unique in the installation: two teams' apps
        # of the same names must never share a host (projects.catalog sets it).
        Index("ix_applications_address", "address", unique=True),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    environment_id: Mapped[int] = mapped_column(
        ForeignKey("environments.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(63))
    # ``<app>.<project>``, or ``<app>-a<id>.<project>`` for a duplicate from before
    # migration 0007; the default address is this under the base domain.
    address: Mapped[str | None] = mapped_column(String(127))
    description: Mapped[str] = mapped_column(Text, default="")
    source_type: Mapped[str] = mapped_column(String(10), default="git")  # git | image
    git_url: Mapped[str | None] = mapped_column(String(500))
    git_branch: Mapped[str | None] = mapped_column(String(255))
    build_context: Mapped[str] = mapped_column(String(255), default=".")
    dockerfile_path: Mapped[str] = mapped_column(String(255), default="Dockerfile")
    image: Mapped[str | None] = mapped_column(String(255))
    container_port: Mapped[int] = mapped_column(Integer, default=8000)
    replicas: Mapped[int] = mapped_column(Integer, default=1)
    health_check_path: Mapped[str] = mapped_column(String(255), default="/")
    cpu_limit: Mapped[float | None] = mapped_column(Numeric(6, 2, asdecimal=False))
    memory_limit_mb: Mapped[int | None] = mapped_column(Integer)
    auto_deploy: Mapped[bool] = mapped_column(Boolean, default=False)
    # Seconds after the switch during which a failure reverts to the old version;
    # None = SLIPWAY_WATCH_SECONDS, 0 = no window.
    watch_seconds: Mapped[int | None] = mapped_column(Integer)
    webhook_secret: Mapped[str | None] = mapped_column(Text)  # ciphertext (app.crypto)
    # Git integration (app/sources/webhooks.py, app/sources/credentials.py). The token
    # names the app in its webhook URL; it is not the secret that signs deliveries.
    webhook_token: Mapped[str | None] = mapped_column(String(64), unique=True)
    watch_paths: Mapped[str] = mapped_column(Text, default="", server_default="")  # globs
    deploy_tags: Mapped[str | None] = mapped_column(String(255))  # tag glob; None = never
    deploy_key_private: Mapped[str | None] = mapped_column(Text)  # ciphertext
    deploy_key_public: Mapped[str | None] = mapped_column(Text)
    git_known_hosts: Mapped[str | None] = mapped_column(Text)  # pinned on first use
    git_token: Mapped[str | None] = mapped_column(Text)  # ciphertext
    git_token_user: Mapped[str | None] = mapped_column(String(100))
    # Clone the submodules in .gitmodules (recursively, under the clone's own rules).
    git_submodules: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # What is serving, apart from the last deployment's status (app/deploys/health.py):
    # up, degraded, down, restarting, crash-looping; None until the app is first routed.
    # Written by the runtime watcher and routing only (never by a form).
    health: Mapped[str | None] = mapped_column(String(20))
    # Per replica: state, exit code, OOM kill, its last lines (redacted); a summary.
    health_detail: Mapped[dict | None] = mapped_column(JSON)
    health_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The deployment whose replicas Traefik is told to serve (app/deploys/routing.py),
    # with how many replicas (a removed one still counts as missing) and on which port
    # (the container port it was started with; an edit applies at the next deploy).
    # No foreign key: deployments reference applications, and only go with their app.
    routed_deployment_id: Mapped[int | None] = mapped_column(Integer)
    routed_replicas: Mapped[int | None] = mapped_column(Integer)
    routed_port: Mapped[int | None] = mapped_column(Integer)

    project: Mapped[Project] = relationship()
    environment: Mapped[Environment] = relationship()
    env_vars: Mapped[list[EnvVar]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="EnvVar.key"
    )
    domains: Mapped[list[Domain]] = relationship(
        back_populates="application", cascade="all, delete-orphan", order_by="Domain.host"
    )

    @property
    def source_label(self) -> str:
        if self.source_type == "image":
            return self.image or ""
        return f"{self.git_url} @ {self.git_branch}"


class EnvVar(Timestamped, Base):
    __tablename__ = "env_vars"
    __table_args__ = (UniqueConstraint("application_id", "key"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    key: Mapped[str] = mapped_column(String(255))
    # Exactly one of these is set: plain text for ordinary values, AES-GCM
    # ciphertext (app.crypto) for secret ones.
    value: Mapped[str | None] = mapped_column(Text)
    secret_value: Mapped[str | None] = mapped_column(Text)
    is_secret: Mapped[bool] = mapped_column(Boolean, default=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    application: Mapped[Application] = relationship(back_populates="env_vars")


class HttpsMode(enum.StrEnum):
    # HTTPS, and plain HTTP redirects there permanently (the default): Traefik answers 301
    # to GET and 308 to other methods, and has no setting for 308 on GET.
    redirect = "redirect"
    only = "only"  # HTTPS only: plain HTTP gets no route
    off = "off"  # plain HTTP only, no certificate


class WwwMode(enum.StrEnum):
    none = "none"  # the host alone
    both = "both"  # the host and its www twin both serve
    to_apex = "to_apex"  # www.<host> redirects permanently to <host>
    to_www = "to_www"  # <host> redirects permanently to www.<host>


class Domain(Timestamped, Base):
    """A host name (and path prefix) an app answers on, beside its default address.

    ``host`` is stored in punycode (``names.hostname``); the rows of one host, whatever
    their prefixes, all belong to one team (``team_id``), checked where they are made
    (``app.proxy.domains``). ``www`` names the twin ``www.<host>`` (or, for a host that
    starts with ``www.``, the apex): it is always on the certificate."""

    __tablename__ = "app_domains"
    __table_args__ = (
        UniqueConstraint("host", "path_prefix", name="uq_app_domains_host"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    application_id: Mapped[int] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"))
    host: Mapped[str] = mapped_column(String(253), index=True)
    path_prefix: Mapped[str] = mapped_column(String(255), default="/")
    strip_prefix: Mapped[bool] = mapped_column(Boolean, default=False)
    https_mode: Mapped[str] = mapped_column(String(20), default=HttpsMode.redirect.value)
    www: Mapped[str] = mapped_column(String(20), default=WwwMode.none.value)
    certificate_id: Mapped[int | None] = mapped_column(
        ForeignKey("certificates.id", ondelete="SET NULL")
    )

    application: Mapped[Application] = relationship(back_populates="domains")
    certificate = relationship("Certificate")

    @property
    def https(self) -> bool:
        return self.https_mode != HttpsMode.off.value
