"""The append-only audit trail."""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigId, Timestamped


class AuditEvent(Timestamped, Base):
    __tablename__ = "audit_events"
    # The audit page pages newest first within a team, filtered by member, action or
    # object (``app.audit.query``): each filter has its index ending in ``id``.
    __table_args__ = (
        Index("ix_audit_events_team_user", "team_id", "user_id", "id"),
        Index("ix_audit_events_team_action", "team_id", "action", "id"),
        Index("ix_audit_events_team_target", "team_id", "target_type", "target_id", "id"),
        Index("ix_audit_events_created_at", "created_at"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    team_id: Mapped[int | None] = mapped_column(
        ForeignKey("teams.id", ondelete="SET NULL"), index=True
    )
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(String(60))
    target_type: Mapped[str | None] = mapped_column(String(40))
    target_id: Mapped[int | None]
    ip: Mapped[str | None] = mapped_column(String(64))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
