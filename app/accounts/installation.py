"""The installation's admins: users its owner names to open the installation-wide pages.

The owner (``installation.owner_id``) is always one and cannot be un-named; everyone
else is one only while ``users.installation_admin`` is set. Being a team's admin or
owner has nothing to do with it (``app.access.is_installation_admin``).
"""

from __future__ import annotations

from sqlalchemy import select

from app import audit
from app.extensions import db
from app.models import Installation, User


class NamingRefused(ValueError):
    """The change cannot be made (unknown user, or the owner); the message says why."""


def owner_id() -> int | None:
    return db.session.scalar(select(Installation.owner_id).where(Installation.id == 1))


def users() -> list[User]:
    """Every account of the installation, by email: the list the owner names admins from."""
    return list(db.session.scalars(select(User).order_by(User.email)))


def set_admin(user_id: int, named: bool) -> User:
    """Name ``user_id`` an installation admin (``named``) or take the naming back.

    Audited (``installation.admin_named`` / ``installation.admin_removed``, no team:
    the role is installation-wide) and committed. Takes effect on the user's next
    request, in every session already open, because access reads the flag each time.
    Raises :class:`NamingRefused` for an unknown user and for the owner, who is always
    an installation admin. Naming someone already named (or the reverse) changes
    nothing and records nothing.
    """
    user = db.session.get(User, user_id)
    if user is None:
        raise NamingRefused("There is no such user.")
    if user.id == owner_id():
        raise NamingRefused("The installation's owner is always an installation admin.")
    if user.installation_admin == named:
        return user
    user.installation_admin = named
    action = (
        audit.Action.INSTALLATION_ADMIN_NAMED if named else audit.Action.INSTALLATION_ADMIN_REMOVED
    )
    audit.record(action, target=user, email=user.email)
    db.session.commit()
    return user
