"""A managed database's life: create, start, stop, restart, rotate its password, delete.

The web calls the functions at the top: they check the request, write the row and
an audit event, commit, and queue a job that takes the database's id (never a
credential). The worker runs the ``run_*`` functions below through ``app.jobs``:
they talk to the engine through ``app.runtime.databases`` and write the outcome
on the row (``status``, ``error``, ``progress``), so nothing fails silently.
"""

from __future__ import annotations

import functools
import logging
import secrets
import string
from datetime import timedelta

from flask import current_app
from redis.exceptions import RedisError
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import audit, crypto, names
from app.databases import engines, links, public
from app.extensions import db, queue, redis
from app.models import (
    Application,
    Database,
    DatabaseStatus,
    Engine,
    MountMode,
    Project,
    Volume,
    VolumeState,
)
from app.models.base import utcnow
from app.runtime import databases as runtime
from app.runtime import volumes as runtime_volumes
from app.runtime.engine import ContainerError

log = logging.getLogger("slipway.databases")

PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 32  # ~190 bits; letters and digits only, so no engine needs quoting
CREATE_TIMEOUT = 1800  # a first pull of a large image on a slow link
ACTIONS = ("start", "stop", "restart")
CREATE_JOB = "database-create-{}"
S = DatabaseStatus


