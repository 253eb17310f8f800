"""Database dump and restore tools: pg_dump, pg_restore, SQLite's online backup API.

No shell and no secret in argv: connection settings, the password included, go to
the tools through ``PG*`` environment variables; the only positional value is a
database name that passed ``names.database_name``.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from app import names

if TYPE_CHECKING:
    import psycopg

# psycopg (22 MiB) is imported where a backup or restore connects, in the work horse:
# the web and worker processes import this module without it (issue 12, light).


class DumpError(Exception):
    """A dump or restore tool failed; the message has the tail of its stderr."""


@dataclass(frozen=True)
class PgConn:
    host: str
    port: int
    user: str
    dbname: str
    password: str | None = None

    @classmethod
    def from_url(cls, url: str, password: str | None = None) -> PgConn:
        """User and password are percent-decoded: ``PGPASSWORD`` wants the password itself."""
        parts = urlsplit(url.replace("postgresql+psycopg://", "postgresql://", 1))
        if password is None and parts.password is not None:
            password = unquote(parts.password)
        return cls(
            host=parts.hostname or "localhost",
            port=parts.port or 5432,
            user=unquote(parts.username or "") or "postgres",
            dbname=names.database_name(parts.path.lstrip("/")),
            password=password,
        )

    def other(self, dbname: str) -> PgConn:
        return replace(self, dbname=names.database_name(dbname))

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env |= {"PGHOST": self.host, "PGPORT": str(self.port), "PGUSER": self.user,
                "PGDATABASE": self.dbname, "PGCONNECT_TIMEOUT": "10"}  # fmt: skip
        if self.password:
            env["PGPASSWORD"] = self.password
        return env

    def connect(self, dbname: str | None = None, **kwargs) -> psycopg.Connection:
        import psycopg

        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=dbname or self.dbname, connect_timeout=10, **kwargs,
        )  # fmt: skip

    def __repr__(self) -> str:
        return f"PgConn({self.user}@{self.host}:{self.port}/{self.dbname})"


def tool(name: str) -> str:
    """pg_dump / pg_restore: on PATH, else Debian's newest versioned directory."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise DumpError(f"{name} is not installed (apt-get install postgresql-client)")


def _tables(cur) -> list[tuple[str, str]]:
    cur.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') "
        "ORDER BY schemaname, tablename"
    )
    return [(s, t) for s, t in cur.fetchall()]


def pg_row_counts(conn: psycopg.Connection) -> dict[str, int]:
    """Exact row counts of every user table, in the connection's current transaction."""
    from psycopg import sql

    counts: dict[str, int] = {}
    with conn.cursor() as cur:
        for schema, table in _tables(cur):
            cur.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(
                sql.Identifier(schema), sql.Identifier(table)))  # fmt: skip
            counts[f"{schema}.{table}"] = cur.fetchone()[0]
    return counts


def _tail(path: Path, limit: int = 1500) -> str:
    try:
        return path.read_text(errors="replace")[-limit:].strip()
    except OSError:
        return ""


@contextmanager
def pg_dump(source: PgConn, workdir: Path) -> Iterator[tuple[object, Future]]:
    """Run ``pg_dump -Fc`` on a snapshot; yields (its stdout, a future of row counts).

    A repeatable-read transaction exports its snapshot; pg_dump dumps that snapshot
    and the same transaction counts the rows meanwhile, so the counts describe
    exactly what was dumped.
    """
    conn = source.connect(autocommit=False)
    stderr_path = workdir / f".pg_dump-{os.getpid()}-{id(conn)}.err"
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="row-counts")
    proc = None
    try:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        snapshot = conn.execute("SELECT pg_export_snapshot()").fetchone()[0]
        with open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                [tool("pg_dump"), "--format=custom", "--no-password", f"--snapshot={snapshot}"],
                stdout=subprocess.PIPE, stderr=err, stdin=subprocess.DEVNULL,
                env=source.env(), bufsize=0,
            )  # fmt: skip
        counts = pool.submit(pg_row_counts, conn)
        yield proc.stdout, counts
        proc.stdout.close()
        if proc.wait() != 0:
            raise DumpError(f"pg_dump exited with {proc.returncode}: {_tail(stderr_path)}")
        counts.result()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        pool.shutdown(wait=True)
        conn.close()
        stderr_path.unlink(missing_ok=True)


def sqlite_copy(source_path: str, dest: Path) -> dict[str, int]:
    """Copy a live SQLite database with its online backup API; returns row counts."""
    src = sqlite3.connect(f"file:{source_path}?mode=ro", uri=True)
    out = sqlite3.connect(dest)
    try:
        src.backup(out, pages=4096)
    finally:
        src.close()
    try:
        return sqlite_row_counts(out)
    finally:
        out.close()


def sqlite_row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    tables = [r[0] for r in conn.execute(
        "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name")]  # fmt: skip
    return {
        f"main.{t}": conn.execute(f'SELECT count(*) FROM "{t.replace(chr(34), "")}"').fetchone()[0]
        for t in tables
    }


def pg_restore(target: PgConn, dump: Path, *, clean: bool, progress: Callable[[str], None]) -> None:
    """``pg_restore`` a custom-format dump into ``target``; each verbose line to ``progress``."""
    argv = [tool("pg_restore"), "--verbose", "--no-owner", "--no-privileges", "--no-password",
            f"--dbname={names.database_name(target.dbname)}"]  # fmt: skip
    if clean:
        argv += ["--clean", "--if-exists"]
    argv += ["--", str(dump)]
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
        env=target.env(), text=True, errors="replace",
    )  # fmt: skip
    tail: list[str] = []
    for line in proc.stderr:
        line = line.rstrip()
        tail = (tail + [line])[-20:]
        progress(line)
    if proc.wait() != 0:
        raise DumpError(f"pg_restore exited with {proc.returncode}: " + "\n".join(tail[-8:]))


def create_database(server: PgConn, name: str) -> None:
    from psycopg import sql

    with server.connect(autocommit=True) as conn:
        conn.execute(
            sql.SQL("CREATE DATABASE {}").format(sql.Identifier(names.database_name(name)))
        )


def drop_database(server: PgConn, name: str) -> None:
    from psycopg import sql

    with server.connect(autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(names.database_name(name))))  # fmt: skip


def database_exists(server: PgConn, name: str) -> bool:
    with server.connect(autocommit=True) as conn:
        return bool(
            conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        )


def scratch_file(directory: Path, suffix: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=directory, suffix=suffix)
    os.close(fd)
    return Path(name)
