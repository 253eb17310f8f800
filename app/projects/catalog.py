"""Projects and applications: creating, changing, deleting, and listing them with state."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import audit
from app.extensions import db, queue
from app.models import Application, Deployment, Domain, Environment, EnvVar, Project, Team
from app.projects import envvars

DEFAULT_ENVIRONMENT = "production"
NOT_DEPLOYED = "not deployed"


class NameTaken(Exception):
    """Another project of the team took the name between the check and the write."""

    def __init__(self):
        super().__init__("Your team already has a project with this name.")


def create_project(team: Team, name: str, description: str) -> Project:
    """A new project, audited and committed; it always starts with a ``production``
    environment. NameTaken (nothing written) when a concurrent create won the name."""
    project = Project(team_id=team.id, name=name, description=description or "")
    project.environments.append(Environment(name=DEFAULT_ENVIRONMENT))
    db.session.add(project)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        if project_name_taken(team.id, name):
            raise NameTaken() from None
        raise
    audit.record(audit.Action.PROJECT_CREATED, team_id=team.id, target=project, name=name)
    db.session.commit()
    return project


def project_name_taken(team_id: int, name: str, exclude_id: int | None = None) -> bool:
    query = select(Project.id).where(Project.team_id == team_id, Project.name == name)
    if exclude_id is not None:
        query = query.where(Project.id != exclude_id)
    return db.session.scalar(query) is not None


def app_name_taken(project_id: int, name: str, exclude_id: int | None = None) -> bool:
    query = select(Application.id).where(
        Application.project_id == project_id, Application.name == name
    )
    if exclude_id is not None:
        query = query.where(Application.id != exclude_id)
    return db.session.scalar(query) is not None


class AddressTaken(Exception):
    """The default address an app would get is another app's, in this or another team."""

    def __init__(self, address: str):
        super().__init__(
            f"The address {address} is already used by another app on this server: "
            "choose another app name (or project name)."
        )
        self.address = address


def address_of(app_name: str, project_name: str) -> str:
    """The label part of an app's default address; the base domain follows it."""
    return f"{app_name}.{project_name}"


def host_of(address: str) -> str:
    return f"{address}.{current_app.config['BASE_DOMAIN']}"


def address_taken(address: str, exclude_app_id: int | None = None) -> bool:
    """Whether another app, of any team, has this default address (or a domain on it)."""
    query = select(Application.id).where(Application.address == address)
    if exclude_app_id is not None:
        query = query.where(Application.id != exclude_app_id)
    if db.session.scalar(query) is not None:
        return True
    owner = db.session.scalar(select(Domain.application_id).where(Domain.host == host_of(address)))
    return owner is not None and owner != exclude_app_id


def taken_address_for(name: str, project: Project, exclude_app_id: int | None = None) -> str | None:
    """The full host the app would get if it is taken (for the form's message), else None.

    An app keeping its name keeps its address (a duplicate from before migration 0007
    has a distinct one), so only a new name is checked."""
    if exclude_app_id is not None:
        current = db.session.get(Application, exclude_app_id)
        if current is not None and current.name == name and current.address:
            return None
    address = address_of(name, project.name)
    return host_of(address) if address_taken(address, exclude_app_id) else None


def taken_address_on_rename(project: Project, new_name: str) -> str | None:
    """Renaming a project moves its apps' addresses: the first one that is taken, if any."""
    if new_name == project.name:
        return None
    for app in _apps_of(project):
        address = address_of(app.name, new_name)
        if address_taken(address, app.id):
            return host_of(address)
    return None


def app_name_error(project: Project, name: str, exclude_id: int | None = None) -> str | None:
    """Why ``name`` cannot be this app's (taken in the project, or its default address
    taken in the installation), or None. The form and the API ask the same question."""
    if app_name_taken(project.id, name, exclude_id):
        return "This project already has an app with this name."
    if taken := taken_address_for(name, project, exclude_id):
        return str(AddressTaken(taken))
    return None


def project_name_error(team_id: int, name: str, project: Project | None = None) -> str | None:
    """Why ``name`` cannot be this project's (another of the team's, or a rename that
    would move one of its apps onto a taken address), or None."""
    if project_name_taken(team_id, name, exclude_id=project.id if project else None):
        return "Your team already has a project with this name."
    if project is not None and (taken := taken_address_on_rename(project, name)):
        return str(AddressTaken(taken))
    return None


def _apps_of(project: Project) -> list[Application]:
    return list(db.session.scalars(select(Application).where(Application.project_id == project.id)))


