"""Databases: create one in a project, show it (status, connection, linked apps, logs,
metrics), start/stop/restart, rotate its password, delete it; link one to an app.

The password is never on a page: the connection block and the linked variables show it
masked, and nothing here decrypts it.
"""

from __future__ import annotations

import psutil
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import current_user

from app import access, names
from app.databases import engines, lifecycle, links, public
from app.forms import DatabaseForm, EnvVarForm, PublicPortForm
from app.live import tails
from app.models import Application, Database, DatabaseStatus
from app.monitoring import metrics
from app.runtime import containers
from app.runtime import databases as runtime_databases
from app.web import apps as app_pages
from app.web import reauth
from app.web.htmx import error_json, is_htmx

bp = Blueprint("databases", __name__)
# The status partial polls while the worker is still at it; other states are final here.
BUSY = (DatabaseStatus.creating.value, DatabaseStatus.deleting.value)
LOG_LINES = 200
DOWNLOAD_LINES = 5000


def _form_page(form: DatabaseForm, project, status: int = 200):
    return render_template("databases/form.html", form=form, project=project), status


@bp.get("/projects/<int:project_id>/databases/new")
def new_get(project_id: int):
    project = access.project(project_id, access.Action.DATABASE_MANAGE)
    return _form_page(DatabaseForm(), project)


@bp.post("/projects/<int:project_id>/databases/new")
def new_post(project_id: int):
    project = access.project(project_id, access.Action.DATABASE_MANAGE)
    form = DatabaseForm()
    if not form.validate():
        return _form_page(form, project, 422)
    try:
        database = lifecycle.create(
            project, name=form.name.data, engine=form.engine.data,
            memory_limit_mb=form.memory_limit_mb.data, cpu_limit=form.cpu_limit.data,
            by=current_user,
        )  # fmt: skip
    except lifecycle.DatabaseError as exc:
        field = getattr(form, exc.field or "", None) or form.name
        field.errors = [*field.errors, str(exc)]
        return _form_page(form, project, 422)
    flash(f"Database {database.name} is being created.", "success")
    return redirect(url_for("databases.show", database_id=database.id), 303)


def _page(template: str, database: Database, **values):
    return render_template(
        template, database=database, busy=database.status in BUSY,
        spec=engines.spec(database.engine),
        can_manage=access.allows(access.Action.DATABASE_MANAGE, database),
        can_rotate=access.allows(access.Action.DATABASE_ROTATE, database),
        can_delete=access.allows(access.Action.DATABASE_DELETE, database), **values,
    )  # fmt: skip


def _public_host() -> str:
    """The name clients outside reach this server by: the public URL's host, else the
    host this page was asked for."""
    from urllib.parse import urlsplit

    host = urlsplit(current_app.config.get("PUBLIC_URL") or "").hostname
    return host or (urlsplit(f"//{request.host}").hostname or "localhost")


def public_form(database: Database) -> PublicPortForm:
    form = PublicPortForm()
    form.public_port.choices = [(port, str(port)) for port in public.free_ports(database)]
    return form


def _show_page(database: Database, status: int = 200, form: PublicPortForm | None = None):
    connection = lifecycle.connection(database)
    lines = []
    if database.public_port:
        lines = public.client_lines(database, _public_host(), connection.get("user"),
                                    connection.get("database"))  # fmt: skip
    return _page(
        "databases/show.html", database, connection=connection,
        linked_apps=links.linked_apps(database), port_form=form or public_form(database),
        can_expose=access.allows(access.Action.DATABASE_EXPOSE, database),
        public_ports=public.describe(public.ports()), public_lines=lines,
    ), status  # fmt: skip


@bp.get("/databases/<int:database_id>")
def show(database_id: int):
    database = access.database(database_id)
    if is_htmx():
        return _page("databases/_status.html", database)
    return _show_page(database)


