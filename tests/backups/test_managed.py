"""Backups of managed databases and volumes: real engine containers (the test images),
real S3 (moto), the whole pipeline: dump inside the container → SHA-256, local file,
multipart upload, ETag check → destroy → restore → the data is back; drills in a
scratch container; volumes as tar streams; the final backup before a delete."""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import docker
import pytest

from app import crypto
from app.backups import finals, restores, runs, storage
from app.databases import engines, links
from app.extensions import db
from app.models import Backup, Database, Restore, Volume
from app.runtime import dumps as docker_dumps
from app.runtime import installation, volumes
from app.runtime.versions import ensure_network
from tests.backups.conftest import target_of, work
from tests.factories import make_app, make_destination, make_policy, make_project, make_team

pytestmark = pytest.mark.once
IMAGES = {
    "postgres": "slipway-test/postgres:16",
    "mariadb": "slipway-test/mariadb:11",
    "redis": "slipway-test/redis:7",
}


class Engines:
    """Database containers started as the lifecycle starts them (labels, volume, network)."""

    def __init__(self):
        self.docker = docker.from_env()
        self.containers, self.volumes, self.networks = [], [], set()

    def database(self, engine: str, project=None):
        project = project or make_project(make_team())
        password = secrets.token_urlsafe(16)
        d = Database(project_id=project.id, name=f"{engine}{secrets.token_hex(2)}", engine=engine,
                     version=engines.spec(engine).version, image=IMAGES[engine], username="app",
                     database_name="0" if engine == "redis" else "appdb",
                     password=crypto.encrypt(password, context=links.PASSWORD_CONTEXT),
                     status="running")  # fmt: skip
        db.session.add(d)
        db.session.flush()
        vol = Volume(project_id=project.id, database_id=d.id, label="data",
                     mount_path=engines.spec(engine).data_dir)  # fmt: skip
        db.session.add(vol)
        db.session.flush()
        vol.docker_name = volumes.volume_name(vol.id) + f"-t{secrets.token_hex(3)}"
        self.volumes.append(vol.docker_name)
        volumes.ensure(vol.docker_name, volume_id=vol.id, project_id=project.id, database_id=d.id)
        network = self.network(project.id)
        container = self.docker.containers.run(
            IMAGES[engine], command=engines.container_command(d, password), detach=True,
            environment=engines.container_env(d, password), network=network,
            labels={"slipway": "1", volumes.LABEL_DATABASE: str(d.id)} | installation.labels(),
            mounts=volumes.docker_mounts([volumes.Mount(vol.docker_name, vol.mount_path)]),
            name=f"slipway-test-db-{d.id}-{secrets.token_hex(3)}",
        )  # fmt: skip
        self.containers.append(container)
        d.container_id = container.id
        db.session.commit()
        from app.backups.managed import DatabaseSource

        DatabaseSource(d).wait_ready(container.id, timeout=120)
        return d, container

    def network(self, project_id: int) -> str:
        engine = docker_client()
        try:
            name = ensure_network(engine, project_id)
        finally:
            engine.close()
        self.networks.add(name)
        return name

    def close(self) -> None:
        for c in self.containers:
            try:
                c.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        for name in self.volumes:
            try:
                self.docker.volumes.get(name).remove(force=True)
            except docker.errors.NotFound:
                pass
        for name in self.networks:
            for net in self.docker.networks.list(names=[name]):
                net.remove()
        self.docker.close()


def docker_client():
    from app.runtime.engine import client

    return client()


@pytest.fixture
def dbs(app):
    made = Engines()
    yield made
    made.close()
    assert docker_dumps.scratch_left() == []  # every drill removed its scratch container


def sh(container, argv: list[str], password: str = "") -> str:
    env = {"PGPASSWORD": password, "MYSQL_PWD": password, "REDISCLI_AUTH": password}
    code, out = container.exec_run(argv, environment=env)
    assert code == 0, out.decode(errors="replace")
    return out.decode().strip()


def sql(d: Database, container, statement: str) -> str:
    pw = links.password_of(d)
    if d.engine == "postgres":
        argv = ["psql", "-h", "127.0.0.1", "-U", "app", "-d", "appdb", "-At", "-c", statement]
    else:
        argv = ["mariadb", "-uroot", "-N", "-B", "-D", "appdb", "-e", statement]
    return sh(container, argv, pw)


def redis(d: Database, container, *args: str) -> str:
    return sh(container, ["redis-cli", "--no-auth-warning", *args], links.password_of(d))


