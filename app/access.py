"""Who may see or change what. Every object lookup from a request goes through here.

An object of a team the user does not belong to is a 404, never a 403: its
existence is not confirmed. A member whose role is too low for an action gets 403.
"""

from __future__ import annotations

from flask import abort
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Application,
    Backup,
    BackupDestination,
    BackupPolicy,
    Deployment,
    EnvVar,
    Installation,
    Membership,
    NotificationChannel,
    Project,
    Restore,
    Role,
    TargetType,
    Team,
    User,
)


def memberships() -> list[Membership]:
    return list(
        db.session.scalars(
            select(Membership).where(Membership.user_id == current_user.id).order_by(Membership.id)
        )
    )


def current_membership() -> Membership:
    """The team the user works in: their first membership (team switching comes later)."""
    found = memberships()
    if not found:
        abort(403)
    return found[0]


def is_installation_admin(user_id: int | None = None) -> bool:
    """Installation-wide pages (server figures, workers, job retry) show every team's jobs,
    errors and host figures: only the installation's owner and the users the owner named
    (``users.installation_admin``) may open them. A team's admin or owner is not one.

    Read from the database on every call, never from the session: a naming taken back
    holds at once, for sessions already open too.
    """
    user_id = current_user.id if user_id is None else user_id
    if is_installation_owner(user_id):
        return True
    return bool(db.session.scalar(select(User.installation_admin).where(User.id == user_id)))


def require_installation_admin() -> None:
    """403 unless the user is the installation's owner or an admin the owner named."""
    if not is_installation_admin():
        abort(403)


def require_installation_owner() -> None:
    """403 unless the user is the installation's owner (naming installation admins)."""
    if not is_installation_owner(current_user.id):
        abort(403)


def current_team() -> Team:
    return current_membership().team


def role_in(team_id: int) -> Role | None:
    role = db.session.scalar(
        select(Membership.role).where(
            Membership.user_id == current_user.id, Membership.team_id == team_id
        )
    )
    return Role(role) if role else None


def require(team_id: int, needed: Role) -> Role:
    """404 outside the team, 403 inside it without the role."""
    role = role_in(team_id)
    if role is None:
        abort(404)
    if not role.allows(needed):
        abort(403)
    return role


def can(team_id: int, needed: Role) -> bool:
    role = role_in(team_id)
    return role is not None and role.allows(needed)


def project(project_id: int, needed: Role = Role.viewer) -> Project:
    found = db.session.get(Project, project_id)
    if found is None:
        abort(404)
    require(found.team_id, needed)
    return found


def application(app_id: int, needed: Role = Role.viewer) -> Application:
    found = db.session.get(Application, app_id)
    if found is None:
        abort(404)
    require(found.project.team_id, needed)
    return found


def env_var(app: Application, var_id: int) -> EnvVar:
    found = db.session.get(EnvVar, var_id)
    if found is None or found.application_id != app.id:
        abort(404)
    return found


def deployment(deployment_id: int, needed: Role = Role.viewer) -> Deployment:
    found = db.session.get(Deployment, deployment_id)
    if found is None:
        abort(404)
    require(found.application.project.team_id, needed)
    return found


# ---- backups and notifications ----------------------------------------------


def _team_object(model, object_id: int, needed: Role):
    found = db.session.get(model, object_id)
    if found is None:
        abort(404)
    require(found.team_id, needed)
    return found


def backup_destination(destination_id: int, needed: Role = Role.viewer):
    return _team_object(BackupDestination, destination_id, needed)


def backup_policy(policy_id: int, needed: Role = Role.viewer):
    """A policy; acting on one that backs up Slipway's own database needs the installation owner."""
    policy = _team_object(BackupPolicy, policy_id, needed)
    if needed != Role.viewer:
        require_own_database_owner(policy)
    return policy


def backup(backup_id: int, needed: Role = Role.viewer):
    found = _team_object(Backup, backup_id, needed)
    if needed != Role.viewer:
        require_own_database_owner(found.policy)
    return found


def restore(restore_id: int, needed: Role = Role.viewer):
    return _team_object(Restore, restore_id, needed)


def notification_channel(channel_id: int, needed: Role = Role.viewer):
    return _team_object(NotificationChannel, channel_id, needed)


def is_installation_owner(user_id: int) -> bool:
    """Slipway's own database holds every team's data: only the installation owner backs it up."""
    owner = db.session.scalar(select(Installation.owner_id).where(Installation.id == 1))
    return owner is not None and owner == user_id


def require_own_database_owner(policy) -> None:
    """Slipway's own database holds every team's data: only the installation owner acts on it."""
    if policy.target_type == TargetType.slipway.value and not is_installation_owner(
        current_user.id
    ):
        abort(403)