class DatabaseError(ValueError):
    """The request cannot be done; the message is for the person, ``field`` names the
    form field it is about (or None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field


def new_password() -> str:
    return "".join(secrets.choice(PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


def _user_id(by) -> int | None:
    return getattr(by, "id", None)


# ---- the web's side ----------------------------------------------------------------


def _check_name(project: Project, name: str) -> str:
    name = (name or "").strip()
    try:
        names.slug(name, "A database's name")
    except names.InvalidValue as exc:
        raise DatabaseError(str(exc), "name") from None
    taken = db.session.scalar(
        select(Database).where(Database.project_id == project.id, Database.name == name)
    )
    if taken is not None:
        if taken.is_live:
            raise DatabaseError(f"The project already has a database named {name}.", "name")
        raise DatabaseError(
            f"A deleted database named {name} is kept for its grace period; choose another "
            "name.", "name",
        )  # fmt: skip
    app = db.session.scalar(
        select(Application.id).where(Application.project_id == project.id,
                                     Application.name == name)
    )  # fmt: skip
    if app is not None:
        raise DatabaseError(
            f"An app of the project is named {name}: the database's host name would be "
            "ambiguous.", "name",
        )  # fmt: skip
    return name


def _check_limits(memory_limit_mb, cpu_limit) -> tuple[int | None, float | None]:
    memory = cpu = None
    if memory_limit_mb not in (None, ""):
        try:
            memory = int(memory_limit_mb)
        except (TypeError, ValueError):
            raise DatabaseError("The memory limit is a number of MB.", "memory_limit_mb") from None
        if not 64 <= memory <= 1_048_576:
            raise DatabaseError("The memory limit is 64 MB at least.", "memory_limit_mb")
    if cpu_limit not in (None, ""):
        try:
            cpu = float(cpu_limit)
        except (TypeError, ValueError):
            raise DatabaseError("The CPU limit is a number of CPUs.", "cpu_limit") from None
        if not 0.05 <= cpu <= 256:
            raise DatabaseError("The CPU limit is between 0.05 and 256 CPUs.", "cpu_limit")
    return memory, cpu


def create(
    project: Project, *, name: str, engine: str, memory_limit_mb=None, cpu_limit=None,
    by=None,
) -> Database:  # fmt: skip
    """Make a database of ``project`` (status ``creating``) and queue its first start."""
    name = _check_name(project, name)
    if engine not in engines.SPECS:
        raise DatabaseError("Choose PostgreSQL, MariaDB or Redis.", "engine")
    memory, cpu = _check_limits(memory_limit_mb, cpu_limit)
    spec = engines.spec(engine)
    database = Database(
        project_id=project.id, name=name, engine=engine, version=spec.version,
        image=engines.image_for(engine, current_app.config), username=spec.default_user,
        database_name=name.replace("-", "_") if spec.has_database else "0",
        password=crypto.encrypt(new_password(), context=links.PASSWORD_CONTEXT),
        memory_limit_mb=memory, cpu_limit=cpu, status=S.creating.value,
        progress="queued", created_by_id=_user_id(by),
    )  # fmt: skip
    db.session.add(database)
    db.session.flush()
    volume = Volume(
        project_id=project.id, database_id=database.id, label=name, mount_path=spec.data_dir,
        mode=MountMode.exclusive.value, state=VolumeState.active.value,
        owner_label=_owner_label(database, project),
    )  # fmt: skip
    db.session.add(volume)
    db.session.flush()
    volume.docker_name = runtime_volumes.volume_name(volume.id)
    audit.record(audit.Action.DATABASE_CREATED, team_id=project.team_id, target=database,
                 user_id=_user_id(by), name=name, engine=engine)  # fmt: skip
    db.session.commit()
    _enqueue(database, "app.jobs.database_create", database.id, job_timeout=CREATE_TIMEOUT,
             job_id=CREATE_JOB.format(database.id))  # fmt: skip
    return database


def _owner_label(database: Database, project: Project | None = None) -> str:
    project = project or database.project
    return f"database {database.name} of project {project.name}"


def _enqueue(database: Database, job: str, *args, **options) -> None:
    """Queue a job on ``default`` (ids only); a refused enqueue fails the row."""
    try:
        queue("default").enqueue(job, *args, result_ttl=86400, failure_ttl=7 * 86400,
                                 **options)  # fmt: skip
    except RedisError as exc:
        database.status, database.progress = S.failed.value, None
        database.error = f"could not queue the job: {exc}"
        db.session.commit()
        raise DatabaseError(f"The job queue is unavailable: {exc}") from exc


ACTION_AUDIT = {
    "start": audit.Action.DATABASE_STARTED,
    "stop": audit.Action.DATABASE_STOPPED,
    "restart": audit.Action.DATABASE_RESTARTED,
}
# Where each action can start from.
ACTION_FROM = {
    "start": (S.stopped.value, S.failed.value),
    "stop": (S.running.value, S.failed.value),
    "restart": (S.running.value, S.stopped.value, S.failed.value),
}


def _action(database: Database, action: str, by) -> None:
    if database.status not in ACTION_FROM[action]:
        done = {"start": "started", "stop": "stopped", "restart": "restarted"}[action]
        raise DatabaseError(f"A {database.status} database cannot be {done}.")
    database.progress = {"start": "starting", "stop": "stopping",
                         "restart": "restarting"}[action]  # fmt: skip
    audit.record(ACTION_AUDIT[action], team_id=database.project.team_id, target=database,
                 user_id=_user_id(by), name=database.name)  # fmt: skip
    db.session.commit()
    _enqueue(database, "app.jobs.database_action", database.id, action)


def start(database: Database, by=None) -> None:
    _action(database, "start", by)


def stop(database: Database, by=None) -> None:
    _action(database, "stop", by)


def restart(database: Database, by=None) -> None:
    _action(database, "restart", by)


def rotate_password(database: Database, by=None) -> None:
    """Queue a new password: changed in the engine, stored, linked apps redeployed."""
    if database.status != S.running.value:
        raise DatabaseError("Only a running database's password can be rotated.")
    database.progress = "rotating the password"
    audit.record(audit.Action.DATABASE_PASSWORD_ROTATED, team_id=database.project.team_id,
                 target=database, user_id=_user_id(by), name=database.name)  # fmt: skip
    db.session.commit()
    _enqueue(database, "app.jobs.database_rotate", database.id)


def set_public_port(database: Database, port: int | None, by=None) -> str | None:
    """Open the database's public port (``port``) or close it (None), at once: the
    route is written (or removed) now if the database runs, else when it is ready.
    Returns a problem with the route (the row is changed all the same), or None."""
    if not database.is_live:
        raise DatabaseError(f"Database {database.name} is being deleted.")
    if port == database.public_port:
        return public.sync(database)
    if port is not None and (why := public.refusal(database, port)):
        raise DatabaseError(why, field="public_port")
    before, database.public_port = database.public_port, port
    action = audit.Action.DATABASE_PORT_OPENED if port else audit.Action.DATABASE_PORT_CLOSED
    audit.record(action, team_id=database.project.team_id, target=database,
                 user_id=_user_id(by), name=database.name, port=port or before)  # fmt: skip
    try:
        db.session.commit()
    except IntegrityError:  # another database took it between the check and now
        db.session.rollback()
        raise DatabaseError(
            f"Port {port} is the public port of another database: choose another one.",
            field="public_port",
        ) from None
    return public.sync(database)


def delete(database: Database, *, final_backup: bool = True, by=None) -> None:
    """Queue the deletion: the final backup first (unless declined), then the container;
    the volume is kept (detached) for ``VOLUME_GRACE_DAYS``; links go."""
    if not database.is_live:
        raise DatabaseError(f"Database {database.name} is already being deleted.")
    if database.status == S.creating.value and _create_under_way(database):
        raise DatabaseError("Wait until the database is created (or has failed).")
    database.status = S.deleting.value
    database.progress = "taking a final backup" if final_backup else "removing"
    database.error = None
    audit.record(audit.Action.DATABASE_DELETED, team_id=database.project.team_id,
                 target=database, user_id=_user_id(by), name=database.name,
                 final_backup=bool(final_backup))  # fmt: skip
    db.session.commit()
    _enqueue(database, "app.jobs.database_delete", database.id, bool(final_backup),
             job_timeout=6 * 3600)  # fmt: skip


def _create_under_way(database: Database) -> bool:
    """Whether the create job is queued or running (not lost with a worker that died)."""
    try:
        job = Job.fetch(CREATE_JOB.format(database.id), connection=redis.client,
                        serializer=JSONSerializer)  # fmt: skip
        return job.get_status() in ("queued", "started", "deferred", "scheduled")
    except NoSuchJobError:
        return False
    except RedisError:
        return True  # cannot tell: be safe


def of_project(project: Project) -> list[Database]:
    """The project's live databases by name, then deleted ones still in their grace period."""
    rows = list(
        db.session.scalars(
            select(Database).where(Database.project_id == project.id).order_by(Database.name)
        )
    )
    since = utcnow() - timedelta(days=int(current_app.config["VOLUME_GRACE_DAYS"]))
    live = [r for r in rows if r.is_live]
    gone = [r for r in rows if r.status == S.deleted.value and r.deleted_at
            and r.deleted_at >= since]  # fmt: skip
    deleting = [r for r in rows if r.status == S.deleting.value]
    return live + deleting + gone


