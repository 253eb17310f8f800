"""What Slipway knows of each database engine, in one place: its image setting, the
official image's environment contract, where it keeps its data, how to ask whether it
accepts connections, and the variables a linked app gets.

Nothing here talks to Docker: ``app.runtime.databases`` starts the container from an
:class:`EngineSpec`'s facts, the backups run its dump argv inside the container.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

from app.models import Database, Engine


@dataclass(frozen=True)
class EngineSpec:
    engine: Engine
    label: str  # "PostgreSQL 16"
    version: str  # the major version the default image carries
    setting: str  # the config key of its image (SLIPWAY_IMAGE_POSTGRES)
    port: int
    data_dir: str  # where the volume is mounted in the container
    default_user: str
    url_scheme: str
    has_database: bool = True  # Redis has numbered databases, no user-named one


SPECS: dict[str, EngineSpec] = {
    Engine.postgres.value: EngineSpec(
        Engine.postgres, "PostgreSQL 16", "16", "IMAGE_POSTGRES", 5432,
        "/var/lib/postgresql/data", "app", "postgresql",
    ),
    Engine.mariadb.value: EngineSpec(
        Engine.mariadb, "MariaDB 11", "11", "IMAGE_MARIADB", 3306,
        "/var/lib/mysql", "app", "mysql",
    ),
    Engine.redis.value: EngineSpec(
        Engine.redis, "Redis 7", "7", "IMAGE_REDIS", 6379,
        "/data", "default", "redis", has_database=False,
    ),
}  # fmt: skip

CHOICES = [(key, spec.label) for key, spec in SPECS.items()]


def spec(engine: str) -> EngineSpec:
    return SPECS[engine]


def image_for(engine: str, config) -> str:
    """The image reference a new database of ``engine`` starts from (the setting)."""
    return config[SPECS[engine].setting]


def container_env(database: Database, password: str) -> dict[str, str]:
    """The official image's environment contract for a first start (and every start:
    the images ignore it once their data directory is initialised)."""
    if database.engine == Engine.postgres.value:
        return {
            "POSTGRES_USER": database.username,
            "POSTGRES_PASSWORD": password,
            "POSTGRES_DB": database.database_name,
            "PGDATA": SPECS["postgres"].data_dir,
        }
    if database.engine == Engine.mariadb.value:
        return {
            "MARIADB_ROOT_PASSWORD": password,
            "MARIADB_USER": database.username,
            "MARIADB_PASSWORD": password,
            "MARIADB_DATABASE": database.database_name,
        }
    return {}  # Redis takes its password as an argument


def container_command(database: Database, password: str) -> list[str] | None:
    """The command, where the engine takes its settings as arguments (Redis). The
    password is in the container's config, never in a process list Slipway prints."""
    if database.engine == Engine.redis.value:
        # RDB snapshots and an append-only file for durability. A backup reads the RDB
        # as a replica would (redis-cli --rdb): no replica is worth waiting for (the
        # default delay of 5 s, for more replicas to share the transfer, made each backup
        # 5 s longer).
        return ["redis-server", "--requirepass", password, "--appendonly", "yes",
                "--save", "60", "1", "--repl-diskless-sync-delay", "0",
                "--dir", SPECS["redis"].data_dir]  # fmt: skip
    return None


def ready_argv(database: Database) -> list[str]:
    """Run inside the container: exit 0 once the engine accepts a connection on its
    TCP port (not only its socket: a first-start image runs a local-only server first).
    The password reaches the tool through the container's environment."""
    if database.engine == Engine.postgres.value:
        return ["pg_isready", "-q", "-h", "127.0.0.1", "-p", "5432",
                "-U", database.username, "-d", database.database_name]  # fmt: skip
    if database.engine == Engine.mariadb.value:
        return ["sh", "-c", 'mariadb-admin --protocol=tcp -h127.0.0.1 -uroot '
                '-p"$MARIADB_ROOT_PASSWORD" ping']  # fmt: skip
    return ["sh", "-c", 'redis-cli -h 127.0.0.1 --no-auth-warning -a "$REDIS_PASSWORD" ping '
            '| grep -q PONG']  # fmt: skip


def _url(scheme: str, userinfo: str, host: str, port: int, path: str) -> str:
    """A connection URL to the database's alias (a name on the project's network)."""
    return f"{scheme}://{userinfo}@{host}:{port}/{path}"


def variables(database: Database, password: str, prefix: str = "") -> dict[str, str]:
    """The variables a linked app gets: ``DATABASE_URL`` (``REDIS_URL`` for Redis) and
    the engine's usual ones, each under ``prefix`` (``ANALYTICS_DATABASE_URL``)."""
    host, port = database.alias, SPECS[database.engine].port
    user, name = database.username, database.database_name
    secret = quote(password, safe="")
    if database.engine == Engine.postgres.value:
        url = _url("postgresql", f"{quote(user, safe='')}:{secret}", host, port, name)
        values = {"DATABASE_URL": url, "PGHOST": host, "PGPORT": str(port),
                  "PGUSER": user, "PGPASSWORD": password, "PGDATABASE": name}  # fmt: skip
    elif database.engine == Engine.mariadb.value:
        url = _url("mysql", f"{quote(user, safe='')}:{secret}", host, port, name)
        values = {"DATABASE_URL": url, "MYSQL_HOST": host, "MYSQL_PORT": str(port),
                  "MYSQL_USER": user, "MYSQL_PASSWORD": password,
                  "MYSQL_DATABASE": name}  # fmt: skip
    else:
        url = _url("redis", f":{secret}", host, port, "0")
        values = {"REDIS_URL": url, "REDIS_HOST": host, "REDIS_PORT": str(port),
                  "REDIS_PASSWORD": password}  # fmt: skip
    lead = f"{prefix}_" if prefix else ""
    return {f"{lead}{key}": value for key, value in values.items()}


# The variables that carry the password: masked on pages, redacted from logs.
SECRET_KEYS = frozenset({"DATABASE_URL", "PGPASSWORD", "MYSQL_PASSWORD", "REDIS_URL",
                         "REDIS_PASSWORD"})  # fmt: skip


def is_secret(key: str) -> bool:
    """Whether a linked variable (under any prefix) carries the password."""
    return any(key == name or key.endswith(f"_{name}") for name in SECRET_KEYS)