@bp.post("/databases/<int:database_id>/public")
def public_post(database_id: int):
    """Open the public port chosen in the form, or close it (``close`` sent)."""
    database = access.database(database_id, access.Action.DATABASE_EXPOSE)
    closing = "close" in request.form
    if not closing and (redirect_ := reauth.required()) is not None:
        return redirect_
    form = public_form(database)
    if not closing and not form.validate():
        return _show_page(database, 422, form)
    try:
        problem = lifecycle.set_public_port(
            database, None if closing else form.public_port.data, by=current_user
        )
    except lifecycle.DatabaseError as exc:
        form.public_port.errors = [*form.public_port.errors, str(exc)]
        return _show_page(database, 422, form)
    if problem:
        flash(problem, "error")
    elif closing:
        flash(f"The public port of {database.name} is closed.", "success")
    elif database.status == "running":
        flash(f"{database.name} is reachable on port {database.public_port}, over TLS.",
              "success")  # fmt: skip
    else:
        flash(f"{database.name} will be reachable on port {database.public_port}, over TLS, "
              "once it runs.", "success")  # fmt: skip
    return redirect(url_for("databases.show", database_id=database.id, _anchor="public"), 303)


def _container(database: Database) -> str | None:
    return database.container_id or runtime_databases.container_of(database.id)


@bp.get("/databases/<int:database_id>/logs")
def logs(database_id: int):
    """The last lines; the page then follows the container live (``live.database_log_socket``)."""
    database = access.database(database_id)
    lines, problem = [], None
    try:
        lines = tails.container_lines(_container(database), database.name, LOG_LINES)
    except containers.ContainerError as exc:
        problem = f"The logs could not be read: {exc}"
    return _page("databases/logs.html", database, lines=lines, problem=problem)


@bp.get("/databases/<int:database_id>/logs/download")
def logs_download(database_id: int):
    database = access.database(database_id)
    try:
        container_id = _container(database)
        lines = runtime_databases.logs(container_id, DOWNLOAD_LINES) if container_id else []
        text = "\n".join(lines)
    except containers.ContainerError as exc:
        text = f"The logs could not be read: {exc}"
    return Response(
        text + "\n" if text else "", mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{database.name}-logs.txt"'},
    )  # fmt: skip


@bp.get("/databases/<int:database_id>/metrics")
def metrics_page(database_id: int):
    """The charts of its samples (hour, day, week), as an app's, and the engine's figures
    of this moment."""
    database = access.database(database_id)
    name = request.args.get("range", "hour")
    if name not in metrics.RANGES:
        abort(400, f"Unknown range {name[:20]!r}: choose hour, day or week.")
    figures, problem = None, None
    try:
        container_id = _container(database)
        if container_id and database.status == DatabaseStatus.running.value:
            doc = containers.raw_stats([container_id]).get(container_id)
            host_memory = psutil.virtual_memory().total  # a limit this big is no limit
            figures = metrics.container_figures(doc, host_memory) if doc else None
    except containers.ContainerError as exc:
        problem = f"The figures could not be read: {exc}"
    chart = metrics.series(None, name, database_id=database.id)
    return _page(
        "databases/metrics.html", database, figures=figures, problem=problem, range_name=name,
        chart=chart, summary=metrics.summary(chart), rows=metrics.table_rows(chart),
    )  # fmt: skip


@bp.get("/databases/<int:database_id>/metrics.json")
def metrics_series(database_id: int):
    database = access.database(database_id)
    name = request.args.get("range", "hour")
    if name not in metrics.RANGES:
        message = "Unknown range: choose hour, day or week."
        return error_json(400, "bad_range", message, {"range": ["hour", "day", "week"]}), 400
    return jsonify(metrics.series(None, name, database_id=database.id))


