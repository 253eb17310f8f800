"""Projects: create, show, edit, delete."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from sqlalchemy import select

from app import access
from app.databases import lifecycle
from app.extensions import db
from app.forms import ProjectForm
from app.models import Application
from app.projects import catalog
from app.web import reauth

bp = Blueprint("projects", __name__, url_prefix="/projects")


@bp.get("/new")
def new_get():
    access.in_current_team(access.Action.PROJECT_CREATE)
    return render_template("projects/form.html", form=ProjectForm(), project=None)


@bp.post("/new")
def new_post():
    team = access.in_current_team(access.Action.PROJECT_CREATE)
    form = ProjectForm()
    if form.validate() and (error := catalog.project_name_error(team.id, form.name.data)):
        form.name.errors.append(error)
    if form.errors:
        return render_template("projects/form.html", form=form, project=None), 422
    try:
        project = catalog.create_project(team, form.name.data, form.description.data)
    except catalog.NameTaken as exc:  # a concurrent create won the name
        form.name.errors.append(str(exc))
        return render_template("projects/form.html", form=form, project=None), 422
    flash(f"Project {project.name} created.", "success")
    return redirect(url_for("projects.show", project_id=project.id), 303)


@bp.get("/<int:project_id>")
def show(project_id: int):
    project = access.project(project_id)
    apps = list(
        db.session.scalars(
            select(Application)
            .where(Application.project_id == project.id)
            .order_by(Application.name)
        )
    )
    statuses = catalog.latest_statuses([a.id for a in apps])
    return render_template(
        "projects/show.html",
        project=project,
        apps=apps,
        statuses=statuses,
        can_edit=access.allows(access.Action.APP_CREATE, project),
        can_delete=access.allows(access.Action.PROJECT_DELETE, project),
        not_deployed=catalog.NOT_DEPLOYED,
        databases=lifecycle.of_project(project),
        can_create_database=access.allows(access.Action.DATABASE_MANAGE, project),
    )


@bp.get("/<int:project_id>/edit")
def edit_get(project_id: int):
    project = access.project(project_id, access.Action.PROJECT_UPDATE)
    return render_template("projects/form.html", form=ProjectForm(obj=project), project=project)


@bp.post("/<int:project_id>/edit")
def edit_post(project_id: int):
    project = access.project(project_id, access.Action.PROJECT_UPDATE)
    form = ProjectForm()
    if form.validate() and (
        error := catalog.project_name_error(project.team_id, form.name.data, project)
    ):
        form.name.errors.append(error)
    if form.errors:
        return render_template("projects/form.html", form=form, project=project), 422
    try:
        catalog.update_project(project, form.name.data, form.description.data)
    except (catalog.AddressTaken, catalog.NameTaken) as exc:
        form.name.errors.append(str(exc))
        return render_template("projects/form.html", form=form, project=project), 422
    flash("Project saved.", "success")
    return redirect(url_for("projects.show", project_id=project.id), 303)


@bp.get("/<int:project_id>/delete")
def delete_get(project_id: int):
    project = access.project(project_id, access.Action.PROJECT_DELETE)
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    return render_template(
        "confirm.html",
        title=f"Delete project {project.name}?",
        message="Its applications, their settings and their history are deleted too.",
        action=url_for("projects.delete_post", project_id=project.id),
        confirm_label="Delete project",
        back=url_for("projects.show", project_id=project.id),
    )


@bp.post("/<int:project_id>/delete")
def delete_post(project_id: int):
    project = access.project(project_id, access.Action.PROJECT_DELETE)
    back = url_for("projects.delete_get", project_id=project.id)
    if (redirect_ := reauth.required(back)) is not None:
        return redirect_
    name = project.name
    try:
        catalog.delete_project(project)
    except catalog.ProjectNotEmpty as exc:
        flash(str(exc), "error")
        return redirect(url_for("projects.show", project_id=project.id), 303)
    flash(f"Project {name} deleted.", "success")
    return redirect(url_for("dashboard.index"), 303)
