"""Single sign-on: OpenID Connect providers and the identities they vouch for."""

from __future__ import annotations

from sqlalchemy import JSON, Boolean, ForeignKey, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.accounts import Role, Team, User
from app.models.base import Base, Timestamped


class OidcProvider(Timestamped, Base):
    """An OpenID Connect provider the installation's owner configured (``app.accounts.sso``).

    ``client_secret`` is encrypted with ``app.crypto``. ``allowed_domains`` is a
    space-separated list of email domains (empty: none is allowed). A user signing in
    for the first time joins ``team_id`` with ``default_role``, or with the role of the
    first group in ``group_roles`` (``{"group": "role"}``) the ``groups_claim`` names.
    """

    __tablename__ = "oidc_providers"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(40), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    discovery_url: Mapped[str] = mapped_column(String(500))
    client_id: Mapped[str] = mapped_column(String(255))
    client_secret: Mapped[str] = mapped_column(Text)
    allowed_domains: Mapped[str] = mapped_column(Text, default="")
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id", ondelete="SET NULL"))
    default_role: Mapped[str] = mapped_column(String(20), default=Role.viewer.value)
    groups_claim: Mapped[str | None] = mapped_column(String(100))
    group_roles: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    team: Mapped[Team | None] = relationship()


class OidcIdentity(Timestamped, Base):
    """A provider's subject (``sub``) linked to a Slipway user."""

    __tablename__ = "oidc_identities"
    __table_args__ = (UniqueConstraint("provider_id", "subject"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    provider_id: Mapped[int] = mapped_column(
        ForeignKey("oidc_providers.id", ondelete="CASCADE"), index=True
    )
    subject: Mapped[str] = mapped_column(String(255))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)

    user: Mapped[User] = relationship()
