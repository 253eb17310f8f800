"""``/api/v1/.../databases``: a project's managed databases (list, create, read, start,
stop, restart, rotate the password, open or close the public port, delete) and an
app's links to them, through ``app.databases`` as the database pages do.

Creating, acting and deleting answer 202: a job does the work, and the database's
``status``, ``progress`` and ``error`` say how it went (poll ``GET``). No answer holds
the password: the URL is masked, as on the page.
"""

from __future__ import annotations

from flask_login import current_user
from sqlalchemy import select

from app import access, names
from app.access import Action
from app.databases import engines, lifecycle, links
from app.models import Database, DatabaseStatus
from app.web.api import base, spec
from app.web.api.base import bp
from app.web.api.conventions import iso


def present_database(database: Database) -> dict:
    connection = lifecycle.connection(database)
    return {
        "id": database.id, "project_id": database.project_id, "name": database.name,
        "engine": database.engine, "version": database.version, "image": database.image,
        "status": database.status, "progress": database.progress, "error": database.error,
        "host": connection["host"], "port": connection["port"], "user": connection["user"],
        "database": connection["database"], "url": connection["url_masked"],
        "public_port": database.public_port, "memory_limit_mb": database.memory_limit_mb,
        "cpu_limit": database.cpu_limit,
        "linked_app_ids": sorted(row.application_id for row in database.links),
        "password_rotated_at": iso(database.password_rotated_at),
        "ready_at": iso(database.ready_at), "created_at": iso(database.created_at),
    }  # fmt: skip


def _refused(exc: Exception, field: str | None = None):
    base.fail(422, "invalid", str(exc), {"fields": {field: str(exc)}} if field else {})


def _not_now(exc: lifecycle.DatabaseError):
    """A request the database's state refuses (a running one started): 409."""
    if exc.field:
        _refused(exc, exc.field)
    base.fail(409, "conflict", str(exc))


def _accepted(database: Database):
    return base.respond(present_database(database), 202,
                        headers={"Location": f"/api/v1/databases/{database.id}"})  # fmt: skip


@bp.get("/projects/<int:project_id>/databases")
@spec.operation("listDatabases", "Databases", "A project's databases", Action.DATABASE_READ,
                query="DatabaseListQuery", response="DatabasePage")  # fmt: skip
def databases_list(project_id: int):
    project = access.project(project_id, Action.DATABASE_READ)
    params = base.query()
    statement = select(Database).where(
        Database.project_id == project.id, Database.status != DatabaseStatus.deleted.value
    )
    return base.page(statement, Database.id, present_database, params)


@bp.post("/projects/<int:project_id>/databases")
@spec.operation(
    "createDatabase", "Databases", "Create a database (PostgreSQL, MariaDB or Redis)",
    Action.DATABASE_MANAGE, body="DatabaseCreate", response="Database", status=202,
    description="202 with `Location`: the image is pulled if missing and the database started; "
    "`status` becomes `running` (or `failed` with `error`).",
)  # fmt: skip
def databases_create(project_id: int):
    project = access.project(project_id, Action.DATABASE_MANAGE)
    data = base.body()
    try:
        database = lifecycle.create(
            project, name=data.name, engine=data.engine, memory_limit_mb=data.memory_limit_mb,
            cpu_limit=data.cpu_limit, by=current_user,
        )  # fmt: skip
    except lifecycle.DatabaseError as exc:
        _refused(exc, exc.field or "name")
    return _accepted(database)


@bp.get("/databases/<int:database_id>")
@spec.operation("getDatabase", "Databases", "A database", Action.DATABASE_READ,
                response="Database")  # fmt: skip
def databases_get(database_id: int):
    return base.respond(present_database(access.database(database_id, Action.DATABASE_READ)))


def _act(database_id: int, action: Action, run):
    database = access.database(database_id, action)
    try:
        run(database, by=current_user)
    except lifecycle.DatabaseError as exc:
        _not_now(exc)
    return _accepted(database)


@bp.post("/databases/<int:database_id>/start")
@spec.operation("startDatabase", "Databases", "Start a stopped or failed database",
                Action.DATABASE_MANAGE, response="Database", status=202)  # fmt: skip
def databases_start(database_id: int):
    return _act(database_id, Action.DATABASE_MANAGE, lifecycle.start)


@bp.post("/databases/<int:database_id>/stop")
@spec.operation("stopDatabase", "Databases", "Stop a running database", Action.DATABASE_MANAGE,
                response="Database", status=202)  # fmt: skip
def databases_stop(database_id: int):
    return _act(database_id, Action.DATABASE_MANAGE, lifecycle.stop)


