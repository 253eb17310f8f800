"""Projects: create, show, edit, delete."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from sqlalchemy import select

from app import access
from app.extensions import db
from app.forms import ProjectForm
from app.models import Application, Role
from app.projects import catalog

bp = Blueprint("projects", __name__, url_prefix="/projects")


@bp.get("/new")
def new_get():
    access.require(access.current_team().id, Role.developer)
    return render_template("projects/form.html", form=ProjectForm(), project=None)


@bp.post("/new")
def new_post():
    team = access.current_team()
    access.require(team.id, Role.developer)
    form = ProjectForm()
    if form.validate() and catalog.project_name_taken(team.id, form.name.data):
        form.name.errors.append("Your team already has a project with this name.")
    if form.errors:
        return render_template("projects/form.html", form=form, project=None), 422
    project = catalog.create_project(team, form.name.data, form.description.data)
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
        can_edit=access.can(project.team_id, Role.developer),
        not_deployed=catalog.NOT_DEPLOYED,
    )


@bp.get("/<int:project_id>/edit")
def edit_get(project_id: int):
    project = access.project(project_id, Role.developer)
    return render_template("projects/form.html", form=ProjectForm(obj=project), project=project)


@bp.post("/<int:project_id>/edit")
def edit_post(project_id: int):
    project = access.project(project_id, Role.developer)
    form = ProjectForm()
    ok = form.validate()
    if ok and catalog.project_name_taken(project.team_id, form.name.data, exclude_id=project.id):
        form.name.errors.append("Your team already has a project with this name.")
    elif ok and (taken := catalog.taken_address_on_rename(project, form.name.data)):
        form.name.errors.append(str(catalog.AddressTaken(taken)))
    if form.errors:
        return render_template("projects/form.html", form=form, project=project), 422
    try:
        catalog.update_project(project, form.name.data, form.description.data)
    except catalog.AddressTaken as exc:
        form.name.errors.append(str(exc))
        return render_template("projects/form.html", form=form, project=project), 422
    flash("Project saved.", "success")
    return redirect(url_for("projects.show", project_id=project.id), 303)


@bp.get("/<int:project_id>/delete")
def delete_get(project_id: int):
    project = access.project(project_id, Role.admin)
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
    project = access.project(project_id, Role.admin)
    name = project.name
    catalog.delete_project(project)
    flash(f"Project {name} deleted.", "success")
    return redirect(url_for("dashboard.index"), 303)
