"""Applications: create, show, edit, delete, and their environment variables."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from app import access, outbound
from app.databases import engines, lifecycle
from app.databases import links as databases_links
from app.deploys import control, health
from app.extensions import db
from app.forms import ApplicationForm, EnvVarForm, LinkDatabaseForm
from app.models import Application, Deployment
from app.projects import catalog, envvars
from app.proxy import domains
from app.web import reauth
from app.web.htmx import is_htmx

bp = Blueprint("apps", __name__)
RECENT_DEPLOYMENTS = 20  # on the app page; the rest are on its deployments list


def _form(project, app=None, **kwargs) -> ApplicationForm:
    form = ApplicationForm(allowed_git_hosts=outbound.allowed_hosts(), **kwargs)
    form.environment_id.choices = [(e.id, e.name) for e in project.environments]
    return form


def _render_form(form, project, app=None, status=200):
    if form.secret_env_text.data:
        # A re-rendered form never carries secret values back to the browser.
        form.secret_env_text.data = ""
        if status == 422:
            form.secret_env_text.errors = [
                *form.secret_env_text.errors,
                "Secret values are not sent back to the browser: enter them again.",
            ]
    return render_template("apps/form.html", form=form, project=project, app=app), status


def _name_error(form, project, exclude_id=None) -> None:
    if form.name.errors:
        return
    if error := catalog.app_name_error(project, form.name.data, exclude_id):
        form.name.errors = [*form.name.errors, error]


@bp.get("/projects/<int:project_id>/apps/new")
def new_get(project_id: int):
    project = access.project(project_id, access.Action.APP_CREATE)
    return _render_form(_form(project), project)


@bp.post("/projects/<int:project_id>/apps/new")
def new_post(project_id: int):
    project = access.project(project_id, access.Action.APP_CREATE)
    form = _form(project)
    ok = form.validate()
    _name_error(form, project)
    if not ok or form.name.errors:
        return _render_form(form, project, status=422)
    try:
        app = catalog.create_app(project, form.values())
    except catalog.AddressTaken as exc:  # another team's create won the race
        form.name.errors = [*form.name.errors, str(exc)]
        return _render_form(form, project, status=422)
    flash(f"Application {app.name} created.", "success")
    return redirect(url_for("apps.show", app_id=app.id), 303)


@bp.post("/projects/<int:project_id>/apps/validate/<field>")
def validate_field(project_id: int, field: str):
    """Inline validation (htmx): the field's error message, or nothing."""
    project = access.project(project_id, access.Action.APP_CREATE)
    exclude = request.args.get("app_id", type=int)
    form = _form(project)
    form.validate()
    if field == "name":
        _name_error(form, project, exclude)
    target = getattr(form, field, None)
    if target is None or field in ("csrf_token",):
        return "", 404
    return render_template("_field_errors.html", field=target)


def _recent_deployments(app: Application) -> list[Deployment]:
    return list(
        db.session.scalars(
            select(Deployment)
            .where(Deployment.application_id == app.id)
            .order_by(Deployment.id.desc())
            .limit(RECENT_DEPLOYMENTS)
        )
    )


def link_form(app: Application, **kwargs) -> LinkDatabaseForm:
    """The Link database form: the project's live databases to choose from."""
    form = LinkDatabaseForm(**kwargs)
    form.database_id.choices = [
        (d.id, f"{d.name} ({engines.spec(d.engine).label})")
        for d in lifecycle.of_project(app.project)
        if d.is_live
    ]
    return form


def show_page(app: Application, env_form: EnvVarForm, status: int = 200, link=None):
    deployments = _recent_deployments(app)
    serving = control.serving(app.id)
    page = render_template(
        "apps/show.html",
        app=app,
        deployments=deployments,
        address=catalog.app_url(
            app, current_app.config["BASE_DOMAIN"], current_app.config["HTTP_PORT"]
        ),
        status=deployments[0].status if deployments else catalog.NOT_DEPLOYED,
        can_edit=access.allows(access.Action.APP_UPDATE, app),
        can_delete=access.allows(access.Action.APP_DELETE, app),
        health=health.view(app),
        env_form=env_form,
        display_value=envvars.display_value,
        serving=serving,
        not_applied=control.not_applied(app, serving),
        domain_views=domains.views(app),
        link_form=link or link_form(app),
        links=databases_links.links_of(app),
        linked=databases_links.shown(app),
        own_keys={var.key for var in app.env_vars},
    )
    return page, status


