"""Users, teams and who belongs where."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_login import UserMixin
from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Timestamped, UTCDateTime

# The password rules, for every form and command that sets one.
PASSWORD_MIN_LENGTH = 12
PASSWORD_MAX_LENGTH = 200


class Role(enum.StrEnum):
    owner = "owner"
    admin = "admin"
    developer = "developer"
    viewer = "viewer"

    @property
    def rank(self) -> int:
        return {"viewer": 0, "developer": 1, "admin": 2, "owner": 3}[self.value]

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


class User(UserMixin, Timestamped, Base):
    __tablename__ = "users"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    # Bumped by "log out everywhere" and password changes; part of the login id,
    # so every session minted before the bump stops loading.
    session_version: Mapped[int] = mapped_column(Integer, default=1)
    last_login_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Named by the installation's owner (app.accounts.installation): may open the
    # installation-wide pages (server, workers). The owner is one without the flag.
    installation_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())

    memberships: Mapped[list[Membership]] = relationship(back_populates="user")

    def get_id(self) -> str:
        return f"{self.id}:{self.session_version}"

    def set_password(self, password: str) -> None:
        self.password_hash = _hasher.hash(password)

    def check_password(self, password: str) -> bool:
        """Argon2 verify; upgrades the hash in place when the parameters changed."""
        try:
            _hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False
        if _hasher.check_needs_rehash(self.password_hash):
            self.set_password(password)
        return True

    def end_all_sessions(self) -> None:
        """Every session cookie issued before this call stops working."""
        self.session_version += 1


class PasswordReset(Timestamped, Base):
    """A one-time link to set a new password (``app.accounts.resets``).

    Only the SHA-256 of the token is stored; the token itself is in the mail or the
    command's output. ``used_at`` is set when the link is used, and on every other open
    link of the user at the same moment.
    """

    __tablename__ = "password_resets"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    via: Mapped[str] = mapped_column(String(10))  # "email" or "cli"
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


_hasher = PasswordHasher()
_dummy_hash: list[str] = []


def burn_password_check(password: str) -> None:
    """Spend the time of a real verify, so unknown accounts answer like known ones."""
    if not _dummy_hash:
        _dummy_hash.append(_hasher.hash("not a real password"))
    try:
        _hasher.verify(_dummy_hash[0], password)
    except VerificationError:
        pass


def new_installation_id() -> str:
    """A random id for a new installation: 12 hex characters (48 bits)."""
    return secrets.token_hex(6)


class Installation(Timestamped, Base):
    """A single row, written by first-run setup; its fixed key makes setup happen once.

    ``installation_id`` is made with the row. Every container, image, network and
    volume this installation creates carries it as the ``slipway.installation``
    label, so that two installations on one Docker engine never act on each
    other's objects (``app.runtime.installation``).
    """

    __tablename__ = "installation"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    installation_id: Mapped[str] = mapped_column(String(32), default=new_installation_id)


class Team(Timestamped, Base):
    __tablename__ = "teams"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))

    memberships: Mapped[list[Membership]] = relationship(back_populates="team")


class Membership(Timestamped, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("team_id", "user_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default=Role.developer.value)

    team: Mapped[Team] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")

    @property
    def role_enum(self) -> Role:
        return Role(self.role)
