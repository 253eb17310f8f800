"""Backups of managed databases (PostgreSQL, MariaDB, Redis) and of volumes.

Each dump runs inside the database's own container (``app.runtime.dumps``) and is
streamed out into the run's pipeline (SHA-256, local file, multipart S3 upload,
ETag check, retention) like any other dump. The password goes to the tools through
the exec's environment (``PGPASSWORD``, ``MYSQL_PWD``, ``REDISCLI_AUTH``); argv
holds only fixed options and names Slipway generated.

Row counts, for the drills: PostgreSQL counts in the snapshot pg_dump dumps (a
repeatable-read transaction on the container's address exports it); MariaDB counts
each table with ``COUNT(*)`` just before the dump (its own transaction); Redis
records the keys of each numbered database (``INFO keyspace``) just before the RDB
transfer. A volume records its files and bytes, read from the tar that was stored.
"""

from __future__ import annotations

import logging
import re
import secrets
import tarfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from flask import current_app

from app.backups import dumps
from app.databases import engines, links
from app.extensions import db
from app.models import BackupPolicy, Database, Engine, TargetType, Volume
from app.runtime import dumps as docker_dumps
from app.runtime.engine import ContainerError

log = logging.getLogger("slipway.backups")
RESTORE_FILE = "slipway-restore"  # in the container's /tmp while a restore reads it
# Exact row counts of every user table, in one statement (psql inside a container).
PG_COUNTS = (
    "SELECT schemaname || '.' || tablename, (xpath('/row/c/text()', query_to_xml(format("
    "'SELECT count(*) AS c FROM %I.%I', schemaname, tablename), false, true, '')))[1]::text "
    "FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1"
)
MARIADB_TABLES = (
    "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() "
    "AND table_type = 'BASE TABLE' ORDER BY table_name"
)

__all__ = ["ContainerError", "DatabaseSource", "Source", "VolumeSource", "source_for"]


class SourceError(Exception):
    pass


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