def _act(database_id: int, action: access.Action, run, done: str):
    database = access.database(database_id, action)
    try:
        run(database, by=current_user)
    except lifecycle.DatabaseError as exc:  # not now (a running one started): nothing changed
        flash(str(exc), "error")
        return redirect(url_for("databases.show", database_id=database.id), 303)
    flash(f"{done} database {database.name}.", "success")
    return redirect(url_for("databases.show", database_id=database.id), 303)


@bp.post("/databases/<int:database_id>/start")
def start_post(database_id: int):
    return _act(database_id, access.Action.DATABASE_MANAGE, lifecycle.start, "Starting")


@bp.post("/databases/<int:database_id>/stop")
def stop_post(database_id: int):
    return _act(database_id, access.Action.DATABASE_MANAGE, lifecycle.stop, "Stopping")


@bp.post("/databases/<int:database_id>/restart")
def restart_post(database_id: int):
    return _act(database_id, access.Action.DATABASE_MANAGE, lifecycle.restart, "Restarting")


@bp.post("/databases/<int:database_id>/rotate")
def rotate_post(database_id: int):
    return _act(database_id, access.Action.DATABASE_ROTATE, lifecycle.rotate_password,
                "Rotating the password of")  # fmt: skip


@bp.get("/databases/<int:database_id>/delete")
def delete_get(database_id: int):
    database = access.database(database_id, access.Action.DATABASE_DELETE)
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    days = current_app.config["VOLUME_GRACE_DAYS"]
    return render_template(
        "confirm.html",
        title=f"Delete database {database.name}?",
        message=(
            f"Its container is stopped and removed, and the apps linked to it lose its "
            f"variables at their next deploy. Its volume (the data) is kept for {days} days, "
            "then removed for good."
        ),
        action=url_for("databases.delete_post", database_id=database.id),
        confirm_label="Delete database",
        back=url_for("databases.show", database_id=database.id),
        checkboxes=[("final_backup", "Take a final backup first", True)],
    )


@bp.post("/databases/<int:database_id>/delete")
def delete_post(database_id: int):
    database = access.database(database_id, access.Action.DATABASE_DELETE)
    back = url_for("databases.delete_get", database_id=database.id)
    if (redirect_ := reauth.required(back)) is not None:
        return redirect_
    # An unticked checkbox sends nothing: only an explicit tick asks for the backup.
    final_backup = request.form.get("final_backup") == "y"
    try:
        lifecycle.delete(database, final_backup=final_backup, by=current_user)
    except lifecycle.DatabaseError as exc:  # being created, or already being deleted
        flash(str(exc), "error")
        return redirect(url_for("databases.show", database_id=database.id), 303)
    flash(f"Database {database.name} is being deleted.", "success")
    return redirect(url_for("databases.show", database_id=database.id), 303)


# ---- an app's links ------------------------------------------------------------


def _back_to_env(app: Application):
    return redirect(url_for("apps.show", app_id=app.id, _anchor="linked-databases"), 303)


@bp.post("/apps/<int:app_id>/databases/link")
def link_post(app_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    form = app_pages.link_form(app)
    if form.validate():
        database = access.database(form.database_id.data, access.Action.DATABASE_MANAGE)
        try:
            links.add(app, database, form.prefix.data, by=current_user)
        except (links.LinkError, names.InvalidValue) as exc:
            form.prefix.errors = [*form.prefix.errors, str(exc)]
    if form.errors:
        return app_pages.show_page(app, EnvVarForm(), 422, link=form)
    flash(f"Database {database.name} linked: its variables apply from the next deploy.",
          "success")  # fmt: skip
    return _back_to_env(app)


@bp.post("/apps/<int:app_id>/databases/<int:link_id>/unlink")
def unlink_post(app_id: int, link_id: int):
    app = access.application(app_id, access.Action.APP_UPDATE)
    row = access.database_link(app, link_id)
    access.authorize(access.Action.DATABASE_MANAGE, row.database)
    name = row.database.name
    links.remove(row)
    flash(f"Database {name} unlinked: its variables go at the next deploy.", "success")
    return _back_to_env(app)