def _policy(s3, bucket, team_id, **fields):
    from app.models import Team

    team = db.session.get(Team, team_id)
    return make_policy(team, make_destination(team, s3.url, bucket), None, **fields)


def _backup(policy) -> Backup:
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    return db.session.get(Backup, backup.id)


def _verified(backup: Backup) -> None:
    assert backup.status == "succeeded", backup.error
    assert backup.uploaded and backup.etag
    data = Path(backup.local_path).read_bytes()
    assert hashlib.sha256(data).hexdigest() == backup.sha256 == _s3_sha(backup)
    assert backup.size_bytes == len(data) > 0


def _s3_sha(backup: Backup) -> str:
    digest = hashlib.sha256()
    for chunk in storage.iter_object(target_of(backup.policy.destination), backup.object_key):
        digest.update(chunk)
    return digest.hexdigest()


def _restore(backup: Backup, kind: str = "restore", **kwargs) -> Restore:
    restore = restores.start(
        backup, kind=kind, user_id=None, **({"target_database": None} | kwargs)
    )
    work("backup")
    db.session.expire_all()
    return db.session.get(Restore, restore.id)


def _database_policy(s3, bucket, d: Database):
    return _policy(s3, bucket, d.project.team_id, target_type="database", database_id=d.id)


# ---- each engine: in, backup, destroy, restore, drill ------------------------------------


def test_postgres_backup_restore_and_drill(dbs, s3, bucket):
    d, c = dbs.database("postgres")
    sql(d, c, "CREATE TABLE items (id serial PRIMARY KEY, body text NOT NULL)")
    sql(d, c, "INSERT INTO items (body) SELECT md5(g::text) FROM generate_series(1, 5000) g")
    sql(d, c, "CREATE TABLE notes (id int PRIMARY KEY, note text)")
    sql(d, c, "INSERT INTO notes VALUES (1, 'first'), (2, 'second')")
    backup = _backup(_database_policy(s3, bucket, d))
    _verified(backup)
    assert backup.row_counts == {"public.items": 5000, "public.notes": 2}
    assert Path(backup.local_path).read_bytes()[:5] == b"PGDMP"
    sql(d, c, "DROP TABLE items")
    sql(d, c, "DELETE FROM notes")
    restore = _restore(backup)
    assert restore.status == "succeeded", restore.error
    assert restore.target_database_id == d.id
    assert sql(d, c, "SELECT count(*) FROM items") == "5000"
    assert sql(d, c, "SELECT note FROM notes ORDER BY id") == "first\nsecond"
    drill = _restore(backup, kind="drill")
    assert drill.status == "succeeded", (drill.error, drill.log)
    assert drill.comparison["matches"] and drill.comparison["rows"] == 5002
    assert "scratch container" in drill.comparison["scratch"]


def test_mariadb_backup_restore_and_drill(dbs, s3, bucket):
    d, c = dbs.database("mariadb")
    sql(d, c, "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, body text NOT NULL)")
    sql(d, c, "INSERT INTO items (body) SELECT md5(seq) FROM seq_1_to_3000")
    sql(d, c, "CREATE TABLE `odd``name` (id int)")
    sql(d, c, "INSERT INTO `odd``name` VALUES (1), (2), (3)")
    backup = _backup(_database_policy(s3, bucket, d))
    _verified(backup)
    assert backup.row_counts == {"appdb.items": 3000, "appdb.odd`name": 3}
    assert b"CREATE DATABASE" in Path(backup.local_path).read_bytes()[:4000]
    sql(d, c, "DELETE FROM items WHERE id > 10")
    sql(d, c, "DROP TABLE `odd``name`")
    restore = _restore(backup)
    assert restore.status == "succeeded", restore.error
    assert sql(d, c, "SELECT count(*) FROM items") == "3000"
    assert sql(d, c, "SELECT count(*) FROM `odd``name`") == "3"
    drill = _restore(backup, kind="drill")
    assert drill.status == "succeeded", (drill.error, drill.log)
    assert drill.comparison["matches"] and drill.comparison["rows"] == 3003


