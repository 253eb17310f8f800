"""A managed database's life on the real engine: create (each engine) → running and
reachable at ``<name>:<port>`` from the project's network with its credentials; an
image that cannot be pulled fails the create with the engine's reason; stop, start,
restart; a rotated password (the old one refused, the new one works, linked apps
redeployed); a deletion (the final backup first; the container gone, the volume kept
and detached, the links gone); credentials never in job arguments or logs; hostile
names refused.

The jobs are queued for real (their arguments are read back from Redis) and run here
by calling the job functions, as the worker would.
"""

from __future__ import annotations

import logging
import os
import time
from datetime import timedelta

import docker
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import select

from app import jobs
from app.databases import engines, lifecycle, links
from app.databases.lifecycle import DatabaseError
from app.extensions import db, queue, redis
from app.models import (
    AuditEvent,
    Database,
    DatabaseLink,
    Deployment,
    Installation,
    Volume,
)
from app.models.base import utcnow
from app.runtime import databases as runtime
from app.runtime import volumes as runtime_volumes
from app.runtime.versions import project_network
from tests.conftest import running_app
from tests.factories import make_app, make_project, make_team, make_user
from tests.lab import free_port

# The test images (scripts/db-images.sh); the registry fixture's when it is merged.
IMAGES = {
    "IMAGE_POSTGRES": "slipway-test/postgres:16",
    "IMAGE_MARIADB": "slipway-test/mariadb:11",
    "IMAGE_REDIS": "slipway-test/redis:7",
}
CLIENT_IMAGE = "slipway-test/dbclient:latest"
ENGINES = ("postgres", "mariadb", "redis")
TIMINGS: dict[str, float] = {}

# What a client on a network runs to prove it is in (prints "42" / "PONG").
CLIENT_ARGV = {
    "postgres": ["sh", "-c", 'psql "$DATABASE_URL" -tAc "select 42"'],
    "mariadb": ["sh", "-c", 'mariadb -h"$MYSQL_HOST" -P"$MYSQL_PORT" -u"$MYSQL_USER" '
                '-p"$MYSQL_PASSWORD" "$MYSQL_DATABASE" -N -e "select 42"'],
    "redis": ["sh", "-c", 'redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" --no-auth-warning '
              '-a "$REDIS_PASSWORD" ping'],
}  # fmt: skip
EXPECTED = {"postgres": "42", "mariadb": "42", "redis": "PONG"}


@pytest.fixture
def dbapp(base_config):
    """An installed Slipway on the real engine; what its databases left goes at the end
    (containers, then volumes and project networks of this test installation only)."""
    config = base_config | IMAGES | {"DATABASE_READY_TIMEOUT_SECONDS": 90}
    with running_app(config) as app:
        make_user()
        jobs.bind(app)
        installation_id = db.session.scalar(select(Installation.installation_id))
        yield app
    cleanup(installation_id)


def cleanup(installation_id: str) -> None:
    client = docker.from_env()
    mine = f"slipway.installation={installation_id}"
    try:
        for container in client.containers.list(all=True, filters={"label": mine}):
            container.remove(force=True)
        for volume in client.volumes.list(filters={"label": mine}):
            volume.remove(force=True)
        for network in client.networks.list(filters={"label": mine}):
            network.remove()
    finally:
        client.close()


def _project(name: str = "shop"):
    return make_project(make_team(), name)


def _job_args(job_id_prefix: str | None = None) -> list[list]:
    """The arguments of every job queued on ``default`` (as Redis holds them)."""
    found = []
    for job_id in queue("default").job_ids:
        job = Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)
        found.append([job.func_name, *job.args])
    return found


def _create(project, engine: str, name: str | None = None) -> Database:
    database = lifecycle.create(project, name=name or f"{engine}-db", engine=engine,
                                memory_limit_mb=256)  # fmt: skip
    began = time.monotonic()
    assert jobs.database_create(database.id) == "running", _row(database.id).error
    TIMINGS[f"{engine} first start"] = time.monotonic() - began
    print(f"timing: {engine} create to ready {TIMINGS[f'{engine} first start']:.2f} s")
    return _row(database.id)