@bp.post("/databases/<int:database_id>/restart")
@spec.operation("restartDatabase", "Databases", "Restart a database", Action.DATABASE_MANAGE,
                response="Database", status=202)  # fmt: skip
def databases_restart(database_id: int):
    return _act(database_id, Action.DATABASE_MANAGE, lifecycle.restart)


@bp.post("/databases/<int:database_id>/rotate-password")
@spec.operation(
    "rotateDatabasePassword", "Databases", "Rotate the password", Action.DATABASE_ROTATE,
    response="Database", status=202,
    description="Changed in the engine, stored, and the linked apps redeployed without "
    "downtime.",
)  # fmt: skip
def databases_rotate(database_id: int):
    return _act(database_id, Action.DATABASE_ROTATE, lifecycle.rotate_password)


@bp.put("/databases/<int:database_id>/public-port")
@spec.operation(
    "setDatabasePublicPort", "Databases", "Open or close the public port (TLS)",
    Action.DATABASE_EXPOSE, body="PublicPortPut", response="Database",
    description="`port` must be one of SLIPWAY_DATABASE_PUBLIC_PORTS held by no other "
    "database; null closes it. A route that could not be written is in a `Warning` header.",
)  # fmt: skip
def databases_public_port(database_id: int):
    database = access.database(database_id, Action.DATABASE_EXPOSE)
    data = base.body()
    try:
        problem = lifecycle.set_public_port(database, data.port, by=current_user)
    except lifecycle.DatabaseError as exc:
        if exc.field:
            _refused(exc, "port")
        _not_now(exc)
    response = base.respond(present_database(database))
    if problem:
        response.headers["Warning"] = '199 slipway "' + problem.replace('"', "'") + '"'
    return response


@bp.delete("/databases/<int:database_id>")
@spec.operation(
    "deleteDatabase", "Databases", "Delete a database (a final backup first)",
    Action.DATABASE_DELETE, query="DatabaseDeleteQuery", response="Database", status=202,
    description="The volume is kept for SLIPWAY_VOLUME_GRACE_DAYS; `?final_backup=false` "
    "skips the final backup.",
)  # fmt: skip
def databases_delete(database_id: int):
    database = access.database(database_id, Action.DATABASE_DELETE)
    params = base.query()
    try:
        lifecycle.delete(database, final_backup=params.final_backup == "true", by=current_user)
    except lifecycle.DatabaseError as exc:
        _not_now(exc)
    return _accepted(database)


# ---- an app's links ------------------------------------------------------------------


def present_link(row) -> dict:
    database = row.database
    return {
        "id": row.id, "app_id": row.application_id, "database_id": row.database_id,
        "database_name": database.name, "prefix": row.prefix,
        "variables": sorted(engines.variables(database, "-", row.prefix)),
    }  # fmt: skip


@bp.get("/apps/<int:app_id>/database-links")
@spec.operation("listDatabaseLinks", "Databases", "The databases linked to an app",
                Action.APP_READ, response="LinkList")  # fmt: skip
def links_list(app_id: int):
    app = access.application(app_id, Action.APP_READ)
    return base.respond({"data": [present_link(row) for row in links.links_of(app)]})


@bp.post("/apps/<int:app_id>/database-links")
@spec.operation(
    "createDatabaseLink", "Databases", "Link a database of the app's project",
    Action.APP_UPDATE, body="LinkCreate", response="Link", status=201,
    description="Its variables (DATABASE_URL, …) apply from the app's next deploy; a "
    "database of another project is a 422.",
)  # fmt: skip
def links_create(app_id: int):
    app = access.application(app_id, Action.APP_UPDATE)
    data = base.body()
    database = access.database(data.database_id, Action.DATABASE_MANAGE)
    try:
        row = links.add(app, database, data.prefix, by=current_user)
    except links.LinkError as exc:
        field = "prefix" if "prefix" in str(exc) else "database_id"
        _refused(exc, field)
    except names.InvalidValue as exc:
        _refused(exc, "prefix")
    return base.respond(present_link(row), 201)


@bp.delete("/apps/<int:app_id>/database-links/<int:link_id>")
@spec.operation("deleteDatabaseLink", "Databases", "Unlink a database", Action.APP_UPDATE,
                status=204)  # fmt: skip
def links_delete(app_id: int, link_id: int):
    app = access.application(app_id, Action.APP_UPDATE)
    row = access.database_link(app, link_id)
    access.authorize(Action.DATABASE_MANAGE, row.database)
    links.remove(row)
    return base.no_content()
