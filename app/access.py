"""Who may see or change what: the one gate every view, socket and API handler asks.

``can(user, action, resource)`` answers from one table, :data:`TABLE`: each action
names the lowest role that may take it and whether it acts on a project (or something
inside one) or on the team as a whole. The members page and ``docs/ARCHITECTURE.md``
print the same table (:func:`table_rows`).

A user's role on a resource comes from their membership of the resource's team:

- a membership with ``all_projects`` has its role on the team and on every project;
- a project-limited membership has, on each of its projects, the role it was given
  there (never above the membership's own), no role at all on the team's other
  projects, and, on the team itself, only :data:`LIMITED_TEAM_ACTIONS`.

An object the user may not see (another team's, or a project outside a limited
membership) is a 404, never a 403: its existence is not confirmed. A user who may
see it but not take the action gets 403.

Roles are read once per request (:func:`_grants`, kept on ``flask.g``); a write that
changes them calls :func:`forget`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from flask import abort, g, has_request_context
from flask_login import current_user
from sqlalchemy import select

from app.extensions import db
from app.models import (
    Application,
    Backup,
    BackupDestination,
    BackupPolicy,
    Database,
    DatabaseLink,
    Deployment,
    Domain,
    EnvVar,
    Installation,
    Membership,
    NotificationChannel,
    Project,
    ProjectMembership,
    Restore,
    Role,
    TargetType,
    Team,
    User,
)


class Action(enum.StrEnum):
    """Everything a member may be allowed to do (the rows of :data:`TABLE`)."""

    TEAM_READ = "team.read"
    TEAM_MANAGE = "team.manage"
    TEAM_DELETE = "team.delete"
    MEMBER_READ = "member.read"
    MEMBER_MANAGE = "member.manage"
    AUDIT_READ = "audit.read"
    PROJECT_CREATE = "project.create"
    PROJECT_READ = "project.read"
    PROJECT_UPDATE = "project.update"
    PROJECT_DELETE = "project.delete"
    APP_CREATE = "app.create"
    APP_READ = "app.read"
    APP_UPDATE = "app.update"
    APP_DEPLOY = "app.deploy"
    APP_SECRETS = "app.secrets"
    APP_DELETE = "app.delete"
    DATABASE_READ = "database.read"
    DATABASE_MANAGE = "database.manage"
    DATABASE_ROTATE = "database.rotate"
    DATABASE_DELETE = "database.delete"
    DATABASE_EXPOSE = "database.expose"
    BACKUP_READ = "backup.read"
    BACKUP_MANAGE = "backup.manage"
    BACKUP_RESTORE = "backup.restore"
    NOTIFICATION_READ = "notification.read"
    NOTIFICATION_MANAGE = "notification.manage"
    # Volumes of apps (app.web.volumes).
    VOLUME_MANAGE = "volume.manage"
    VOLUME_PURGE = "volume.purge"


class Scope(enum.StrEnum):
    TEAM = "team"
    PROJECT = "project"


@dataclass(frozen=True)
class Rule:
    role: Role  # the lowest role that may
    scope: Scope
    label: str  # what the members page shows


TABLE: dict[Action, Rule] = {
    Action.TEAM_READ: Rule(Role.viewer, Scope.TEAM, "See the team and switch to it"),
    Action.TEAM_MANAGE: Rule(
        Role.owner, Scope.TEAM, "Rename the team, require two-factor login, set audit retention"
    ),
    Action.TEAM_DELETE: Rule(Role.owner, Scope.TEAM, "Delete the team (when it has no projects)"),
    Action.MEMBER_READ: Rule(Role.viewer, Scope.TEAM, "See the members and their roles"),
    Action.MEMBER_MANAGE: Rule(
        Role.admin, Scope.TEAM, "Invite, change roles and project access, remove members"
    ),
    Action.AUDIT_READ: Rule(Role.admin, Scope.TEAM, "Read and export the audit log"),
    Action.PROJECT_CREATE: Rule(Role.developer, Scope.TEAM, "Create a project"),
    Action.PROJECT_READ: Rule(Role.viewer, Scope.PROJECT, "See a project and its apps"),
    Action.PROJECT_UPDATE: Rule(
        Role.developer, Scope.PROJECT, "Rename a project, add environments"
    ),
    Action.PROJECT_DELETE: Rule(Role.admin, Scope.PROJECT, "Delete a project"),
    Action.APP_CREATE: Rule(Role.developer, Scope.PROJECT, "Create an app in a project"),
    Action.APP_READ: Rule(
        Role.viewer, Scope.PROJECT, "See an app: deployments, logs, metrics, domains"
    ),
    Action.APP_UPDATE: Rule(
        Role.developer, Scope.PROJECT, "Change an app's settings, variables, domains, git"
    ),
    Action.APP_DEPLOY: Rule(Role.developer, Scope.PROJECT, "Deploy, cancel, roll back"),
    Action.APP_SECRETS: Rule(Role.admin, Scope.PROJECT, "Reveal an app's webhook secret"),
    Action.APP_DELETE: Rule(Role.admin, Scope.PROJECT, "Delete an app"),
    Action.DATABASE_READ: Rule(
        Role.viewer, Scope.PROJECT, "See a project's databases: status, connection, logs"
    ),
    Action.DATABASE_MANAGE: Rule(
        Role.developer, Scope.PROJECT, "Create, start, stop, restart, link and unlink databases"
    ),
    Action.DATABASE_ROTATE: Rule(Role.admin, Scope.PROJECT, "Rotate a database's password"),
    Action.DATABASE_DELETE: Rule(Role.admin, Scope.PROJECT, "Delete a database"),
    Action.DATABASE_EXPOSE: Rule(
        Role.admin, Scope.PROJECT, "Open or close a database's public port (TLS)"
    ),
    Action.BACKUP_READ: Rule(Role.viewer, Scope.TEAM, "See backups and restores"),
    Action.BACKUP_MANAGE: Rule(
        Role.admin, Scope.TEAM, "Manage backup destinations and policies, run backups"
    ),
    Action.BACKUP_RESTORE: Rule(Role.admin, Scope.TEAM, "Restore a backup"),
    Action.NOTIFICATION_READ: Rule(Role.viewer, Scope.TEAM, "See notification channels"),
    Action.NOTIFICATION_MANAGE: Rule(Role.admin, Scope.TEAM, "Manage notification channels"),
    # Volumes of apps (app.web.volumes).
    Action.VOLUME_MANAGE: Rule(
        Role.developer, Scope.PROJECT, "Add, switch, detach and re-attach an app's volumes"
    ),
    Action.VOLUME_PURGE: Rule(Role.admin, Scope.PROJECT, "Purge a detached volume's data"),
}

# What a project-limited membership may do on the team itself, at its own role.
LIMITED_TEAM_ACTIONS = frozenset({Action.TEAM_READ, Action.MEMBER_READ})

# The largest id a column can hold (BIGINT); a URL may carry any number of digits, and a
# larger one must be a 404, not a database overflow.
MAX_ID = 2**63 - 1


ROLES = (Role.viewer, Role.developer, Role.admin, Role.owner)


def table_rows() -> list[tuple[str, str, Scope, list[bool]]]:
    """(action, label, scope, [allowed for viewer, developer, admin, owner]) per action."""
    return [
        (action.value, rule.label, rule.scope, [role.allows(rule.role) for role in ROLES])
        for action, rule in TABLE.items()
    ]


# ---- what a user holds ------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """A user's membership of one team, as the gate needs it."""

    membership_id: int
    role: Role
    all_projects: bool
    projects: dict[int, Role]  # project id -> role, for a limited membership

    def project_role(self, project_id: int) -> Role | None:
        if self.all_projects:
            return self.role
        return self.projects.get(project_id)