class DatabaseSource:
    """A managed database to dump or restore, through its container."""

    def __init__(self, database: Database):
        self.database = database
        self.engine = database.engine
        self.suffix = {"postgres": ".dump", "mariadb": ".sql", "redis": ".rdb"}[self.engine]
        self._password: str | None = None

    @property
    def password(self) -> str:
        if self._password is None:
            self._password = links.password_of(self.database)
        return self._password

    def container(self) -> str:
        return docker_dumps.database_container(self.database.id, self.database.container_id)

    def env(self) -> dict[str, str]:
        return {"PGPASSWORD": self.password, "MYSQL_PWD": self.password,
                "REDISCLI_AUTH": self.password, "REDIS_PASSWORD": self.password}  # fmt: skip

    def __repr__(self) -> str:
        return f"DatabaseSource({self.engine} {self.database.name})"

    # ---- dump ----------------------------------------------------------------

    @contextmanager
    def dump(self) -> Iterator[tuple[object, Callable[[], dict[str, int]]]]:
        """Yields (the dump's byte stream, a callable giving its counts)."""
        cid = self.container()
        if self.engine == Engine.postgres.value:
            with self._pg_dump(cid) as pair:
                yield pair
            return
        counts = self.counts(cid)
        if self.engine == Engine.mariadb.value:
            argv = ["mariadb-dump", "-uroot", "--single-transaction", "--routines", "--triggers",
                    "--hex-blob", "--databases", self.database.database_name]  # fmt: skip
        else:
            argv = ["redis-cli", "--no-auth-warning", "--rdb", "-"]
        with docker_dumps.exec_out(cid, argv, self.env(), what=argv[0]) as stream:
            if self.engine == Engine.redis.value:
                stream = _WithoutEofMark(stream)
            yield stream, lambda: counts

    @contextmanager
    def _pg_dump(self, cid: str):
        import psycopg

        d = self.database
        conn = psycopg.connect(host=docker_dumps.container_ip(cid), port=5432, user=d.username,
                               password=self.password, dbname=d.database_name,
                               connect_timeout=10, autocommit=False)  # fmt: skip
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-counts")
        try:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
            argv = ["pg_dump", "--format=custom", "--no-password", f"--snapshot={snapshot}",
                    "-h", "127.0.0.1", "-U", d.username, "-d", d.database_name]  # fmt: skip
            with docker_dumps.exec_out(cid, argv, self.env(), what="pg_dump") as stream:
                counts = pool.submit(dumps.pg_row_counts, conn)
                yield stream, counts.result
            counts.result()
        finally:
            pool.shutdown(wait=True)
            conn.close()

    def counts(self, cid: str) -> dict[str, int]:
        """Exact counts now, read inside the container: rows per table, or keys per db."""
        env, name = self.env(), self.database.database_name
        if self.engine == Engine.postgres.value:
            argv = ["psql", "-h", "127.0.0.1", "-U", self.database.username, "-d", name,
                    "-At", "-F", "\t", "-c", PG_COUNTS]  # fmt: skip
            out = docker_dumps.exec_text(cid, argv, env, "psql")
            return {t: int(c) for t, c in (line.split("\t") for line in out.splitlines() if line)}
        if self.engine == Engine.mariadb.value:
            base = ["mariadb", "-uroot", "-N", "-B", "-D", name, "-e"]
            tables = docker_dumps.exec_text(cid, [*base, MARIADB_TABLES], env, "mariadb").split()
            if not tables:
                return {}
            query = "SELECT " + ", ".join(f"(SELECT COUNT(*) FROM {_ident(t)})" for t in tables)
            values = docker_dumps.exec_text(cid, [*base, query], env, "mariadb").split()
            return {f"{name}.{t}": int(v) for t, v in zip(tables, values, strict=True)}
        out = docker_dumps.exec_text(cid, ["redis-cli", "--no-auth-warning", "INFO", "keyspace"],
                                     env, "redis-cli")  # fmt: skip
        counts = {}
        for line in out.splitlines():
            if line.startswith("db") and ":keys=" in line:
                key, rest = line.strip().split(":", 1)
                counts[key] = int(rest.split(",")[0].split("=")[1])
        return counts

    # ---- restore ----------------------------------------------------------------

    def restore(self, dump: Path, note: Callable[[str], None], cid: str | None = None,
                *, clean: bool = True) -> None:  # fmt: skip
        """Restore ``dump`` into this database's container (or ``cid``, a scratch one)."""
        cid = cid or self.container()
        d, env = self.database, self.env()
        if self.engine == Engine.postgres.value:
            inside = f"/tmp/{RESTORE_FILE}-{secrets.token_hex(4)}.dump"
            docker_dumps.put_file(cid, "/tmp", inside.rsplit("/", 1)[1], dump, mode=0o644)
            argv = ["pg_restore", "--no-owner", "--no-privileges", "--no-password",
                    "-h", "127.0.0.1", "-U", d.username, "-d", d.database_name]  # fmt: skip
            if clean:
                argv += ["--clean", "--if-exists"]
            note("pg_restore inside the database's container")
            try:
                docker_dumps.exec_text(cid, [*argv, inside], env, "pg_restore")
            finally:
                docker_dumps.exec_text(cid, ["rm", "-f", inside], {}, "rm")
        elif self.engine == Engine.mariadb.value:
            note("mariadb reads the dump inside the database's container")
            docker_dumps.exec_stdin(cid, ["mariadb", "-uroot"], dump, env, "mariadb")
        else:
            note("stopping Redis, putting dump.rdb in its volume, starting it")
            docker_dumps.redis_restore(cid, dump, engines.spec("redis").data_dir, self.wait_ready)

    def wait_ready(self, cid: str, timeout: float | None = None) -> None:
        timeout = timeout or current_app.config.get("DATABASE_READY_TIMEOUT_SECONDS", 120)
        docker_dumps.wait_exec_ok(cid, engines.ready_argv(self.database), self.env(), timeout)

    # ---- drill ------------------------------------------------------------------------

    def drill(self, dump: Path, note: Callable[[str], None]) -> tuple[dict[str, int], str]:
        """Restore into a scratch container of the same image on a scratch network
        (removed after, whatever happens); returns its counts and its name."""
        d = self.database
        scratch_pw = secrets.token_urlsafe(18)
        scratch = _Scratch(d, scratch_pw)
        env = engines.container_env(d, scratch_pw)
        files: tuple = ()
        if self.engine == Engine.redis.value:
            command = ["redis-server", "--requirepass", scratch_pw, "--appendonly", "no",
                       "--dir", "/data"]  # fmt: skip
            files = (("/data", "dump.rdb", dump),)
        else:
            command = None
        note(f"starting a scratch container of {d.image}")
        with docker_dumps.scratch(d.image, env=env, command=command, files=files) as cid:
            scratch.wait_ready(cid)
            if self.engine != Engine.redis.value:
                note("restoring into the scratch container")
                scratch.restore(dump, note, cid, clean=False)
            counts = scratch.counts(cid)
        note("scratch container removed")
        return counts, f"scratch container of {d.image}"


