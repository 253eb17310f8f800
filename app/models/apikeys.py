"""API keys: a member's credential for ``/api/v1`` and the ``slipway`` command line."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import Team, User
from app.models.base import Base, Timestamped, UTCDateTime


class ApiKey(Timestamped, Base):
    """A key ``slw_<id>_<secret>`` (``app.accounts.apikeys``) of one member of one team.

    Only the SHA-256 of the secret is stored (the secret is 256 random bits, shown once);
    ``prefix`` is the token's first characters, for people to tell keys apart. ``scopes``
    bound what the key may do, ``project_ids`` (None: every project) where; neither ever
    lifts it above its member's role. A revoked or expired key answers 401.
    """

    __tablename__ = "api_keys"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(32))
    secret_hash: Mapped[str] = mapped_column(String(64))
    scopes: Mapped[list[str]] = mapped_column(JSON, default=list)
    project_ids: Mapped[list[int] | None] = mapped_column(JSON)
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_ip: Mapped[str | None] = mapped_column(String(64))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_reason: Mapped[str | None] = mapped_column(String(200))

    user: Mapped[User] = relationship()
    team: Mapped[Team] = relationship()