def grants_of(user_id: int) -> dict[int, Grant]:
    """Team id -> grant, for every team the user belongs to (two queries)."""
    rows = db.session.execute(
        select(Membership.id, Membership.team_id, Membership.role, Membership.all_projects).where(
            Membership.user_id == user_id
        )
    ).all()
    limited = [row.id for row in rows if not row.all_projects]
    per_project: dict[int, dict[int, Role]] = {mid: {} for mid in limited}
    if limited:
        pm = ProjectMembership
        query = select(pm.membership_id, pm.project_id, pm.role)
        for mid, project_id, role in db.session.execute(query.where(pm.membership_id.in_(limited))):
            per_project[mid][project_id] = Role(role)
    return {
        row.team_id: Grant(row.id, Role(row.role), row.all_projects, per_project.get(row.id, {}))
        for row in rows
    }


def _grants(user) -> dict[int, Grant]:
    if not has_request_context():
        return grants_of(user.id)
    cache = g.setdefault("access_grants", {})
    if user.id not in cache:
        cache[user.id] = grants_of(user.id)
    return cache[user.id]


def forget() -> None:
    """Drop this request's cached roles (after a write that changes them)."""
    if has_request_context():
        g.pop("access_grants", None)


def _scope_of(resource) -> tuple[int, int | None]:
    """(team id, project id or None) of anything the gate is asked about."""
    if isinstance(resource, Team):
        return resource.id, None
    if isinstance(resource, Project):
        return resource.team_id, resource.id
    if isinstance(resource, Application):
        return resource.project.team_id, resource.project_id
    if isinstance(resource, Deployment | EnvVar | Domain | DatabaseLink):
        return _scope_of(resource.application)
    if isinstance(resource, Database):
        return resource.project.team_id, resource.project_id
    team_id = getattr(resource, "team_id", None)
    if team_id is None:
        raise TypeError(f"access: no team for {type(resource).__name__}")
    return team_id, None