@bp.get("/apps/<int:app_id>")
def show(app_id: int):
    app = access.application(app_id)
    if is_htmx():  # the recent deployments alone: live.js fetches them again
        return render_template(
            "deployments/_table.html", app=app, deployments=_recent_deployments(app)
        )
    return show_page(app, EnvVarForm())


@bp.get("/apps/<int:app_id>/health")
def health_get(app_id: int):
    """Why the app is not fully serving: the app page's panel (live.js fetches it);
    the whole app page when opened directly."""
    app = access.application(app_id)
    if not is_htmx():
        return show_page(app, EnvVarForm())
    return render_template("apps/_health.html", app=app, health=health.view(app))


@bp.get("/apps/<int:app_id>/edit")
def edit_get(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = _form(app.project, obj=app, env_text=envvars.plain_as_text(app))
    return _render_form(form, app.project, app)


@bp.post("/apps/<int:app_id>/edit")
def edit_post(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = _form(app.project)
    ok = form.validate()
    _name_error(form, app.project, exclude_id=app.id)
    if not ok or form.name.errors:
        return _render_form(form, app.project, app, status=422)
    try:
        catalog.update_app(app, form.values())
    except catalog.AddressTaken as exc:
        form.name.errors = [*form.name.errors, str(exc)]
        return _render_form(form, app.project, app, status=422)
    flash("Application saved.", "success")
    return redirect(url_for("apps.show", app_id=app.id), 303)


@bp.get("/apps/<int:app_id>/delete")
def delete_get(app_id: int):
    app = access.application(app_id, access.Action.APP_DELETE)
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    return render_template(
        "confirm.html",
        title=f"Delete application {app.name}?",
        message=(
            "Its containers are stopped and removed, its route and images are deleted, "
            "and so are its settings, environment variables and deployment history."
        ),
        action=url_for("apps.delete_post", app_id=app.id),
        confirm_label="Delete application",
        back=url_for("apps.show", app_id=app.id),
    )


@bp.post("/apps/<int:app_id>/delete")
def delete_post(app_id: int):
    app = access.application(app_id, access.Action.APP_DELETE)
    if (redirect_ := reauth.required(url_for("apps.delete_get", app_id=app.id))) is not None:
        return redirect_
    project_id, name = app.project_id, app.name
    catalog.delete_app(app)
    flash(f"Application {name} deleted.", "success")
    return redirect(url_for("projects.show", project_id=project_id), 303)


def _env_section(app: Application, form: EnvVarForm, status: int = 200):
    """The env list alone for htmx; the whole page (422) or a redirect without it."""
    if form.is_secret.data:
        form.value.data = ""  # never echo a secret value
    if is_htmx():
        page = render_template(
            "apps/_env_vars.html",
            app=app,
            env_form=form,
            can_edit=True,
            display_value=envvars.display_value,
        )
        return page, status
    if status == 422:
        return show_page(app, form, 422)
    return redirect(url_for("apps.show", app_id=app.id, _anchor="env"), 303)


@bp.post("/apps/<int:app_id>/env")
def env_add(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = EnvVarForm()
    if not form.validate():
        return _env_section(app, form, 422)
    catalog.set_env_var(app, form.key.data, form.value.data or "", secret=form.is_secret.data)
    return _env_section(app, EnvVarForm(formdata=None))


@bp.post("/apps/<int:app_id>/env/<int:var_id>/delete")
def env_delete(app_id: int, var_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    var = access.env_var(app, var_id)
    catalog.delete_env_var(app, var)
    return _env_section(app, EnvVarForm(formdata=None))
