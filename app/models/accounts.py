"""Users, teams and who belongs where."""

from __future__ import annotations

import enum
import secrets
from datetime import datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask_login import UserMixin
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
    true,
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
    # The team the top bar shows and every list is scoped to (``app.access``). A plain
    # column, no foreign key: a stale id (team deleted, membership ended) falls back to
    # the user's first team.
    current_team_id: Mapped[int | None] = mapped_column(Integer)
    # Two-factor login (``app.accounts.twofactor``): the TOTP secret, encrypted with
    # ``app.crypto``; set once enrolment is confirmed with a code. ``totp_last_step``
    # is the time step of the last code accepted: a code is good once per step.
    totp_secret: Mapped[str | None] = mapped_column(Text)
    totp_enabled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

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
    # False: only team owners and the installation's owner may sign in with a password;
    # everyone else through single sign-on (``app.accounts.sso``).
    password_login: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class Team(Timestamped, Base):
    __tablename__ = "teams"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    # Members without two-factor login must enrol at their next login.
    require_2fa: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # Audit rows older than this are deleted by the scheduler (``app.audit.apply_retention``).
    audit_retention_days: Mapped[int] = mapped_column(Integer, default=365, server_default="365")

    memberships: Mapped[list[Membership]] = relationship(back_populates="team")


class Membership(Timestamped, Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("team_id", "user_id"), {"sqlite_autoincrement": True})

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(20), default=Role.developer.value)
    # False: the member sees only the projects in ``project_memberships``, each with its
    # own role (never above ``role``), and none of the team-wide pages but the team's
    # name and its members (``app.access``).
    all_projects: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())

    team: Mapped[Team] = relationship(back_populates="memberships")
    user: Mapped[User] = relationship(back_populates="memberships")
    projects: Mapped[list[ProjectMembership]] = relationship(
        back_populates="membership", cascade="all, delete-orphan", passive_deletes=True
    )

    @property
    def role_enum(self) -> Role:
        return Role(self.role)


class ProjectMembership(Timestamped, Base):
    """A project-limited membership's access to one project, with its role there."""

    __tablename__ = "project_memberships"
    __table_args__ = (
        UniqueConstraint("membership_id", "project_id"),
        {"sqlite_autoincrement": True},
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    membership_id: Mapped[int] = mapped_column(
        ForeignKey("memberships.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[int] = mapped_column(
        ForeignKey("projects.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(20), default=Role.viewer.value)

    membership: Mapped[Membership] = relationship(back_populates="projects")


class Invitation(Timestamped, Base):
    """An invitation to a team (``app.accounts.invitations``), by email or by link.

    Only the SHA-256 of the token is stored. ``email`` set: only an account with that
    address may accept. ``projects`` empty with ``all_projects`` false is refused at
    creation; otherwise a list of ``{"project_id", "role"}``.
    """

    __tablename__ = "invitations"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    team_id: Mapped[int] = mapped_column(ForeignKey("teams.id", ondelete="CASCADE"), index=True)
    email: Mapped[str | None] = mapped_column(String(254))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(20))
    all_projects: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    projects: Mapped[list[dict]] = mapped_column(JSON, default=list)
    invited_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    accepted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    team: Mapped[Team] = relationship()


class RecoveryCode(Timestamped, Base):
    """One of a user's ten two-factor recovery codes: its hash, and when it was used."""

    __tablename__ = "recovery_codes"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64))
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
