"""Projects and applications: creating, changing, deleting, and listing them with state."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from app import audit
from app.extensions import db
from app.models import Application, Deployment, Environment, Project, Team
from app.projects import envvars

DEFAULT_ENVIRONMENT = "production"
NOT_DEPLOYED = "not deployed"


def create_project(team: Team, name: str, description: str) -> Project:
    """A project always starts with a ``production`` environment."""
    project = Project(team_id=team.id, name=name, description=description or "")
    project.environments.append(Environment(name=DEFAULT_ENVIRONMENT))
    db.session.add(project)
    db.session.flush()
    audit.record(audit.Action.PROJECT_CREATED, team_id=team.id, target=project, name=name)
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
    "auto_deploy",
)


def apply_app_form(app: Application, form) -> None:
    """Copy validated form data onto ``app``; the fields of the other source are cleared."""
    for field in APP_FIELDS:
        setattr(app, field, getattr(form, field).data)
    if app.source_type == "image":
        app.git_url = app.git_branch = None
    else:
        app.image = None
    envvars.replace_plain(app, envvars.parse_dotenv(form.env_text.data or ""))
    for key, value in envvars.parse_dotenv(form.secret_env_text.data or "").items():
        envvars.set_var(app, key, value, secret=True)


def latest_statuses(app_ids: list[int]) -> dict[int, str]:
    """The status of each app's newest deployment: one index probe per app."""
    if not app_ids:
        return {}
    rows = db.session.execute(
        select(Application.id, _newest_status()).where(Application.id.in_(app_ids))
    )
    return {app_id: status for app_id, status in rows if status is not None}


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


def dashboard_rows(team_ids: list[int]) -> list[tuple[Project, list[AppRow]]]:
    """Projects with plain rows of their apps and each app's newest status, in two queries.

    The dashboard lists every app of a team; plain tuples keep it cheap at hundreds.
    """
    projects = list(
        db.session.scalars(
            select(Project).where(Project.team_id.in_(team_ids)).order_by(Project.name)
        )
    )
    rows = db.session.execute(
        select(
            Application.project_id, Application.id, Application.name, Application.source_type,
            Application.image, Application.git_url, Application.git_branch, _newest_status(),
        )
        .where(Application.project_id.in_([p.id for p in projects]))
        .order_by(Application.name)
    )  # fmt: skip
    by_project: dict[int, list[AppRow]] = {p.id: [] for p in projects}
    for project_id, app_id, name, source_type, image, url, branch, status in rows:
        source = image if source_type == "image" else f"{url} @ {branch}"
        by_project[project_id].append(AppRow(app_id, name, source or "", status or NOT_DEPLOYED))
    return [(p, by_project[p.id]) for p in projects]


def default_address(app: Application, base_domain: str) -> str:
    return f"{app.name}.{app.project.name}.{base_domain}"


def app_url(app: Application, base_domain: str, http_port: int) -> str:
    """Where a browser reaches the app through Traefik."""
    port = "" if http_port == 80 else f":{http_port}"
    return f"http://{default_address(app, base_domain)}{port}/"