def connection(database: Database) -> dict:
    """How the project's apps reach it (no password: ``url_masked`` shows dots)."""
    spec = engines.spec(database.engine)
    # A placeholder the URL encoding leaves alone, then the dots in its place.
    shown = engines.variables(database, "PASSWORD")
    url = shown["REDIS_URL"] if database.engine == Engine.redis.value else shown["DATABASE_URL"]
    url = url.replace(":PASSWORD@", ":" + "•" * 8 + "@")
    return {"host": database.alias, "port": spec.port, "user": database.username,
            "database": database.database_name, "url_masked": url}  # fmt: skip


# ---- the worker's side -------------------------------------------------------------


def _load(database_id: int) -> Database | None:
    db.session.expire_all()
    return db.session.get(Database, database_id)


def _say(database: Database, line: str | None) -> None:
    """What the worker does now, for the page (one short line)."""
    database.progress = line[:255] if line else None
    db.session.commit()


def _fail(
    database: Database, why: str, status: str = S.failed.value, *, of_deletion: bool = False
) -> str:
    db.session.rollback()
    database = _load(database.id)
    if database is None:
        return "gone"
    if database.is_live or of_deletion:  # a deletion under way is the deletion's to end
        database.status = status
    database.error, database.progress = why, None
    db.session.commit()
    log.warning("database %s: %s", database.id, why.splitlines()[0] if why else why)
    return database.status