def _commit_addresses(apps: list[Application]) -> None:
    """Commit, turning the unique index's refusal (a race the check lost) into AddressTaken."""
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        for app in apps:
            if app.address and address_taken(app.address, app.id):
                raise AddressTaken(host_of(app.address)) from None
        raise


APP_FIELDS = (
    "name",
    "description",
    "environment_id",
    "source_type",
    "git_url",
    "git_branch",
    "build_context",
    "dockerfile_path",
    "image",
    "container_port",
    "replicas",
    "health_check_path",
    "cpu_limit",
    "memory_limit_mb",
    "watch_seconds",
    "auto_deploy",
)


def _apply(app: Application, values: Mapping[str, Any]) -> None:
    """Copy validated values onto ``app``; the fields of the other source are cleared.

    ``values`` holds :data:`APP_FIELDS` plus ``env`` (plain variables, replacing the
    plain ones) and ``secret_env`` (secret variables, set or replaced one by one)."""
    for field in APP_FIELDS:
        setattr(app, field, values[field])
    if app.source_type == "image":
        app.git_url = app.git_branch = None
    else:
        app.image = None
    envvars.replace_plain(app, dict(values.get("env") or {}))
    for key, value in (values.get("secret_env") or {}).items():
        envvars.set_var(app, key, value, secret=True)


def _claim_address(app: Application, project: Project) -> None:
    """Give ``app`` the address its names make; AddressTaken if another app has it."""
    address = address_of(app.name, project.name)
    if address_taken(address, app.id):
        raise AddressTaken(host_of(address))
    app.address = address


def create_app(project: Project, values: Mapping[str, Any]) -> Application:
    """A new application in ``project``, audited and committed.

    Raises AddressTaken (nothing written) when another app, of any team, already
    answers on the default address these names make."""
    app = Application(project_id=project.id)
    _apply(app, values)
    _claim_address(app, project)
    db.session.add(app)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        if address_taken(address_of(values["name"], project.name)):
            raise AddressTaken(host_of(address_of(values["name"], project.name))) from None
        raise
    audit.record(audit.Action.APP_CREATED, team_id=project.team_id, target=app, name=app.name)
    _commit_addresses([app])
    return app


def update_app(app: Application, values: Mapping[str, Any]) -> None:
    """Change an application's settings, audited and committed.

    A new name moves the default address (AddressTaken, nothing written, if that one
    is another app's); an unchanged name keeps the address it has."""
    renamed = values["name"] != app.name
    _apply(app, values)
    if renamed or not app.address:
        try:
            _claim_address(app, app.project)
        except AddressTaken:
            db.session.rollback()
            raise
    audit.record(audit.Action.APP_UPDATED, team_id=app.project.team_id, target=app)
    _commit_addresses([app])


def delete_app(app: Application) -> None:
    """Delete the app's rows, then have the worker remove its containers, route and images.

    The web never touches Docker; the job is keyed by the app id, so a second delete
    request (or a retry) finds the same job rather than queueing another."""
    from app.projects import volumes

    app_id, name, team_id = app.id, app.name, app.project.team_id
    # Its volumes outlive it for the grace period (the rows keep their data's name).
    detached = volumes.detach_all(app)
    audit.record(audit.Action.APP_DELETED, team_id=team_id, target=app, name=name,
                 **({"volumes_detached": detached} if detached else {}))  # fmt: skip
    db.session.delete(app)
    db.session.commit()
    _remove_resources([app_id])


def _remove_resources(app_ids: list[int]) -> None:
    for app_id in app_ids:
        queue("default").enqueue(
            "app.jobs.remove_app_resources", app_id, job_id=f"remove-app-{app_id}"
        )


def update_project(project: Project, name: str, description: str) -> None:
    """Rename or describe a project; a new name moves its apps' default addresses
    (AddressTaken, nothing written, when one of them is another app's; NameTaken when a
    concurrent change took the name)."""
    taken = taken_address_on_rename(project, name)
    if taken:
        raise AddressTaken(taken)
    renamed = name != project.name
    apps = _apps_of(project)  # before the change: a query would flush it outside the try
    project.name, project.description = name, description or ""
    if renamed:
        for app in apps:
            app.address = address_of(app.name, name)
    audit.record(audit.Action.PROJECT_UPDATED, team_id=project.team_id, target=project)
    try:
        _commit_addresses(apps)
    except IntegrityError:  # not an address: the name, taken by a concurrent change
        if renamed and project_name_taken(project.team_id, name):
            raise NameTaken() from None
        raise


class ProjectNotEmpty(Exception):
    """The message says what must go first."""


