"""Notification channels: where a team hears about failures and apps going down."""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import JSON, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, Timestamped


class ChannelKind(enum.StrEnum):
    webhook = "webhook"  # generic JSON POST
    slack = "slack"  # Slack/Discord-compatible incoming webhook ({"text": ...})
    email = "email"  # SMTP


class NotificationEvent(enum.StrEnum):
    backup_failed = "backup.failed"
    drill_failed = "drill.failed"
    deploy_failed = "deploy.failed"
    # What serves an app (app/deploys/health.py): nothing answers any more; it serves
    # again; its replicas keep crashing and being restarted.
    app_down = "app.down"
    app_recovered = "app.recovered"
    app_crash_looping = "app.crash_looping"
    # Certificates (app/proxy/certs.py): an order failed (once per streak of failures);
    # one expires in 21, 14 or 7 days (once per threshold and certificate).
    certificate_failed = "certificate.failed"
    certificate_expiring = "certificate.expiring"


class NotificationChannel(Timestamped, Base):
    __tablename__ = "notification_channels"
    __table_args__ = (UniqueConstraint("team_id", "name"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(63))
    kind: Mapped[str] = mapped_column(String(20))
    events: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Webhook kinds: the URL (it often embeds a token), encrypted. Email: the SMTP password.
    secret: Mapped[str | None] = mapped_column(Text)
    # Non-secret settings: the URL's host for display; SMTP host, port, from, to, user, tls.
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # Generic webhooks: the HMAC-SHA256 key that signs each body (app/notify.py), encrypted.
    # NULL for other kinds, and for webhooks made before migration 0015 until one is made.
    signing_secret: Mapped[str | None] = mapped_column(Text)