def _reported(of_deletion: bool = False):
    """A job's unexpected failure (the engine unreachable, a bug) is written on the row,
    as ``failed`` with the reason, then raised for RQ: no row stays "creating" forever."""

    def wrap(job):
        @functools.wraps(job)
        def run(database_id: int, *args):
            try:
                return job(database_id, *args)
            except Exception as exc:
                log.exception("database %s: %s failed", database_id, job.__name__)
                db.session.rollback()
                database = db.session.get(Database, database_id)
                if database is not None:
                    why = f"unexpected error: {type(exc).__name__}: {exc}"
                    _fail(database, why, of_deletion=of_deletion)
                raise

        return run

    return wrap


def _start_container(database: Database, password: str) -> float:
    """A new container on the volume, ready; returns the seconds it took to be ready."""
    volume = database.volume
    if volume is None or not volume.docker_name:
        raise ContainerError("the database has no volume")
    _say(database, "starting the container")
    container_id = runtime.start(database, password, volume.docker_name)
    database.container_id = container_id
    _say(database, "waiting for it to accept connections")
    return _wait(database, password)


def _wait(database: Database, password: str) -> float:
    return runtime.wait_ready(
        database.container_id, engines.ready_argv(database),
        runtime.secret_env(database, password),
        float(current_app.config["DATABASE_READY_TIMEOUT_SECONDS"]),
    )  # fmt: skip


def _ready(database: Database, seconds: float) -> None:
    database.status, database.error, database.progress = S.running.value, None, None
    database.ready_at = utcnow()
    db.session.commit()
    if problem := public.sync(database):  # its container (and address) may be new
        database.error = problem
        db.session.commit()
    log.info("database %s ready in %.2f s", database.id, seconds)


@_reported()
def run_create(database_id: int) -> str:
    """The image pulled if missing, the volume made, the first start, ready."""
    database = _load(database_id)
    if database is None or database.status != S.creating.value:
        return database.status if database else "gone"
    try:
        password = links.password_of(database)
        runtime.ensure_image(database.image, lambda line: _say(database, line))
        seconds = _start_container(database, password)
    except (ContainerError, crypto.SecretError) as exc:
        return _fail(database, str(exc))
    if _load(database_id).status != S.creating.value:
        return database.status  # deleted meanwhile: the deletion job takes the container
    _ready(database, seconds)
    return S.running.value


@_reported()
def run_action(database_id: int, action: str) -> str:
    """Start, stop or restart the container (a missing one is made again on the volume)."""
    database = _load(database_id)
    if database is None or not database.is_live or database.status == S.creating.value:
        return database.status if database else "gone"
    if action not in ACTIONS:
        return _fail(database, f"unknown action {action!r}")
    try:
        password = links.password_of(database)
        found = runtime.container_of(database.id)
        if action == "stop":
            if found:
                _say(database, "stopping")
                runtime.stop(found)
            database.status, database.error, database.progress = S.stopped.value, None, None
            db.session.commit()
            public.sync(database)
            return S.stopped.value
        if found is None:  # never made (its create failed) or removed behind our back
            runtime.ensure_image(database.image, lambda line: _say(database, line))
            seconds = _start_container(database, password)
        else:
            database.container_id = found
            _say(database, "starting" if action == "start" else "restarting")
            (runtime.start_existing if action == "start" else runtime.restart)(found)
            _say(database, "waiting for it to accept connections")
            seconds = _wait(database, password)
    except (ContainerError, crypto.SecretError) as exc:
        return _fail(database, f"{action} failed: {exc}")
    _ready(database, seconds)
    return S.running.value


# ---- rotation -----------------------------------------------------------------------

# Each is run inside the container with the old and new passwords in the exec's
# environment (SLIPWAY_OLD_PASSWORD / SLIPWAY_NEW_PASSWORD): never in an argv, never
# spliced into a string by Slipway. The shell only pipes the statement into the client
# (``printf`` is a shell builtin: no process carries the password in its arguments).
_PSQL_SCRIPT = (
    "\\getenv new_password SLIPWAY_NEW_PASSWORD\nALTER ROLE :\"role\" PASSWORD :'new_password';\n"
)