def delete_project(project: Project) -> None:
    """Delete a project with its apps; each app's containers, route and images go too.

    Its databases must be deleted first (each takes its final backup); its volumes are
    detached, never removed: the rows outlive the project for the grace period."""
    from app.models import Database, DatabaseStatus
    from app.models.databases import Volume, VolumeState
    from app.projects import volumes

    live = list(db.session.scalars(select(Database.name).where(
        Database.project_id == project.id,
        Database.status != DatabaseStatus.deleted.value)))  # fmt: skip
    if live:
        raise ProjectNotEmpty(
            f"Delete the project's databases first ({', '.join(sorted(live))}): each takes "
            "its final backup and keeps its volume for the grace period."
        )
    app_ids = list(db.session.scalars(select(Application.id).where(
        Application.project_id == project.id)))  # fmt: skip
    detached = []
    active = select(Volume).where(
        Volume.project_id == project.id, Volume.state == VolumeState.active.value
    )
    for volume in db.session.scalars(active):
        volumes.detach_volume_row(volume)
        detached.append(volume.id)
    audit.record(
        audit.Action.PROJECT_DELETED, team_id=project.team_id, target=project,
        name=project.name, apps=len(app_ids),
        **({"volumes_detached": detached} if detached else {}),
    )  # fmt: skip
    db.session.delete(project)
    db.session.commit()
    _remove_resources(app_ids)


def set_env_var(app: Application, key: str, value: str, *, secret: bool) -> None:
    """Add or replace one variable (the audit row names the key, never the value)."""
    envvars.set_var(app, key, value, secret=secret)
    audit.record(audit.Action.ENV_SET, team_id=app.project.team_id, target=app, key=key)
    db.session.commit()


def delete_env_var(app: Application, var: EnvVar) -> None:
    audit.record(audit.Action.ENV_DELETED, team_id=app.project.team_id, target=app, key=var.key)
    app.env_vars.remove(var)
    db.session.delete(var)
    db.session.commit()


def latest_statuses(app_ids: list[int]) -> dict[int, str]:
    """The status of each app's newest deployment: one index probe per app."""
    if not app_ids:
        return {}
    rows = db.session.execute(
        select(Application.id, _newest_status()).where(Application.id.in_(app_ids))
    )
    return {app_id: status for app_id, status in rows if status is not None}


def newest_status():
    """The status of the app's newest deployment, as a column of a query on apps."""
    return _newest_status()


def _newest_status():
    return (
        select(Deployment.status)
        .where(Deployment.application_id == Application.id)
        .order_by(Deployment.id.desc())
        .limit(1)
        .scalar_subquery()
    )


@dataclass(frozen=True)
class AppRow:
    id: int
    name: str
    source: str
    status: str
    health: str | None = None  # what serves it now (app/deploys/health.py)


def dashboard_rows(
    team_ids: list[int], project_ids: set[int] | None = None
) -> list[tuple[Project, list[AppRow]]]:
    """Projects with plain rows of their apps and each app's newest status, in two queries.

    The dashboard lists every app of a team; plain tuples keep it cheap at hundreds.
    ``project_ids`` (a project-limited member's) narrows it to those projects.
    """
    query = select(Project).where(Project.team_id.in_(team_ids)).order_by(Project.name)
    if project_ids is not None:
        query = query.where(Project.id.in_(project_ids or [-1]))
    projects = list(db.session.scalars(query))
    rows = db.session.execute(
        select(
            Application.project_id, Application.id, Application.name, Application.source_type,
            Application.image, Application.git_url, Application.git_branch, _newest_status(),
            Application.health,
        )
        .where(Application.project_id.in_([p.id for p in projects]))
        .order_by(Application.name)
    )  # fmt: skip
    by_project: dict[int, list[AppRow]] = {p.id: [] for p in projects}
    for project_id, app_id, name, source_type, image, url, branch, status, health in rows:
        source = image if source_type == "image" else f"{url} @ {branch}"
        row = AppRow(app_id, name, source or "", status or NOT_DEPLOYED, health)
        by_project[project_id].append(row)
    return [(p, by_project[p.id]) for p in projects]


def default_address(app: Application, base_domain: str) -> str:
    """``<app>.<project>.<base domain>``: unique in the installation (``address``)."""
    return f"{app.address or address_of(app.name, app.project.name)}.{base_domain}"


def app_url(app: Application, base_domain: str, http_port: int) -> str:
    """Where a browser reaches the app through Traefik."""
    return address_url(default_address(app, base_domain), http_port)


def address_url(host: str, http_port: int) -> str:
    """The URL of a default address (``default_address``) on Traefik's HTTP port."""
    port = "" if http_port == 80 else f":{http_port}"
    return f"http://{host}{port}/"
