"""Teams: create, rename, settings, delete, and which one a user works in.

A user may belong to several teams; ``users.current_team_id`` is the one the top bar
shows and every list (dashboard, backups, notifications, members, audit) is scoped
to. Object pages of another team the user belongs to still open (the gate checks the
object's own team); another team's objects are 404 as before.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select

from app import access, audit
from app.extensions import db
from app.models import BackupPolicy, Membership, Project, Role, Team, User

RETENTION_MIN_DAYS = 30
RETENTION_MAX_DAYS = 3650


class TeamRefused(Exception):
    """The change was refused; the message says why, for the page."""


def teams_of(user: User) -> list[tuple[Team, Membership]]:
    """The user's teams with their membership, by name."""
    rows = db.session.execute(
        select(Team, Membership)
        .join(Membership, Membership.team_id == Team.id)
        .where(Membership.user_id == user.id)
        .order_by(func.lower(Team.name), Team.id)
    ).all()
    return [(team, membership) for team, membership in rows]


def create_team(user: User, name: str) -> Team:
    """A new team with ``user`` as its owner; it becomes their current team."""
    team = Team(name=name)
    db.session.add(team)
    db.session.flush()
    db.session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner.value))
    user.current_team_id = team.id
    audit.record(audit.Action.TEAM_CREATED, team_id=team.id, target=team, name=name)
    db.session.commit()
    access.forget()
    return team


def switch_team(user: User, team: Team) -> None:
    """Work in ``team`` from now on (the caller checked the user belongs to it)."""
    user.current_team_id = team.id
    db.session.commit()


def rename_team(team: Team, name: str) -> None:
    old = team.name
    if name == old:
        return
    team.name = name
    audit.record(audit.Action.TEAM_RENAMED, team_id=team.id, target=team, old=old, new=name)
    db.session.commit()


def update_settings(team: Team, *, require_2fa: bool, audit_retention_days: int) -> None:
    """Two-factor requirement (enforced at each member's next login) and audit retention."""
    if not RETENTION_MIN_DAYS <= audit_retention_days <= RETENTION_MAX_DAYS:
        raise TeamRefused(
            f"Keep audit events between {RETENTION_MIN_DAYS} and {RETENTION_MAX_DAYS} days."
        )
    changes = {}
    if team.require_2fa != require_2fa:
        changes["require_2fa"] = require_2fa
    if team.audit_retention_days != audit_retention_days:
        changes["audit_retention_days"] = audit_retention_days
    if not changes:
        return
    team.require_2fa = require_2fa
    team.audit_retention_days = audit_retention_days
    audit.record(audit.Action.TEAM_SETTINGS_UPDATED, team_id=team.id, target=team, **changes)
    db.session.commit()


def delete_refusal(team: Team, user: User) -> str | None:
    """Why ``team`` cannot be deleted now, or None."""
    projects = db.session.scalar(select(func.count()).where(Project.team_id == team.id))
    if projects:
        return f"The team still has {projects} project(s): delete or move them first."
    policies = db.session.scalar(select(func.count()).where(BackupPolicy.team_id == team.id))
    if policies:
        return f"The team still has {policies} backup policy(ies): delete them first."
    others = db.session.scalar(
        select(func.count()).where(Membership.user_id == user.id, Membership.team_id != team.id)
    )
    if not others:
        return "This is your only team: create another one first."
    return None


def delete_team(team: Team, user: User) -> None:
    """Delete an empty team: its members, invitations, destinations and channels go too.

    Its audit rows stay, without the team (``audit_events.team_id`` is set NULL), until
    the installation's retention deletes them."""
    refusal = delete_refusal(team, user)
    if refusal:
        raise TeamRefused(refusal)
    audit.record(audit.Action.TEAM_DELETED, team_id=None, target=team, name=team.name)
    # The database's ON DELETE CASCADE removes memberships, invitations, destinations
    # and channels in the same statement.
    db.session.execute(delete(Team).where(Team.id == team.id))
    db.session.commit()
    db.session.expire_all()
    access.forget()