def _rotation(database: Database) -> tuple[list[str], dict[str, str]]:
    """The argv that changes the password in the engine, and its extra environment."""
    if database.engine == Engine.postgres.value:
        return (["sh", "-c", 'printf "%s" "$SLIPWAY_SQL" | PGPASSWORD="$SLIPWAY_OLD_PASSWORD" '
                 'psql -X -q -v ON_ERROR_STOP=1 -v role="$SLIPWAY_USER" -U "$SLIPWAY_USER" '
                 '-d "$SLIPWAY_DB"'],
                {"SLIPWAY_SQL": _PSQL_SCRIPT})  # fmt: skip
    if database.engine == Engine.mariadb.value:
        # The user names are Slipway's own ("app", "root"); the password is letters and
        # digits (new_password), so the quoted literal cannot be broken out of.
        statement = (
            "ALTER USER IF EXISTS '%s'@'%%' IDENTIFIED BY '%s';"
            "ALTER USER IF EXISTS 'root'@'%%' IDENTIFIED BY '%s';"
            "ALTER USER IF EXISTS 'root'@'localhost' IDENTIFIED BY '%s';FLUSH PRIVILEGES;\\n"
        )
        new = '"$SLIPWAY_NEW_PASSWORD"'
        return (["sh", "-c", f'printf "$SLIPWAY_SQL" "$SLIPWAY_USER" {new} {new} {new} '
                 '| MYSQL_PWD="$SLIPWAY_OLD_PASSWORD" mariadb --protocol=tcp -h127.0.0.1 '
                 '-uroot'], {"SLIPWAY_SQL": statement})  # fmt: skip
    return (["sh", "-c", 'printf "CONFIG SET requirepass %s\\n" "$SLIPWAY_NEW_PASSWORD" '
             '| REDISCLI_AUTH="$SLIPWAY_OLD_PASSWORD" redis-cli -h 127.0.0.1 | grep -qx OK'],
            {})  # fmt: skip


def _change_in_engine(database: Database, old: str, new: str) -> None:
    argv, extra = _rotation(database)
    env = {
        "SLIPWAY_OLD_PASSWORD": old,
        "SLIPWAY_NEW_PASSWORD": new,
        "SLIPWAY_USER": database.username,
        "SLIPWAY_DB": database.database_name,
    } | extra
    code, output = runtime.exec_run(database.container_id, argv, env)
    if code != 0:
        said = output.replace(new, "•" * 8).replace(old, "•" * 8).strip()[-500:]
        raise ContainerError(f"the engine refused the new password (exit {code}): {said}")


@_reported()
def run_rotate(database_id: int) -> str:
    """A new password set in the engine (the old one stops working), stored, the
    container made again where the engine keeps it in its arguments (Redis), and each
    linked app redeployed through the switch (its new version gets the new variables)."""
    database = _load(database_id)
    if database is None or database.status != S.running.value:
        return database.status if database else "gone"
    try:
        old = links.password_of(database)
        database.container_id = runtime.container_of(database.id) or database.container_id
        if not database.container_id:
            raise ContainerError("the database's container is gone")
        new = new_password()
        _say(database, "changing the password in the engine")
        _change_in_engine(database, old, new)
    except (ContainerError, crypto.SecretError) as exc:
        return _fail(database, f"the password was not rotated: {exc}", S.running.value)
    try:
        database.password = crypto.encrypt(new, context=links.PASSWORD_CONTEXT)
        database.password_rotated_at = utcnow()
        db.session.commit()
    except Exception:
        db.session.rollback()
        _change_in_engine(_load(database_id), new, old)  # the stored one must keep working
        raise
    try:
        if database.engine == Engine.redis.value:
            seconds = _start_container(database, new)  # --requirepass is an argument
        else:
            seconds = _wait(database, new)
    except ContainerError as exc:
        return _fail(database, f"the password was rotated, but the database is not ready: {exc}")
    _ready(database, seconds)
    redeployed = _redeploy_linked(database)
    log.info("database %s: password rotated; %d linked apps redeployed", database_id, redeployed)
    return S.running.value