def test_redis_backup_restore_and_drill(dbs, s3, bucket):
    d, c = dbs.database("redis")
    for i in range(200):
        redis(d, c, "SET", f"key:{i}", f"value {i}")
    redis(d, c, "SELECT", "0")
    sh(c, ["sh", "-c", "redis-cli --no-auth-warning -n 3 SET other yes"], links.password_of(d))
    backup = _backup(_database_policy(s3, bucket, d))
    _verified(backup)
    assert backup.row_counts == {"db0": 200, "db3": 1}
    assert Path(backup.local_path).read_bytes()[:5] == b"REDIS"
    redis(d, c, "FLUSHALL")
    redis(d, c, "SET", "after", "the backup")
    restore = _restore(backup)
    assert restore.status == "succeeded", (restore.error, restore.log)
    c.reload()
    assert c.status == "running"
    assert redis(d, c, "DBSIZE") == "200"
    assert redis(d, c, "GET", "key:7") == "value 7"
    assert redis(d, c, "GET", "after") == ""
    # The append-only file was rewritten from the RDB: a restart keeps the data.
    assert redis(d, c, "CONFIG", "GET", "appendonly").endswith("yes")
    c.restart()
    DatabaseSourceReady(d, c)
    assert redis(d, c, "DBSIZE") == "200"
    drill = _restore(backup, kind="drill")
    assert drill.status == "succeeded", (drill.error, drill.log)
    assert drill.comparison["matches"] and drill.comparison["rows"] == 201


def DatabaseSourceReady(d, c) -> None:  # noqa: N802 - reads as a step
    from app.backups.managed import DatabaseSource

    DatabaseSource(d).wait_ready(c.id, timeout=60)


def test_a_drill_of_a_corrupted_object_fails_with_the_reason(dbs, s3, bucket):
    d, c = dbs.database("redis")
    redis(d, c, "SET", "a", "1")
    backup = _backup(_database_policy(s3, bucket, d))
    _verified(backup)
    Path(backup.local_path).write_bytes(b"REDIS0011 not what was dumped")
    s3c = storage.client(target_of(backup.policy.destination))
    s3c.put_object(Bucket=backup.bucket, Key=backup.object_key, Body=b"corrupted")
    drill = _restore(backup, kind="drill")
    assert drill.status == "failed"
    assert "does not match the recorded" in drill.error and "Refusing" in drill.error
    assert "does NOT match" in drill.log


def test_a_drill_whose_counts_differ_fails(dbs, s3, bucket):
    d, c = dbs.database("redis")
    redis(d, c, "SET", "a", "1")
    backup = _backup(_database_policy(s3, bucket, d))
    backup.row_counts = {"db0": 2}
    db.session.commit()
    drill = _restore(backup, kind="drill")
    assert drill.status == "failed" and "differ" in drill.error
    assert drill.comparison["differences"] == {"db0": [2, 1]}


def test_a_missing_container_fails_the_backup_with_the_reason(dbs, s3, bucket):
    d, c = dbs.database("redis")
    c.remove(force=True)
    backup = _backup(_database_policy(s3, bucket, d))
    assert backup.status == "failed" and "has no container" in backup.error


# ---- volumes ------------------------------------------------------------------------


def _app_with_volume(dbs):
    project = make_project(make_team())
    application = make_app(project)
    vol = Volume(project_id=project.id, application_id=application.id, label="uploads",
                 mount_path="/srv/uploads")  # fmt: skip
    db.session.add(vol)
    db.session.flush()
    vol.docker_name = volumes.volume_name(vol.id) + f"-t{secrets.token_hex(3)}"
    db.session.commit()
    dbs.volumes.append(vol.docker_name)
    volumes.ensure(vol.docker_name, volume_id=vol.id, project_id=project.id,
                   app_id=application.id)  # fmt: skip
    container = dbs.docker.containers.run(
        IMAGES["redis"], command=["sleep", "infinity"], entrypoint=[], detach=True,
        labels={"slipway": "1", "slipway.app": str(application.id)} | installation.labels(),
        mounts=volumes.docker_mounts([volumes.Mount(vol.docker_name, "/srv/uploads")]),
        name=f"slipway-test-app-{application.id}-{secrets.token_hex(3)}",
    )  # fmt: skip
    dbs.containers.append(container)
    return application, vol, container


