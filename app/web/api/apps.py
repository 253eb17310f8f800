"""``/api/v1/apps``: list (with each app's state), create, read, change the settings,
delete: the app pages' actions, through ``app.projects.catalog``.

The settings are the dashboard app form's; a PATCH changes the fields it sends, and
the result is checked as a whole by the create rules (``AppCreate``), as the form
checks an edit."""

from __future__ import annotations

from flask import current_app
from flask_login import current_user
from sqlalchemy import select

from app import access
from app.access import Action
from app.models import Application, Environment, Project
from app.projects import catalog
from app.web.api import base, conventions, spec
from app.web.api.base import bp
from app.web.api.conventions import iso
from app.web.api.projects import invalid

# The settings a client may send (AppCreate's fields but the environment's name).
SETTINGS = tuple(f for f in catalog.APP_FIELDS if f != "environment_id")
# What a list reads of each app: what present_app shows, as plain rows (no ORM objects,
# no ciphertexts, no health detail), with the project's and environment's names and the
# newest deployment's status in the same query.
LISTED = [
    getattr(Application, name)
    for name in (*catalog.APP_FIELDS, "id", "project_id", "address", "health", "created_at",
                 "updated_at")
]  # fmt: skip


def present_app(app, status: str | None, project: str, environment: str) -> dict:
    """``app``: an Application or a row of its columns; ``status``: the newest
    deployment's (None if none); ``project``/``environment``: their names."""
    config = current_app.config
    address = app.address or catalog.address_of(app.name, project)
    return {
        "id": app.id, "name": app.name, "project_id": app.project_id,
        "project": project, "environment": environment,
        "description": app.description or "", "source_type": app.source_type,
        "git_url": app.git_url, "git_branch": app.git_branch,
        "build_context": app.build_context, "dockerfile_path": app.dockerfile_path,
        "image": app.image, "container_port": app.container_port, "replicas": app.replicas,
        "health_check_path": app.health_check_path, "cpu_limit": app.cpu_limit,
        "memory_limit_mb": app.memory_limit_mb, "watch_seconds": app.watch_seconds,
        "auto_deploy": bool(app.auto_deploy), "status": status, "health": app.health,
        "url": catalog.address_url(f"{address}.{config['BASE_DOMAIN']}", config["HTTP_PORT"]),
        "created_at": iso(app.created_at), "updated_at": iso(app.updated_at),
    }  # fmt: skip


def present_one(app: Application) -> dict:
    status = catalog.latest_statuses([app.id]).get(app.id)
    return present_app(app, status, app.project.name, app.environment.name)


def _values(project: Project, settings: dict) -> dict:
    """Checked settings as ``catalog.create_app``/``update_app`` take them (the form's
    ``ApplicationForm.values()``): the environment's name becomes its id."""
    wanted = settings.get("environment")
    environments = project.environments
    found = environments[0] if wanted is None else next(
        (e for e in environments if e.name == wanted), None
    )  # fmt: skip
    if found is None:
        choices = ", ".join(e.name for e in environments)
        invalid("environment", f"The project has no environment {wanted!r}: choose {choices}.")
    values = {field: settings[field] for field in SETTINGS}
    values["environment_id"] = found.id
    values["env"] = settings.get("env") or {}
    values["secret_env"] = settings.get("secret_env") or {}
    return values


def _checked(settings: dict) -> dict:
    """``settings`` checked by the create rules (422 with the fields that fail)."""
    from pydantic import ValidationError

    try:
        return spec.schemas().AppCreate.model_validate(settings).model_dump()
    except ValidationError as exc:
        base.fail(422, "invalid", "Some fields are not valid.",
                  {"fields": base._field_errors(exc)})  # fmt: skip


def _answer(app: Application, status: int = 200):
    headers = {"Location": f"/api/v1/apps/{app.id}"} if status == 201 else None
    return base.respond(present_one(app), status, etag=True, headers=headers)


@bp.get("/apps")
@spec.operation("listApps", "Apps", "The apps the key can see, with their state",
                Action.TEAM_READ, query="AppListQuery", response="AppPage")  # fmt: skip
def apps_list():
    team = access.in_current_team(Action.TEAM_READ)
    params = base.query()
    statement = (
        select(
            *LISTED, Project.name.label("project_name"), Environment.name.label("env_name"),
            catalog.newest_status().label("status"),
        )
        .join(Project, Application.project_id == Project.id)
        .join(Environment, Application.environment_id == Environment.id)
        .where(Project.team_id == team.id)
    )  # fmt: skip
    visible = access.visible_project_ids(current_user, team.id)
    if visible is not None:
        statement = statement.where(Application.project_id.in_(visible or [-1]))
    if params.project_id is not None:
        statement = statement.where(Application.project_id == params.project_id)
    if params.project is not None:
        statement = statement.where(Project.name == params.project)
    if params.name is not None:
        statement = statement.where(Application.name == params.name)
    rows, next_cursor = conventions.paginate(
        statement, Application.id, params.limit, params.cursor, True, scalars=False
    )
    data = [present_app(row, row.status, row.project_name, row.env_name) for row in rows]
    return base.respond({"data": data, "next_cursor": next_cursor})


@bp.post("/projects/<int:project_id>/apps")
@spec.operation("createApp", "Apps", "Create an app in a project", Action.APP_CREATE,
                body="AppCreate", response="App", status=201, etag=True)  # fmt: skip
def apps_create(project_id: int):
    project = access.project(project_id, Action.APP_CREATE)
    data = base.body()
    values = _values(project, data.model_dump())
    if error := catalog.app_name_error(project, values["name"]):
        invalid("name", error)
    try:
        app = catalog.create_app(project, values)
    except catalog.AddressTaken as exc:  # another team's create won the race
        invalid("name", str(exc))
    return _answer(app, 201)


@bp.get("/apps/<int:app_id>")
@spec.operation("getApp", "Apps", "An app, with its state", Action.APP_READ, response="App",
                etag=True)  # fmt: skip
def apps_get(app_id: int):
    app = access.application(app_id, Action.APP_READ)
    return _answer(app)


@bp.patch("/apps/<int:app_id>")
@spec.operation("updateApp", "Apps", "Change an app's settings (the fields sent)",
                Action.APP_UPDATE, body="AppUpdate", response="App", etag=True)  # fmt: skip
def apps_update(app_id: int):
    app = access.application(app_id, Action.APP_UPDATE)
    data = base.body()
    base.if_match(present_one(app))
    current = {f: getattr(app, f) for f in SETTINGS if getattr(app, f) is not None}
    current["environment"] = app.environment.name
    settings = _checked(current | data.model_dump(include=data.model_fields_set))
    values = _values(app.project, settings)
    if "env" not in data.model_fields_set:  # the plain variables stay as they are
        values["env"] = {v.key: v.value or "" for v in app.env_vars if not v.is_secret}
    if error := catalog.app_name_error(app.project, values["name"], exclude_id=app.id):
        invalid("name", error)
    try:
        catalog.update_app(app, values)
    except catalog.AddressTaken as exc:
        invalid("name", str(exc))
    return _answer(app)


@bp.delete("/apps/<int:app_id>")
@spec.operation("deleteApp", "Apps", "Delete an app: its containers, route and images go too",
                Action.APP_DELETE, status=204, etag=True)  # fmt: skip
def apps_delete(app_id: int):
    app = access.application(app_id, Action.APP_DELETE)
    base.if_match(present_one(app))
    catalog.delete_app(app)
    return base.no_content()