def _row(database_id: int) -> Database:
    db.session.expire_all()
    return db.session.get(Database, database_id)


def client_run(network: str, argv: list[str], env: dict[str, str], installation_id: str):
    """Run the client image on ``network``; (exit code, output)."""
    client = docker.from_env()
    try:
        container = client.containers.run(
            CLIENT_IMAGE, argv, detach=True, network=network, environment=env,
            labels={"slipway.installation": installation_id, "slipway.test": "dbclient"},
        )  # fmt: skip
        try:
            code = container.wait(timeout=60)["StatusCode"]
            return code, container.logs().decode("utf-8", "replace")
        finally:
            container.remove(force=True)
    finally:
        client.close()


def _installation_id() -> str:
    return db.session.scalar(select(Installation.installation_id))


def connect(database: Database, password: str | None = None, network: str | None = None):
    """Connect from a container on ``network`` (the project's) at ``<name>:<port>``."""
    password = links.password_of(database) if password is None else password
    env = engines.variables(database, password)
    return client_run(network or project_network(database.project_id),
                      CLIENT_ARGV[database.engine], env, _installation_id())  # fmt: skip


def _accepts(database: Database, password: str | None = None) -> bool:
    code, output = connect(database, password)
    return code == 0 and EXPECTED[database.engine] in output


