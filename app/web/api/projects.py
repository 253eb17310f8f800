"""``/api/v1/projects``: list, create, read, rename or describe, delete (the project
pages' actions, through ``app.projects.catalog``)."""

from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app import access
from app.access import Action
from app.models import Project
from app.projects import catalog
from app.web.api import base, spec
from app.web.api.base import bp
from app.web.api.conventions import iso


def present_project(project: Project) -> dict:
    return {
        "id": project.id, "name": project.name, "description": project.description or "",
        "environments": [e.name for e in project.environments],
        "created_at": iso(project.created_at),
    }  # fmt: skip


def invalid(field: str, message: str):
    base.fail(422, "invalid", message, {"fields": {field: message}})


@bp.get("/projects")
@spec.operation("listProjects", "Projects", "The projects the key can see", Action.TEAM_READ,
                query="ProjectListQuery", response="ProjectPage")  # fmt: skip
def projects_list():
    team = access.in_current_team(Action.TEAM_READ)
    params = base.query()
    statement = select(Project).where(Project.team_id == team.id)
    statement = statement.options(selectinload(Project.environments))
    visible = access.visible_project_ids(current_user, team.id)
    if visible is not None:
        statement = statement.where(Project.id.in_(visible or [-1]))
    if params.name is not None:
        statement = statement.where(Project.name == params.name)
    return base.page(statement, Project.id, present_project, params)


@bp.post("/projects")
@spec.operation("createProject", "Projects", "Create a project", Action.PROJECT_CREATE,
                body="ProjectCreate", response="Project", status=201)  # fmt: skip
def projects_create():
    team = access.in_current_team(Action.PROJECT_CREATE)
    data = base.body()
    if error := catalog.project_name_error(team.id, data.name):
        invalid("name", error)
    try:
        project = catalog.create_project(team, data.name, data.description)
    except catalog.NameTaken as exc:  # a concurrent create won the name
        invalid("name", str(exc))
    return base.respond(present_project(project), 201, etag=True,
                        headers={"Location": f"/api/v1/projects/{project.id}"})  # fmt: skip


@bp.get("/projects/<int:project_id>")
@spec.operation("getProject", "Projects", "A project", Action.PROJECT_READ, response="Project",
                etag=True)  # fmt: skip
def projects_get(project_id: int):
    project = access.project(project_id, Action.PROJECT_READ)
    return base.respond(present_project(project), etag=True)


@bp.patch("/projects/<int:project_id>")
@spec.operation("updateProject", "Projects", "Rename or describe a project", Action.PROJECT_UPDATE,
                body="ProjectUpdate", response="Project", etag=True)  # fmt: skip
def projects_update(project_id: int):
    project = access.project(project_id, Action.PROJECT_UPDATE)
    data = base.body()
    base.if_match(present_project(project))
    sent = data.model_fields_set
    name = data.name if "name" in sent else project.name
    description = data.description if "description" in sent else project.description
    if error := catalog.project_name_error(project.team_id, name, project):
        invalid("name", error)
    try:
        catalog.update_project(project, name, description)
    except (catalog.AddressTaken, catalog.NameTaken) as exc:
        invalid("name", str(exc))
    return base.respond(present_project(project), etag=True)


@bp.delete("/projects/<int:project_id>")
@spec.operation("deleteProject", "Projects", "Delete a project with its apps",
                Action.PROJECT_DELETE, status=204, etag=True)  # fmt: skip
def projects_delete(project_id: int):
    project = access.project(project_id, Action.PROJECT_DELETE)
    base.if_match(present_project(project))
    try:
        catalog.delete_project(project)
    except catalog.ProjectNotEmpty as exc:
        base.fail(409, "not_empty", str(exc))
    return base.no_content()