class Decision(enum.Enum):
    ALLOWED = "allowed"
    FORBIDDEN = "forbidden"  # may see it, may not do this: 403
    HIDDEN = "hidden"  # may not know it exists: 404


def decide(user, action: Action, resource) -> Decision:
    """The gate's full answer; :func:`can` and :func:`authorize` are built on it."""
    if user is None or not getattr(user, "is_authenticated", False):
        return Decision.HIDDEN
    rule = TABLE[Action(action)]
    team_id, project_id = _scope_of(resource)
    grant = _grants(user).get(team_id)
    if grant is None:
        return Decision.HIDDEN
    if project_id is not None:
        role = grant.project_role(project_id)
        if role is None:
            return Decision.HIDDEN
    elif grant.all_projects or action in LIMITED_TEAM_ACTIONS:
        role = grant.role
    else:
        return Decision.FORBIDDEN
    if not role.allows(rule.role):
        return Decision.FORBIDDEN
    return _key_decision(action, team_id, project_id)


def _credential():
    """The API key this request authenticated with (``app.accounts.apikeys.use``)."""
    return g.get("api_credential") if has_request_context() else None


def _key_decision(action: Action, team_id: int, project_id: int | None) -> Decision:
    """What the request's API key, if it carries one, lets through of what the role
    allows: its own team only, its projects only (on the team, reads only, like a
    project-limited membership), its scopes' actions only."""
    key = _credential()
    if key is None:
        return Decision.ALLOWED
    if key.team_id != team_id:
        return Decision.HIDDEN
    if key.project_ids is not None:
        if project_id is not None and project_id not in key.project_ids:
            return Decision.HIDDEN
        if project_id is None and action not in LIMITED_TEAM_ACTIONS:
            return Decision.FORBIDDEN
    return Decision.ALLOWED if action in key.actions else Decision.FORBIDDEN


def can(user, action: Action, resource) -> bool:
    """May ``user`` take ``action`` on ``resource``? The one authorisation question."""
    return decide(user, action, resource) is Decision.ALLOWED


def authorize(action: Action, resource):
    """``resource`` if the current user may take ``action`` on it; else 404 or 403."""
    decision = decide(current_user, action, resource)
    if decision is Decision.HIDDEN:
        abort(404)
    if decision is Decision.FORBIDDEN:
        if has_request_context():
            g.access_refused = Action(action)  # for the API's message (app.web.api.base)
        abort(403)
    return resource


def allows(action: Action, resource) -> bool:
    """:func:`can` for the current user (templates' "show this button?")."""
    return can(current_user, action, resource)


def role_on(user, resource) -> Role | None:
    """The user's role on a team or project (None: none at all)."""
    team_id, project_id = _scope_of(resource)
    grant = _grants(user).get(team_id)
    if grant is None:
        return None
    return grant.role if project_id is None else grant.project_role(project_id)


def visible_project_ids(user, team_id: int) -> set[int] | None:
    """The projects of ``team_id`` the user may see: None means all of them."""
    grant = _grants(user).get(team_id)
    key = _credential()
    if grant is None or (key is not None and key.team_id != team_id):
        return set()
    ids = None if grant.all_projects else set(grant.projects)
    if key is not None and key.project_ids is not None:
        ids = set(key.project_ids) if ids is None else ids & key.project_ids
    return ids