def _redeploy_linked(database: Database) -> int:
    """Apply each linked app that serves (today's env and the new link variables,
    through the switch: no downtime). An app that never ran gets them at its deploy."""
    from app.deploys import control

    count = 0
    for app in links.linked_apps(database):
        try:
            control.apply(app)
            count += 1
        except control.DeployError as exc:
            log.info("app %s not redeployed after a rotation: %s", app.id, exc)
    return count


# ---- deletion -------------------------------------------------------------------------


@_reported(of_deletion=True)
def run_delete(database_id: int, final_backup: bool = True) -> str:
    """The final backup (a failure stops the deletion and says why), the container
    removed, the volume detached for its grace period, the links removed."""
    database = _load(database_id)
    if database is None or database.status != S.deleting.value:
        return database.status if database else "gone"
    if final_backup:
        from app.backups import finals

        try:
            finals.take(database.id)
        except Exception as exc:  # noqa: BLE001 - any failure keeps the database
            back = _status_now(database)
            why = f"Not deleted: the final backup failed: {exc}"
            return _fail(database, why, back, of_deletion=True)
    try:
        _say(database, "removing the container")
        runtime.remove(database.container_id, database.id)
    except ContainerError as exc:
        return _fail(database, f"Not deleted: {exc}", _status_now(database), of_deletion=True)
    now = utcnow()
    volume = database.volume
    if volume is not None:
        volume.state, volume.detached_at = VolumeState.detached.value, now
        volume.purge_after = now + timedelta(days=int(current_app.config["VOLUME_GRACE_DAYS"]))
        volume.owner_label = _owner_label(database)
    for row in list(database.links):
        db.session.delete(row)
    database.status, database.deleted_at = S.deleted.value, now
    database.container_id, database.progress, database.error = None, None, None
    database.public_port = None  # the port is free for another database
    db.session.commit()
    public.sync(database)
    return S.deleted.value


# ---- what the watcher sees ---------------------------------------------------------

WATCHED = (S.running.value, S.failed.value)
WATCHER_SAYS = "The database stopped without Slipway stopping it"


def watched_ids() -> list[int]:
    """The databases whose container the watcher compares with their row."""
    return list(db.session.scalars(select(Database.id).where(Database.status.in_(WATCHED))))


def observe(database_id: int) -> str | None:
    """Make the row say what its container does (``app.runtime.watch`` calls this on the
    engine's events and every reconcile): a running database whose container exited,
    was killed or removed behind Slipway's back is ``failed`` with the reason; a failed
    one whose container runs again (the engine restarted it) is ``running``. A database
    a job is at work on (``progress``) or that is being created, stopped or deleted is
    the job's to write. The public route follows. Returns the new status, or None."""
    database = _load(database_id)
    if database is None or database.status not in WATCHED or database.progress:
        return None
    found = runtime.container_of(database.id)
    state, why = runtime.observed(found)
    if state in ("unknown", "removing"):  # the engine did not answer, or it is going
        return None
    reason = f"{WATCHER_SAYS}: {why}"[:4000]
    if state == "running":
        if database.status == S.running.value and found == database.container_id:
            if database.public_port:  # its address may be new (the host restarted)
                public.sync(database)  # writes only when the route differs
            return None
        database.status, database.error, database.container_id = S.running.value, None, found
    elif database.status == S.running.value or (
        # gone since the watcher saw it stop (a failed create's reason stays as it is)
        state == "missing" and (database.error or "").startswith(WATCHER_SAYS)
        and database.error != reason
    ):  # fmt: skip
        database.status, database.error = S.failed.value, reason
    else:
        return None
    db.session.commit()
    log.warning("database %s is %s (seen by the watcher)", database.id, database.status)
    public.sync(database)
    return database.status


def _status_now(database: Database) -> str:
    """What a database whose deletion stopped is: what its container is."""
    try:
        found = runtime.container_of(database.id)
        state = runtime.state(found)
    except ContainerError:
        return S.failed.value
    if state == "running":
        return S.running.value
    return S.stopped.value if found else S.failed.value
