"""Restores and restore drills (in the worker).

A restore gets the backup's bytes (the local copy if its SHA-256 still matches,
else the S3 object, whose SHA-256 must match too) before it touches any
database, then ``pg_restore --clean --if-exists`` into the backup's own
database, or into a new one. A drill restores the latest backup into a scratch
database, compares its row counts with those recorded at dump time, and drops it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from pathlib import Path

from flask import current_app
from sqlalchemy import select

from app import audit, crypto, notify
from app.backups import dumps, managed, runs, storage, targets
from app.extensions import db, queue
from app.models import (
    Backup,
    BackupPolicy,
    BackupStatus,
    NotificationEvent,
    Restore,
    TargetType,
)
from app.models.base import utcnow

log = logging.getLogger("slipway.restores")


class RestoreError(Exception):
    pass


def start(backup: Backup, *, kind: str, target_database: str | None, user_id: int | None):
    """Insert a queued restore (or drill) and enqueue its id; a restore is audited."""
    restore = Restore(team_id=backup.team_id, backup_id=backup.id, kind=kind,
                      target_database=target_database, user_id=user_id)  # fmt: skip
    db.session.add(restore)
    if kind == "restore":
        audit.record(audit.Action.BACKUP_RESTORE_STARTED, team_id=backup.team_id, target=backup,
                     user_id=user_id, into=target_database or "same database")  # fmt: skip
    elif user_id is not None:  # a drill someone started (the monthly ones are the scheduler's)
        audit.record(audit.Action.BACKUP_DRILL_STARTED, team_id=backup.team_id, target=backup,
                     user_id=user_id)  # fmt: skip
    db.session.commit()
    queue("backup").enqueue("app.jobs.run_restore", restore.id, job_id=f"restore-{restore.id}",
                            failure_ttl=86400)  # fmt: skip
    return restore


def start_monthly_drills() -> int:
    """One drill per enabled policy that has a good backup (the scheduler's monthly job)."""
    count = 0
    for policy in db.session.scalars(select(BackupPolicy).where(BackupPolicy.enabled)):
        latest = runs.latest_good(policy.id)
        if latest is not None:
            start(latest, kind="drill", target_database=None, user_id=None)
            count += 1
    return count


def secrets_hex() -> str:
    import secrets as random_source

    return random_source.token_hex(4)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Restore:
    def __init__(self, restore: Restore):
        self.r, self.backup = restore, restore.backup
        self.policy = self.backup.policy
        self.fetched: Path | None = None
        self._last_commit = 0.0

    def note(self, line: str, *, commit: bool = False) -> None:
        self.r.note(line[:300])
        now = time.monotonic()
        if commit or now - self._last_commit > 1:  # progress visible without a commit per line
            db.session.commit()
            self._last_commit = now

    def fetch(self) -> Path:
        """A verified copy of the backup's bytes; nothing is touched before this passes."""
        b = self.backup
        if b.local_path and Path(b.local_path).exists():
            self.note(f"checking the local copy {Path(b.local_path).name}", commit=True)
            if sha256_of(Path(b.local_path)) == b.sha256:
                self.note("SHA-256 matches", commit=True)
                return Path(b.local_path)
            self.note("the local copy does NOT match its SHA-256; not using it", commit=True)
        if not b.uploaded:
            raise RestoreError("no intact copy: the local file is missing or corrupted and "
                               "the backup is not in S3. Refusing to restore.")  # fmt: skip
        self.fetched = dumps.scratch_file(Path(current_app.config["BACKUPS_DIR"]), ".restore")
        self.note(f"downloading s3://{b.bucket}/{b.object_key}", commit=True)
        with open(self.fetched, "wb") as out:
            digest = storage.download(targets.s3_target(self.policy.destination), b.object_key, out)
        if digest != b.sha256:
            raise RestoreError(f"the downloaded object's SHA-256 {digest} does not match the "
                               f"recorded {b.sha256}. Refusing to restore.")  # fmt: skip
        self.note("downloaded; SHA-256 matches", commit=True)
        return self.fetched

    def execute(self) -> None:
        r = self.r
        r.status, r.started_at = BackupStatus.running.value, utcnow()
        db.session.commit()
        began = time.monotonic()
        try:
            source = runs.source_of(self.policy)
            dump = self.fetch()
            if isinstance(source, managed.DatabaseSource | managed.VolumeSource):
                self._managed(source, dump)
            elif isinstance(source, str):
                self._sqlite(dump)
            else:
                self._postgres(source, dump)
        except (RestoreError, dumps.DumpError, storage.StorageError, runs.BackupError,
                crypto.SecretError, OSError, managed.ContainerError,
                managed.SourceError) as exc:  # fmt: skip
            r.status, r.error = BackupStatus.failed.value, str(exc)[:2000]
            self.note(f"failed: {str(exc)[:200]}")
        except Exception as exc:  # noqa: BLE001 - psycopg errors and the like: the row says so
            r.status, r.error = BackupStatus.failed.value, f"{type(exc).__name__}: {exc}"[:2000]
        else:
            if r.status == BackupStatus.running.value:
                r.status = BackupStatus.succeeded.value
                self.note("done")
        finally:
            if self.fetched is not None:
                self.fetched.unlink(missing_ok=True)
        r.finished_at = utcnow()
        r.duration_seconds = round(time.monotonic() - began, 3)
        db.session.commit()

    def _postgres(self, server: dumps.PgConn, dump: Path) -> None:
        r = self.r
        if r.kind == "drill":
            # Unique per run: two installations may share a server, ids may repeat.
            scratch = f"slipway_drill_{r.id}_{secrets_hex()}"
            self.note(f"creating the scratch database {scratch}", commit=True)
            dumps.create_database(server, scratch)
            try:
                dumps.pg_restore(server.other(scratch), dump, clean=False, progress=self.note)
                with server.other(scratch).connect() as conn:
                    self._compare(dumps.pg_row_counts(conn))
                r.comparison = {**r.comparison, "scratch": scratch}
            finally:
                dumps.drop_database(server, scratch)
                self.note(f"dropped {scratch}")
            return
        if r.target_database:
            if dumps.database_exists(server, r.target_database):
                raise RestoreError(f"database {r.target_database} already exists; "
                                   "choose a new name.")  # fmt: skip
            self.note(f"creating database {r.target_database}", commit=True)
            dumps.create_database(server, r.target_database)
            dumps.pg_restore(server.other(r.target_database), dump, clean=False,
                             progress=self.note)  # fmt: skip
            return
        if self.policy.target_type == TargetType.slipway.value:
            raise RestoreError("Slipway's own database is not restored over itself while it "
                               "runs; restore into a new database instead.")  # fmt: skip
        self.note(f"restoring into {server.dbname} (--clean --if-exists)", commit=True)
        dumps.pg_restore(server, dump, clean=True, progress=self.note)

    def _managed(self, source, dump: Path) -> None:
        """A managed database or volume: drill in a scratch container, restore into
        the same one, or into a new managed database of the same engine."""
        r = self.r
        if r.kind == "drill":
            counts, where = source.drill(dump, self.note)
            self._compare(counts)
            r.comparison = {**r.comparison, "scratch": where}
            return
        if r.target_database:
            if not isinstance(source, managed.DatabaseSource):
                raise RestoreError("a volume is restored into itself only")
            source = self._new_database(source)
        else:
            r.target_database_id = getattr(getattr(source, "database", None), "id", None)
        self.note("restoring", commit=True)
        source.restore(dump, self.note)

    def _new_database(self, source: managed.DatabaseSource) -> managed.DatabaseSource:
        """A new managed database of the same engine (the lifecycle makes it), once running."""
        from app.databases import lifecycle  # the lifecycle's own module (issue 16, B)

        old = source.database
        try:
            new = lifecycle.create(
                old.project,
                name=self.r.target_database,
                engine=old.engine,
                memory_limit_mb=old.memory_limit_mb,
                cpu_limit=old.cpu_limit,
            )
        except lifecycle.DatabaseError as exc:
            raise RestoreError(str(exc)) from None
        self.r.target_database_id = new.id
        self.note(f"creating database {new.name}; waiting for it to run", commit=True)
        deadline = time.monotonic() + current_app.config.get("DATABASE_READY_TIMEOUT_SECONDS", 120)
        while True:
            db.session.refresh(new)
            if new.status == "running":
                break
            if new.status == "failed" or time.monotonic() > deadline:
                raise RestoreError(f"database {new.name} did not start: {new.error or new.status}")
            time.sleep(1)
        fresh = managed.DatabaseSource(new)
        fresh.wait_ready(fresh.container())
        return fresh

    def _sqlite(self, dump: Path) -> None:
        import sqlite3

        r = self.r
        if r.kind != "drill" and not r.target_database:
            raise RestoreError("Slipway's own database is not restored over itself while it "
                               "runs; restore into a new database instead.")  # fmt: skip
        name = r.target_database or f"drill_{r.id}"
        out = Path(current_app.config["BACKUPS_DIR"]) / "restored" / f"{name}.sqlite3"
        out.parent.mkdir(parents=True, exist_ok=True)
        if out.exists():
            raise RestoreError(f"{out.name} already exists; choose a new name.")
        shutil.copyfile(dump, out)
        self.note(f"restored to {out}")
        if r.kind == "drill":
            try:
                with sqlite3.connect(out) as conn:
                    self._compare(dumps.sqlite_row_counts(conn))
            finally:
                out.unlink(missing_ok=True)

    def _compare(self, counts: dict[str, int]) -> None:
        expected = self.backup.row_counts or {}
        diff = {t: [expected.get(t), counts.get(t)] for t in set(expected) | set(counts)
                if expected.get(t) != counts.get(t)}  # fmt: skip
        self.r.comparison = {"tables": len(expected), "rows": sum(expected.values()),
                             "matches": not diff, "differences": diff}  # fmt: skip
        if diff:
            self.r.status, self.r.error = (
                BackupStatus.failed.value,
                (f"{len(diff)} table(s) differ from the source at dump time"),
            )
        self.note(f"compared {len(expected)} tables: {'match' if not diff else 'DIFFER'}")


def run(restore_id: int) -> str:
    """Run one restore or drill (in the worker); returns its final status."""
    restore = db.session.get(Restore, restore_id)
    if restore is None or restore.status != BackupStatus.queued.value:
        return restore.status if restore else "missing"
    _Restore(restore).execute()
    if restore.kind == "drill" and restore.status == BackupStatus.failed.value:
        notify.event(restore.team_id, NotificationEvent.drill_failed, restore.id)
    return restore.status