class _Scratch(DatabaseSource):
    """The database's facts with the scratch container's password."""

    def __init__(self, database: Database, password: str):
        super().__init__(database)
        self._password = password


class _WithoutEofMark:
    """``redis-cli --rdb -`` of a diskless-sync server writes the transfer's 40-byte EOF
    mark after the RDB when its output is a pipe (it truncates a file, cannot a pipe).
    The last 40 bytes are held back; at the end, the size redis-cli reports
    ("Transfer finished with success after N bytes") says whether they are the mark."""

    MARK = 40

    def __init__(self, stream):
        self.stream, self.held, self.total, self.done = stream, b"", 0, False

    def read(self, n: int = 1 << 20) -> bytes:
        while not self.done:
            chunk = self.stream.read(n)
            if not chunk:
                return self._end()
            self.total += len(chunk)
            data = self.held + chunk
            out, self.held = data[: -self.MARK], data[-self.MARK :]
            if out:
                return out
        return b""

    def _end(self) -> bytes:
        self.done = True
        found = re.search(r"after (\d+) bytes", self.stream.stderr())
        if found is None:
            raise dumps.DumpError(f"redis-cli did not finish the transfer: {self.stream.stderr()}")
        size = int(found.group(1))
        if self.total == size:
            return self.held
        if self.total - size == len(self.held) == self.MARK:
            return b""
        raise dumps.DumpError(f"redis-cli sent {self.total} bytes, reported {size}")


class VolumeSource:
    """A volume, as a tar stream read through a helper container."""

    suffix = ".tar"

    def __init__(self, volume: Volume, stop_app: bool):
        self.volume, self.stop_app = volume, stop_app

    def __repr__(self) -> str:
        return f"VolumeSource({self.volume.docker_name})"

    def _image(self) -> str:
        return docker_dumps.volume_image(self.volume.docker_name,
                                         current_app.config["IMAGE_REDIS"])  # fmt: skip

    @contextmanager
    def _app_stopped(self):
        stopped: list[str] = []
        if self.stop_app and self.volume.application_id:
            stopped = docker_dumps.app_containers(self.volume.application_id)
        try:
            if stopped:
                log.info("volume %s: stopping %d container(s)", self.volume.id, len(stopped))
                docker_dumps.stop(stopped)
            yield
        finally:
            errors = docker_dumps.start(stopped) if stopped else []
            if errors:
                raise SourceError("the app's containers did not all start again: "
                                  + "; ".join(errors))  # fmt: skip

    @contextmanager
    def dump(self):
        image = self._image()
        with self._app_stopped(), docker_dumps.volume_archive(self.volume.docker_name,
                                                              image) as stream:  # fmt: skip
            yield stream, dict  # the run counts the stored tar's entries (tar_counts)

    def restore(self, archive: Path, note: Callable[[str], None]) -> None:
        note(f"replacing the content of volume {self.volume.label}")
        with self._app_stopped():
            docker_dumps.volume_restore(self.volume.docker_name, self._image(), archive)

    def drill(self, archive: Path, note: Callable[[str], None]) -> tuple[dict[str, int], str]:
        note("reading every entry of the archive")
        return tar_counts(archive), "the archive"


def tar_counts(path: Path) -> dict[str, int]:
    files = size = 0
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if member.isfile():
                files += 1
                size += member.size
    return {"files": files, "bytes": size}


def source_for(policy: BackupPolicy) -> DatabaseSource | VolumeSource:
    """The managed database or volume a policy targets (the team's own, live)."""
    if policy.target_type == TargetType.database.value:
        database = db.session.get(Database, policy.database_id or 0)
        if database is None or database.project.team_id != policy.team_id:
            raise SourceError(f"policy {policy.name}: its database is gone")
        if database.status == "deleted":
            raise SourceError(f"database {database.name} is deleted")
        return DatabaseSource(database)
    volume = db.session.get(Volume, policy.volume_id or 0)
    if (
        volume is None
        or volume.project is None
        or volume.project.team_id != policy.team_id
        or not volume.docker_name
    ):
        raise SourceError(f"policy {policy.name}: its volume is gone")
    if volume.state == "purged":
        raise SourceError(f"volume {volume.label} was purged")
    return VolumeSource(volume, policy.stop_app)


Source = DatabaseSource | VolumeSource