def visible_projects(team: Team) -> list[Project]:
    """The current team's projects the current user may see, by name."""
    query = select(Project).where(Project.team_id == team.id).order_by(Project.name)
    ids = visible_project_ids(current_user, team.id)
    if ids is not None:
        query = query.where(Project.id.in_(ids or [-1]))
    return list(db.session.scalars(query))


# ---- the current team -------------------------------------------------------


def memberships() -> list[Membership]:
    """The current user's memberships (through an API key: of the key's team only)."""
    key = _credential()
    if key is not None:
        return list(
            db.session.scalars(
                select(Membership).where(
                    Membership.user_id == current_user.id, Membership.team_id == key.team_id
                )
            )
        )
    return list(
        db.session.scalars(
            select(Membership).where(Membership.user_id == current_user.id).order_by(Membership.id)
        )
    )


def current_membership() -> Membership:
    """The membership of the team the user works in: ``users.current_team_id`` when the
    user still belongs to it, else their first team. 403 for a user in no team."""
    found = memberships()
    if not found:
        abort(403)
    key = _credential()
    chosen = key.team_id if key is not None else current_user.current_team_id
    for membership in found:
        if membership.team_id == chosen:
            return membership
    return found[0]


def current_team() -> Team:
    return current_membership().team


def team(team_id: int, action: Action = Action.TEAM_READ) -> Team:
    found = db.session.get(Team, team_id) if 0 < team_id <= MAX_ID else None
    if found is None:
        abort(404)
    return authorize(action, found)


def in_current_team(action: Action) -> Team:
    """The current team, if the user may take ``action`` on it (else 403)."""
    return authorize(action, current_team())


# ---- objects by id ----------------------------------------------------------


def _get(model, object_id: int, action: Action):
    if not 0 < object_id <= MAX_ID:
        abort(404)
    found = db.session.get(model, object_id)
    if found is None:
        abort(404)
    return authorize(action, found)


def project(project_id: int, action: Action = Action.PROJECT_READ) -> Project:
    return _get(Project, project_id, action)


def application(app_id: int, action: Action = Action.APP_READ) -> Application:
    return _get(Application, app_id, action)


def deployment(deployment_id: int, action: Action = Action.APP_READ) -> Deployment:
    return _get(Deployment, deployment_id, action)


def env_var(app: Application, var_id: int) -> EnvVar:
    found = db.session.get(EnvVar, var_id) if 0 < var_id <= MAX_ID else None
    if found is None or found.application_id != app.id:
        abort(404)
    return found


def database(database_id: int, action: Action = Action.DATABASE_READ) -> Database:
    """A database of a project the user may see (never its password: that stays sealed)."""
    return _get(Database, database_id, action)


def database_link(app: Application, link_id: int) -> DatabaseLink:
    """One of ``app``'s links (a link of another app, even the same team's, is a 404)."""
    found = db.session.get(DatabaseLink, link_id) if 0 < link_id <= MAX_ID else None
    if found is None or found.application_id != app.id:
        abort(404)
    return found


def backup_destination(destination_id: int, action: Action = Action.BACKUP_READ):
    return _get(BackupDestination, destination_id, action)


def backup_policy(policy_id: int, action: Action = Action.BACKUP_READ):
    """A policy; acting on one that backs up Slipway's own database needs the installation owner."""
    policy = _get(BackupPolicy, policy_id, action)
    if action != Action.BACKUP_READ:
        require_own_database_owner(policy)
    return policy


def backup(backup_id: int, action: Action = Action.BACKUP_READ):
    found = _get(Backup, backup_id, action)
    if action != Action.BACKUP_READ:
        require_own_database_owner(found.policy)
    return found


def restore(restore_id: int, action: Action = Action.BACKUP_READ):
    return _get(Restore, restore_id, action)


def notification_channel(channel_id: int, action: Action = Action.NOTIFICATION_READ):
    return _get(NotificationChannel, channel_id, action)


# ---- the installation -------------------------------------------------------


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


def volume(app: Application, volume_id: int):
    """A volume of ``app`` (the caller authorised the app): another app's is a 404."""
    from app.models.databases import Volume

    found = db.session.get(Volume, volume_id) if 0 < volume_id <= MAX_ID else None
    if found is None or found.application_id != app.id:
        abort(404)
    return found
