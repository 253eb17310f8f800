"""Issue 16 end to end, for each engine, on the real services: Docker, Traefik, the
smart-HTTP git server, the engine images pulled from a registry (``db_registry``) and
S3 (moto).

A database is created (its job pulls the image and starts it) and linked to an app;
the app, deployed from a git repository, writes through the linked variables and
answers through Traefik; a redeploy keeps the data; a rotated password is refused
once changed, the linked app is applied again and works with the new one; a backup
of the database passes its restore drill (row counts compared); the deletion takes a
final backup (in S3), removes the container and detaches the volume.

Jobs run here by calling the job functions, as the worker would.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import docker
import pytest
from sqlalchemy import select

from app import jobs
from app.backups import restores, runs, storage
from app.databases import lifecycle, links
from app.extensions import db
from app.models import Application, Backup, Database, Deployment, Installation, Restore, Volume
from app.runtime import databases as runtime
from app.runtime import dumps as docker_dumps
from app.runtime import volumes as runtime_volumes
from app.runtime.containers import LABEL_APP, LABEL_DEPLOYMENT
from tests import lab
from tests.backups.conftest import moto  # noqa: F401 - the S3 server fixture
from tests.conftest import running_app
from tests.databases.apps import ENGINES, app_files
from tests.databases.test_lifecycle import EXPECTED, cleanup, connect
from tests.deploys.conftest import (
    _deploy,
    _remove_slipway_resources,
    _through_traefik,
    infra,  # noqa: F401 - Docker, Traefik, the git server
    ours,
)
from tests.factories import (
    S3_KEY,
    make_app,
    make_destination,
    make_policy,
    make_project,
    make_team,
    make_user,
)

pytestmark = pytest.mark.once
_n = itertools.count(1)
# The rows (PostgreSQL, MariaDB) or keys (Redis) a drill counts after the app's writes.
COUNTED = {"postgres": ("public.items", 3), "mariadb": ("data.items", 3), "redis": ("db0", 1)}


@pytest.fixture
def stack(infra, db_registry, moto, tmp_path):  # noqa: F811
    """An installed Slipway on the deploy tests' services, its engine images from the
    registry, backups allowed to loopback S3; everything this installation made on the
    engine goes at the end (containers, the detached volume, networks, images)."""
    config = infra["config"] | db_registry.config | {
        "DATABASE_READY_TIMEOUT_SECONDS": 90,
        "BACKUPS_DIR": str(tmp_path / "backups"),
        "BACKUP_ALLOWED_HOSTS": ("127.0.0.1",),
        "S3_RETRIES": 2,
        "S3_RETRY_BASE_SECONDS": 0.05,
        "S3_TIMEOUT_SECONDS": 10,
    }  # fmt: skip
    with running_app(config) as flask_app:
        make_user()
        jobs.bind(flask_app)
        installation_id = db.session.scalar(select(Installation.installation_id))
        yield flask_app
        db.session.rollback()
        app_ids = set(db.session.scalars(select(Application.id)))
    try:
        cleanup(installation_id)  # containers (the app's, the database's), volumes, networks
    finally:
        dynamic = Path(infra["config"]["PROXY_DIR"]) / "dynamic"
        _remove_slipway_resources(app_ids, installation_id, dynamic)


class Clock:
    def __init__(self, engine: str):
        self.engine, self.last, self.steps = engine, time.monotonic(), []

    def lap(self, step: str) -> None:
        now = time.monotonic()
        self.steps.append((step, now - self.last))
        self.last = now

    def report(self) -> str:
        total = sum(s for _, s in self.steps)
        laps = ", ".join(f"{step} {s:.1f}" for step, s in self.steps)
        return f"timing: {self.engine} end to end {total:.1f} s ({laps})"


def _row(model, row_id: int):
    db.session.expire_all()
    return db.session.get(model, row_id)


def _read(services, web) -> list[str]:
    answer = _through_traefik(services, web, "/read")
    assert answer.status_code == 200, answer.text
    return answer.text.split()


def _write(services, web, value: str) -> None:
    answer = _through_traefik(services, web, f"/write?v={value}")
    assert (answer.status_code, answer.text) == (200, f"wrote {value}\n"), answer.text


def _accepted(database: Database, password: str) -> bool:
    code, output = connect(database, password)
    return code == 0 and EXPECTED[database.engine] in output


def _queued(web) -> list[Deployment]:
    db.session.expire_all()
    return list(
        db.session.scalars(
            select(Deployment)
            .where(Deployment.application_id == web.id, Deployment.status == "queued")
            .order_by(Deployment.id)
        )
    )


@pytest.mark.parametrize("engine", ENGINES)
def test_create_link_deploy_rotate_back_up_and_delete(
    stack,
    infra,  # noqa: F811 - the fixture
    db_registry,
    s3_bucket,
    engine,
    tmp_path,
):
    clock = Clock(engine)
    project = make_project(make_team(), f"e2e{next(_n)}")

    # Created: the job pulls the engine's image from the registry and starts it.
    database = lifecycle.create(project, name="data", engine=engine, memory_limit_mb=256)
    assert database.image == stack.config[f"IMAGE_{engine.upper()}"]
    db_registry.forget(database.image)
    assert not runtime.has_image(database.image)
    assert jobs.database_create(database.id) == "running", _row(Database, database.id).error
    database = _row(Database, database.id)
    assert runtime.has_image(database.image) and database.ready_at
    clock.lap("create")

    # Linked to an app deployed from a git repository: it writes through the variables.
    repo = lab.Repo(infra["git"], f"dbapp{next(_n)}", tmp_path / "work")
    repo.commit(app_files(engine), f"A {engine} app")
    web = make_app(project, "web", git_url=repo.url, git_branch="main", container_port=8000,
                   health_check_path="/")  # fmt: skip
    links.link(web, database)
    db.session.commit()
    first = _deploy(web)
    assert first.status == "running", first.error
    assert _through_traefik(infra, web).text == f"ok {engine}\n"
    _write(infra, web, "one")
    _write(infra, web, "two")
    assert _read(infra, web) == ["one", "two"]
    clock.lap("link, deploy, write")

    # Redeployed: a new container of the app, the data still there.
    second = _deploy(web)
    assert second.status == "running", second.error
    assert _serving_deployments(web) == [second.id]
    assert _read(infra, web) == ["one", "two"]
    clock.lap("redeploy")

    # The password rotated: the old one is refused at once (the app still serving the
    # old variables answers, but its database calls fail) ...
    old = links.password_of(database)
    lifecycle.rotate_password(database)
    assert jobs.database_rotate(database.id) == "running", _row(Database, database.id).error
    database = _row(Database, database.id)
    new = links.password_of(database)
    assert new != old and database.status == "running"
    assert _through_traefik(infra, web).status_code == 200
    assert _through_traefik(infra, web, "/read").status_code == 500
    # ... and the linked app's apply (queued by the rotation) gets the new one.
    queued = _queued(web)
    assert [d.trigger for d in queued] == ["apply"]
    for deployment in queued:
        assert jobs.run_deployment(deployment.id) == "running", _row(Deployment, deployment.id)
    assert _serving_deployments(web) == [queued[-1].id]
    assert _through_traefik(infra, web).text == f"ok {engine}\n"
    assert _read(infra, web) == ["one", "two"]
    _write(infra, web, "three")
    assert _read(infra, web) == ["one", "two", "three"]
    assert _accepted(database, new)
    assert not _accepted(database, old), "the old password still works"
    clock.lap("rotate, apply")

    # Backed up by a policy that targets it; the restore drill compares the counts.
    destination = make_destination(project.team, *s3_bucket)
    policy = make_policy(project.team, destination, None, target_type="database",
                         database_id=database.id)  # fmt: skip
    backup = runs.start_now(policy)
    assert jobs.run_backup(backup.id) == "succeeded", _row(Backup, backup.id).error
    backup = _row(Backup, backup.id)
    table, count = COUNTED[engine]
    assert backup.row_counts == {table: count}
    assert _in_s3(destination, backup)
    drill = restores.start(backup, kind="drill", target_database=None, user_id=None)
    assert jobs.run_restore(drill.id) == "succeeded", _row(Restore, drill.id).error
    drill = _row(Restore, drill.id)
    assert drill.comparison["matches"] and drill.comparison["rows"] == count, drill.comparison
    assert docker_dumps.scratch_left() == []
    clock.lap("backup, drill")

    # Deleted with a final backup: in S3, the container gone, the volume detached.
    container_id, volume_name = database.container_id, database.volume.docker_name
    lifecycle.delete(database, final_backup=True)
    assert jobs.database_delete(database.id, True) == "deleted", _row(Database, database.id).error
    database = _row(Database, database.id)
    assert database.status == "deleted" and database.container_id is None
    final = db.session.scalar(
        select(Backup).where(Backup.policy_id == policy.id, Backup.trigger == "final")
    )
    assert final is not None and final.status == "succeeded", final and final.error
    assert final.row_counts == {table: count} and _in_s3(destination, final)
    assert runtime.state(container_id) == "missing" and runtime.container_of(database.id) is None
    assert runtime_volumes.exists(volume_name)  # kept for its grace period
    volume = db.session.scalar(select(Volume).where(Volume.docker_name == volume_name))
    assert volume.state == "detached" and volume.detached_at and volume.purge_after
    assert links.links_of(web) == [] and links.variables_for(web) == {}
    assert _volume_users(volume_name) == []
    clock.lap("delete")
    print(clock.report())


def _in_s3(destination, backup: Backup) -> bool:
    """The object is in the bucket, of the size recorded."""
    target = runs.s3_target(destination)
    head = storage.client(target).head_object(Bucket=backup.bucket, Key=backup.object_key)
    return backup.bucket == destination.bucket and head["ContentLength"] == backup.size_bytes > 0


def _serving_deployments(web) -> list[int]:
    """The deployments whose containers of ``web`` run now."""
    client = docker.from_env()
    try:
        running = client.containers.list(filters=ours(f"{LABEL_APP}={web.id}"))
        return sorted({int(c.labels[LABEL_DEPLOYMENT]) for c in running})
    finally:
        client.close()


def _volume_users(volume_name: str) -> list[str]:
    client = docker.from_env()
    try:
        return [c.name for c in client.containers.list(all=True, filters={"volume": volume_name})]
    finally:
        client.close()


@pytest.fixture
def s3_bucket(stack, moto):  # noqa: F811
    """A new bucket on moto: (endpoint, name)."""
    name = f"e2e-{time.time_ns() % 10**12}"
    target = storage.S3Target(moto.url, "us-east-1", name, "", S3_KEY, S3_KEY, True, 10)
    storage.client(target).create_bucket(Bucket=name)
    return moto.url, name