@pytest.mark.once
@pytest.mark.parametrize("engine", ENGINES)
def test_each_engine_runs_and_takes_an_authenticated_connection(dbapp, engine, caplog):
    caplog.set_level(logging.DEBUG)
    project = _project()
    database = _create(project, engine)

    assert database.status == "running" and database.ready_at and database.error is None
    assert database.progress is None
    assert _accepts(database)
    assert not _accepts(database, "wrong-password"), "a wrong password was let in"

    # The container: its name, labels, the project's network only with the alias, no
    # published port, the volume at the data dir, the options.
    client = docker.from_env()
    container = client.containers.get(database.container_id)
    attrs = container.attrs
    assert container.name == f"slipway-{_installation_id()}-db{database.id}"
    assert container.labels["slipway.database"] == str(database.id)
    assert container.labels["slipway.project"] == str(project.id)
    assert container.labels["slipway.installation"] == _installation_id()
    networks = attrs["NetworkSettings"]["Networks"]
    assert list(networks) == [project_network(project.id)]
    assert database.name in networks[project_network(project.id)]["Aliases"]
    assert not any(attrs["HostConfig"].get("PortBindings") or {})
    assert attrs["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert "no-new-privileges" in attrs["HostConfig"]["SecurityOpt"]
    assert attrs["HostConfig"]["Privileged"] is False
    assert attrs["HostConfig"]["Memory"] == 256 * 1024 * 1024
    assert attrs["HostConfig"]["LogConfig"]["Config"] == {"max-size": "10m", "max-file": "3"}
    mounts = [m for m in attrs["Mounts"] if m["Type"] == "volume"]
    assert [(m["Name"], m["Destination"]) for m in mounts] == [
        (database.volume.docker_name, engines.spec(engine).data_dir)
    ]
    client.close()

    # Job arguments are ids; the password is in no log line, job, audit row or progress.
    password = links.password_of(database)
    assert _job_args() == [["app.jobs.database_create", database.id]]
    assert password not in caplog.text
    for event in db.session.scalars(select(AuditEvent)):
        assert password not in str(event.details)
    assert database.password != password  # stored as ciphertext

    # Restarted: ready again, same data volume.
    began = time.monotonic()
    lifecycle.restart(database)
    assert jobs.database_action(database.id, "restart") == "running"
    TIMINGS[f"{engine} restart"] = time.monotonic() - began
    print(f"timing: {engine} restart to ready {TIMINGS[f'{engine} restart']:.2f} s")
    assert _accepts(_row(database.id))


@pytest.mark.once
def test_stop_start_restart(dbapp):
    database = _create(_project(), "redis")
    lifecycle.stop(database)
    assert jobs.database_action(database.id, "stop") == "stopped"
    database = _row(database.id)
    assert database.status == "stopped" and runtime.state(database.container_id) == "exited"
    with pytest.raises(DatabaseError):
        lifecycle.stop(database)  # already stopped
    with pytest.raises(DatabaseError):
        lifecycle.rotate_password(database)  # only a running one

    lifecycle.start(database)
    assert jobs.database_action(database.id, "start") == "running"
    database = _row(database.id)
    assert runtime.state(database.container_id) == "running" and _accepts(database)

    # A container removed behind Slipway's back is made again on the same volume.
    docker.from_env().containers.get(database.container_id).remove(force=True)
    lifecycle.restart(database)
    assert jobs.database_action(database.id, "restart") == "running"
    database = _row(database.id)
    assert runtime.state(database.container_id) == "running" and _accepts(database)
    actions = set(db.session.scalars(select(AuditEvent.action)))
    assert {"database.created", "database.stopped", "database.started",
            "database.restarted"} <= actions  # fmt: skip
    assert [a[0] for a in _job_args()] == ["app.jobs.database_create"] + [
        "app.jobs.database_action"] * 3  # fmt: skip
    assert [a[1:] for a in _job_args()[1:]] == [[database.id, "stop"], [database.id, "start"],
                                                [database.id, "restart"]]  # fmt: skip


@pytest.mark.once
def test_an_image_that_cannot_be_pulled_fails_the_create_with_the_reason(dbapp):
    dbapp.config["IMAGE_REDIS"] = f"127.0.0.1:{free_port()}/nothing/redis:7"
    database = lifecycle.create(_project(), name="cache", engine="redis")
    assert jobs.database_create(database.id) == "failed"
    database = _row(database.id)
    assert database.status == "failed" and database.progress is None
    assert database.error.startswith(f"pulling {database.image} failed: ")
    assert "connection refused" in database.error.lower(), database.error
    assert runtime.container_of(database.id) is None


@pytest.fixture
def registry(tmp_path):
    """A local registry; what the test tagged for it is removed at the end."""
    from tests.registry import Registry

    client = docker.from_env()
    made: list[str] = []
    with Registry(tmp_path / "registry") as reg:
        yield reg, client, made
    for ref in made:
        try:
            client.images.remove(ref, force=True)
        except docker.errors.NotFound:
            pass
    client.close()


@pytest.mark.once
def test_a_missing_image_is_pulled_then_started(dbapp, registry):
    """The engine lacks the image: the create pulls it from its registry, then starts."""
    from tests.registry import push

    reg, client, made = registry
    ref = reg.ref("slipway-lifecycle/redis", f"t{time.time_ns()}")
    client.images.get(IMAGES["IMAGE_REDIS"]).tag(ref)
    made.append(ref)
    push(client, ref)
    client.images.remove(ref)  # the engine no longer has it: the create pulls it
    dbapp.config["IMAGE_REDIS"] = ref
    database = lifecycle.create(_project(), name="cache", engine="redis")
    assert not runtime.has_image(ref)
    assert jobs.database_create(database.id) == "running", _row(database.id).error
    assert runtime.has_image(ref) and _accepts(_row(database.id))


@pytest.mark.once
def test_a_pull_tells_its_progress_at_most_once_a_second(dbapp, registry, tmp_path):
    """An image of 24 MB of random bytes (no layer the engine has): the lines count the
    megabytes downloaded, at most one a second, the last one all of them."""
    from tests.registry import push

    reg, client, made = registry
    folder = tmp_path / "blob"
    folder.mkdir()
    (folder / "blob").write_bytes(os.urandom(24_000_000))
    (folder / "Dockerfile").write_text("FROM scratch\nCOPY blob /blob\n")
    ref = reg.ref("slipway-lifecycle/blob", f"t{time.time_ns()}")
    client.images.build(path=str(folder), tag=ref, rm=True, labels={"slipway.test": "1"})
    made.append(ref)
    push(client, ref)
    client.images.remove(ref)
    said: list[tuple[float, str]] = []
    assert runtime.ensure_image(ref, lambda line: said.append((time.monotonic(), line)))
    assert not runtime.ensure_image(ref, lambda line: None)  # there now: no pull
    lines = [line for _, line in said]
    assert lines[0] == f"pulling {ref}" and lines[-1] == f"pulling {ref}: 24/24 MB", lines
    told = [t for t, line in said[1:-1]]
    assert all(b - a >= 0.99 for a, b in zip(told, told[1:], strict=False)), said


def _serving(app_row) -> Deployment:
    """A running deployment with an image, so the app can be applied again."""
    row = Deployment(application_id=app_row.id, status="running", trigger="manual",
                     image_id="sha256:" + "0" * 64, image_tag="web:1")  # fmt: skip
    db.session.add(row)
    db.session.commit()
    return row


@pytest.mark.once
@pytest.mark.parametrize("engine", ENGINES)
def test_rotation_refuses_the_old_password_and_redeploys_linked_apps(dbapp, engine, caplog):
    caplog.set_level(logging.DEBUG)
    project = _project()
    database = _create(project, engine)
    web = make_app(project, "web")
    idle = make_app(project, "idle")  # linked, never deployed: gets the password at deploy
    for app_row in (web, idle):
        links.link(app_row, database)
    db.session.commit()
    _serving(web)
    old = links.password_of(database)

    lifecycle.rotate_password(database)
    assert jobs.database_rotate(database.id) == "running", _row(database.id).error
    database = _row(database.id)
    new = links.password_of(database)
    assert new != old and len(new) >= 32 and database.password_rotated_at
    assert database.status == "running" and database.error is None
    assert _accepts(database, new)
    assert not _accepts(database, old), "the old password still works"

    # The linked app that serves is redeployed (apply: same image, new link variables).
    queued = db.session.scalars(
        select(Deployment).where(Deployment.status == "queued")).all()  # fmt: skip
    assert [(d.application_id, d.trigger) for d in queued] == [(web.id, "apply")]
    assert links.variables_for(web)["REDIS_URL" if engine == "redis" else "DATABASE_URL"] \
        .count(new) == 1  # fmt: skip

    # The new password survives a restart (Redis keeps it in its arguments).
    lifecycle.restart(database)
    assert jobs.database_action(database.id, "restart") == "running"
    assert _accepts(_row(database.id), new)
    assert not _accepts(_row(database.id), old)

    args = _job_args()
    assert ["app.jobs.database_rotate", database.id] in args
    assert all(isinstance(a, int | str | bool) for job in args for a in job[1:])
    for secret in (old, new):
        assert secret not in caplog.text
        assert secret not in str(args)
        for event in db.session.scalars(select(AuditEvent)):
            assert secret not in str(event.details)
    assert "database.password_rotated" in set(db.session.scalars(select(AuditEvent.action)))


@pytest.mark.once
def test_delete_stops_when_the_final_backup_fails_then_keeps_the_volume(dbapp):
    project = _project()
    database = _create(project, "postgres", "shop-db")
    web = make_app(project, "web")
    links.link(web, database)
    db.session.commit()
    container_id, volume_name = database.container_id, database.volume.docker_name

    # The final backup fails (no policy covers it): nothing is deleted, and it says why.
    lifecycle.delete(database)
    assert _row(database.id).status == "deleting"
    assert jobs.database_delete(database.id, True) == "running"
    database = _row(database.id)
    assert database.status == "running"
    assert "final backup failed" in database.error and "no backup policy" in database.error
    assert runtime.state(container_id) == "running" and links.links_of(web)

    lifecycle.delete(database, final_backup=False)
    with pytest.raises(DatabaseError):
        lifecycle.delete(_row(database.id))  # already being deleted
    assert jobs.database_delete(database.id, False) == "deleted"
    database = _row(database.id)
    assert database.status == "deleted" and database.deleted_at and database.container_id is None
    assert runtime.state(container_id) == "missing" and runtime.container_of(database.id) is None
    # The volume is kept for the grace period, detached, with who it belonged to.
    assert runtime_volumes.exists(volume_name)
    volume = db.session.scalar(select(Volume).where(Volume.docker_name == volume_name))
    assert volume.state == "detached" and volume.detached_at
    assert volume.purge_after - volume.detached_at == timedelta(days=7)
    assert volume.owner_label == f"database shop-db of project {project.name}"
    # The links are gone (the app's next deploy runs without the variables; no redeploy).
    assert db.session.scalars(select(DatabaseLink)).all() == []
    assert links.variables_for(web) == {}
    assert db.session.scalars(select(Deployment)).all() == []
    # Listed as deleted within the grace period, after the live ones.
    assert [d.name for d in lifecycle.of_project(project)] == ["shop-db"]
    assert _job_args()[-2:] == [["app.jobs.database_delete", database.id, True],
                                ["app.jobs.database_delete", database.id, False]]  # fmt: skip


# ---- no engine needed ---------------------------------------------------------------

HOSTILE = ["", "a", "Shop", "-db", "db-", "1db", "db;rm -rf /", "../etc", "db name",
           "db$(id)", "d" * 64, "db\nx", "ü-db", "web"]  # fmt: skip


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_refused(app, name):
    make_user()
    project = _project()
    make_app(project, "web")
    with pytest.raises(DatabaseError) as refused:
        lifecycle.create(project, name=name, engine="postgres")
    assert refused.value.field == "name"
    assert db.session.scalars(select(Database)).all() == []


def test_create_checks_the_engine_the_limits_and_uniqueness(app):
    make_user()
    project = _project()
    with pytest.raises(DatabaseError) as refused:
        lifecycle.create(project, name="db", engine="mongodb")
    assert refused.value.field == "engine"
    for field, values in (("memory_limit_mb", {"memory_limit_mb": "lots"}),
                          ("memory_limit_mb", {"memory_limit_mb": 8}),
                          ("cpu_limit", {"cpu_limit": 0})):  # fmt: skip
        with pytest.raises(DatabaseError) as refused:
            lifecycle.create(project, name="db", engine="redis", **values)
        assert refused.value.field == field
    database = lifecycle.create(project, name="shop-db", engine="postgres", cpu_limit="0.5")
    assert (database.status, database.username, database.database_name) == (
        "creating",
        "app",
        "shop_db",
    )
    assert database.cpu_limit == 0.5 and database.image == "postgres:16"
    assert database.volume.docker_name.endswith(f"-v{database.volume.id}")
    assert database.volume.mount_path == "/var/lib/postgresql/data"
    assert database.volume.mode == "exclusive"
    assert len(links.password_of(database)) == 32
    with pytest.raises(DatabaseError) as refused:
        lifecycle.create(project, name="shop-db", engine="redis")
    assert refused.value.field == "name"
    assert lifecycle.connection(database) == {
        "host": "shop-db", "port": 5432, "user": "app", "database": "shop_db",
        "url_masked": "postgresql://app:••••••••@shop-db:5432/shop_db",
    }  # fmt: skip
    # A deleted one still in its grace period holds its name.
    database.status, database.deleted_at = "deleted", utcnow()
    db.session.commit()
    with pytest.raises(DatabaseError, match="grace period"):
        lifecycle.create(project, name="shop-db", engine="postgres")


def test_a_database_whose_create_is_under_way_is_not_deleted(app):
    make_user()
    jobs.bind(app)
    database = lifecycle.create(_project(), name="cache", engine="redis")
    with pytest.raises(DatabaseError, match="Wait until"):
        lifecycle.delete(database)
    # The create job was lost (its worker died): the row can be deleted, and a late
    # create job leaves it alone.
    Job.fetch(f"database-create-{database.id}", connection=redis.client,
              serializer=JSONSerializer).delete()  # fmt: skip
    lifecycle.delete(database, final_backup=False)
    assert jobs.database_create(database.id) == "deleting"
    assert _row(database.id).status == "deleting"
    assert _job_args()[-1] == ["app.jobs.database_delete", database.id, False]


def test_an_engine_that_does_not_answer_fails_the_create_on_the_row(app, tmp_path):
    make_user()
    jobs.bind(app)
    database = lifecycle.create(_project(), name="cache", engine="redis")
    app.config["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    with pytest.raises(Exception):  # noqa: B017 - RQ records the job as failed too
        jobs.database_create(database.id)
    database = _row(database.id)
    assert database.status == "failed" and database.progress is None
    assert "no-docker.sock" in database.error or "unexpected error" in database.error