def test_volume_backup_and_restore_with_the_app_stopped(dbs, s3, bucket):
    application, vol, app_c = _app_with_volume(dbs)
    sh(app_c, ["sh", "-c", "mkdir -p /srv/uploads/a/b && head -c 3000000 /dev/urandom "
               "> /srv/uploads/a/b/big.bin && echo hello > /srv/uploads/note.txt"])  # fmt: skip
    before = sh(app_c, ["sha256sum", "/srv/uploads/a/b/big.bin"])
    started = app_c.attrs["State"]["StartedAt"]
    policy = _policy(s3, bucket, application.project.team_id, target_type="volume",
                     volume_id=vol.id, stop_app=True)  # fmt: skip
    backup = _backup(policy)
    _verified(backup)
    assert backup.row_counts == {"files": 2, "bytes": 3000006}
    app_c.reload()
    assert app_c.status == "running"
    assert app_c.attrs["State"]["StartedAt"] != started  # it was stopped for the copy
    sh(app_c, ["sh", "-c", "rm -rf /srv/uploads/* && echo stray > /srv/uploads/stray"])
    restore = _restore(backup)
    assert restore.status == "succeeded", (restore.error, restore.log)
    app_c.reload()
    assert app_c.status == "running"
    assert sh(app_c, ["sha256sum", "/srv/uploads/a/b/big.bin"]) == before
    assert sh(app_c, ["cat", "/srv/uploads/note.txt"]) == "hello"
    assert sh(app_c, ["ls", "/srv/uploads"]) == "a\nnote.txt"
    drill = _restore(backup, kind="drill")
    assert drill.status == "succeeded" and drill.comparison["matches"], drill.error


def test_stop_app_starts_the_app_again_when_the_backup_fails(dbs, s3, bucket, monkeypatch):
    application, vol, app_c = _app_with_volume(dbs)
    policy = _policy(s3, bucket, application.project.team_id, target_type="volume",
                     volume_id=vol.id, stop_app=True)  # fmt: skip
    seen = {}

    def broken(docker_name, image):
        app_c.reload()
        seen["status"] = app_c.status
        raise docker_dumps.ContainerError("reading volume: the engine broke")

    monkeypatch.setattr(docker_dumps, "volume_archive", broken)
    backup = _backup(policy)
    assert backup.status == "failed" and "the engine broke" in backup.error
    assert seen["status"] == "exited"  # stopped while the copy ran
    app_c.reload()
    assert app_c.status == "running"


# ---- the final backup ----------------------------------------------------------------


def test_final_backup_take(dbs, s3, bucket):
    d, c = dbs.database("redis")
    redis(d, c, "SET", "last", "words")
    with pytest.raises(finals.FinalBackupError) as missing:
        finals.take(d.id)
    assert str(missing.value) == (f"no backup policy covers database {d.name}: add one, "
                                  "or untick the final backup")  # fmt: skip
    off = _database_policy(s3, bucket, d)
    off.enabled = False
    db.session.commit()
    with pytest.raises(finals.FinalBackupError):
        finals.take(d.id)
    _database_policy(s3, bucket, d)
    backup_id = finals.take(d.id)
    backup = db.session.get(Backup, backup_id)
    _verified(backup)
    assert backup.trigger == "final" and backup.row_counts == {"db0": 1}
    c.remove(force=True)
    with pytest.raises(finals.FinalBackupError) as failed:
        finals.take(d.id)
    assert "failed" in str(failed.value) and "has no container" in str(failed.value)


# ---- restore into a new managed database ----------------------------------------------


def test_restore_into_a_new_database_made_by_the_lifecycle(dbs, s3, bucket, monkeypatch):
    """Against the lifecycle's contract (``lifecycle.create`` makes the row and its job
    starts the container): here a stand-in that starts it at once, as the job would."""
    import sys
    import types

    d, c = dbs.database("redis")
    for i in range(50):
        redis(d, c, "SET", f"k{i}", str(i))
    backup = _backup(_database_policy(s3, bucket, d))
    _verified(backup)
    made = {}

    class DatabaseError(ValueError):
        field = "name"

    def create(project, *, name, engine, memory_limit_mb=None, cpu_limit=None, by=None):
        if name == d.name:
            raise DatabaseError(f"database {name} already exists in this project")
        new, container = dbs.database(engine, project)
        new.name = name
        db.session.commit()
        made["id"], made["container"] = new.id, container
        return new

    fake = types.ModuleType("app.databases.lifecycle")
    fake.create, fake.DatabaseError = create, DatabaseError
    monkeypatch.setitem(sys.modules, "app.databases.lifecycle", fake)
    import app.databases as package

    monkeypatch.setattr(package, "lifecycle", fake, raising=False)
    restore = _restore(backup, target_database="copy")
    assert restore.status == "succeeded", (restore.error, restore.log)
    assert restore.target_database_id == made["id"] != d.id
    assert redis(db.session.get(Database, made["id"]), made["container"], "DBSIZE") == "50"
    assert redis(d, c, "DBSIZE") == "50"  # the source is untouched
    again = _restore(backup, target_database=d.name)
    assert again.status == "failed" and "already exists" in again.error
