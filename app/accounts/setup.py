"""First-run setup: the installation's owner, its first team, the installation row."""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError

from app import audit
from app.extensions import db
from app.models import Installation, Membership, Role, Team, User


class AlreadySetUp(Exception):
    """Another setup finished first: this installation has its owner."""


def complete_setup(*, email: str, name: str, password: str, team_name: str) -> User:
    """Create the owner, the first team and the installation row in one transaction.

    The installation row's fixed primary key makes a second, racing setup fail on
    insert; that one raises :class:`AlreadySetUp` and writes nothing."""
    user = User(email=email, name=name)
    user.set_password(password)
    team = Team(name=team_name)
    try:
        db.session.add_all([user, team])
        db.session.flush()
        db.session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner.value))
        db.session.add(Installation(id=1, owner_id=user.id))
        audit.record(audit.Action.SETUP_COMPLETED, team_id=team.id, user_id=user.id, target=user)
        db.session.commit()
    except IntegrityError as exc:
        db.session.rollback()
        raise AlreadySetUp from exc
    return user
