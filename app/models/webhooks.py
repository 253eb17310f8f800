"""Webhook deliveries: the per-app delivery log, and what makes a replay harmless."""

from __future__ import annotations

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, Timestamped


class WebhookDelivery(Timestamped, Base):
    """One accepted (signed) delivery. Unique per app, provider and delivery id, and per
    app and body digest: a replayed delivery cannot insert a second row, whether it comes
    with its own delivery id or a fresh one, so it cannot deploy twice.

    ``body_sha256`` is the hex SHA-256 of the raw (signed) body; NULL on rows from before
    migration 0009, which the unique constraint lets coexist."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("application_id", "provider", "delivery_id"),
        UniqueConstraint("application_id", "body_sha256"),
        Index("ix_webhook_deliveries_app_id", "application_id", "id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    application_id: Mapped[int] = mapped_column(ForeignKey("applications.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(10))
    delivery_id: Mapped[str] = mapped_column(String(100))
    event: Mapped[str] = mapped_column(String(40))
    ref: Mapped[str | None] = mapped_column(String(255))
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    body_sha256: Mapped[str | None] = mapped_column(String(64))
    # deployed | ignored | not_queued | malformed
    outcome: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str] = mapped_column(Text, default="")
    deployment_id: Mapped[int | None] = mapped_column(
        ForeignKey("deployments.id", ondelete="SET NULL")
    )
    replays: Mapped[int] = mapped_column(Integer, default=0)
