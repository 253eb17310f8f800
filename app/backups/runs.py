"""Backups: where they go, what they read, the backup run itself and retention.

A run (in the worker) streams the dump through a SHA-256 into a local file and,
at the same time, a multipart S3 upload; it verifies the object
(:func:`checks.verify`) before the backup counts. S3 trouble keeps the local
file and ends the row ``failed`` with the reason; an object that fails its
check is kept too (it may be right), and the reason names it. A heartbeat key tells the reaper the
run is alive; a run whose worker died is marked failed and its upload aborted.
"""

from __future__ import annotations

import hashlib
import logging
import time
from datetime import timedelta
from pathlib import Path

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app import audit, crypto, names, notify, outbound
from app.backups import checks, dumps, managed, retention, storage
from app.backups.targets import s3_target
from app.extensions import db, queue, redis
from app.heartbeat import Heartbeat
from app.models import (
    Backup,
    BackupPolicy,
    BackupStatus,
    NotificationEvent,
    TargetType,
)
from app.models.base import utcnow

log = logging.getLogger("slipway.backups")
ALIVE_KEY = "slipway:backup-alive:{}"
DB_PASSWORD = "backup-database-password"
READ_CHUNK = 1 << 20


class BackupError(Exception):
    pass


# ---- targets --------------------------------------------------------------


def source_of(policy: BackupPolicy) -> dumps.PgConn | str | managed.Source:
    """A PostgreSQL connection to dump, the path of Slipway's SQLite file, or a managed
    database or volume (dumped through its container)."""
    if policy.target_type in (TargetType.database.value, TargetType.volume.value):
        try:
            return managed.source_for(policy)
        except managed.SourceError as exc:
            raise BackupError(str(exc)) from None
    if policy.target_type == TargetType.slipway.value:
        uri = current_app.config["SQLALCHEMY_DATABASE_URI"]
        if uri.startswith("sqlite:///"):
            return uri[len("sqlite:///") :]
        return dumps.PgConn.from_url(uri)
    password = None
    if policy.database_password:
        password = crypto.decrypt_stored(
            policy.database_password, context=DB_PASSWORD, what="the database password",
            remedy=f"enter the URL again in policy {policy.name}",
        )  # fmt: skip
    conn = dumps.PgConn.from_url(policy.database_url, password)
    try:
        outbound.check_host(conn.host)
    except outbound.HostRefused as exc:
        raise BackupError(str(exc)) from None
    return conn


def policy_dir(policy: BackupPolicy) -> Path:
    path = Path(current_app.config["BACKUPS_DIR"]) / f"team-{policy.team_id}" / f"p{policy.id}"
    path.mkdir(parents=True, exist_ok=True)
    return path


# ---- starting -------------------------------------------------------------


def start_now(policy: BackupPolicy) -> Backup:
    """Insert a queued manual backup (audited) and enqueue its id."""
    backup = Backup(team_id=policy.team_id, policy_id=policy.id, trigger="manual")
    db.session.add(backup)
    db.session.flush()
    backup.rq_job_id = f"backup-{backup.id}"
    audit.record(
        audit.Action.BACKUP_STARTED, team_id=policy.team_id, target=backup, policy=policy.name
    )
    db.session.commit()
    queue("backup").enqueue(
        "app.jobs.run_backup", backup.id, job_id=backup.rq_job_id, failure_ttl=86400
    )
    return backup


def row_for_slot(policy_id: int, slot: str) -> Backup | None:
    """The backup row of a scheduled slot, created once however often the slot fires."""
    policy = db.session.get(BackupPolicy, policy_id)
    if policy is None or not policy.enabled:
        return None
    existing = db.session.scalar(
        select(Backup).where(Backup.policy_id == policy_id, Backup.slot == slot)
    )
    if existing is not None:
        return None
    backup = Backup(team_id=policy.team_id, policy_id=policy_id, slot=slot, trigger="schedule")
    db.session.add(backup)
    try:
        db.session.commit()
    except IntegrityError:  # another worker took this slot a moment ago
        db.session.rollback()
        return None
    return backup


# ---- the run --------------------------------------------------------------


def is_alive(backup_id: int) -> bool:
    return bool(redis.client.exists(ALIVE_KEY.format(backup_id)))


def run(backup_id: int) -> str:
    """Run one backup (in the worker); returns its final status."""
    backup = db.session.get(Backup, backup_id)
    if backup is None or backup.status != BackupStatus.queued.value:
        return backup.status if backup else "missing"
    ttl = current_app.config["BACKUP_ALIVE_TTL"]
    heartbeat = Heartbeat(ALIVE_KEY.format(backup_id), ttl, interval=max(ttl / 4, 0.2))
    heartbeat.start()
    try:
        _Run(backup).execute()
    finally:
        heartbeat.stop()
    db.session.refresh(backup)
    if backup.status == BackupStatus.succeeded.value:
        try:
            retention.prune(backup.policy)
        except Exception:  # noqa: BLE001 - retention trouble never fails a good backup
            db.session.rollback()  # the row stays succeeded; half-done changes go
            log.exception("retention of policy %s failed", backup.policy_id)
    else:
        notify.event(backup.team_id, NotificationEvent.backup_failed, backup.id)
    return backup.status


class _Run:
    def __init__(self, backup: Backup):
        self.backup, self.policy = backup, backup.policy
        self.cfg = current_app.config
        self.sent = checks.Sent()  # size and digests of what went to the file and to S3
        self.upload: storage.MultipartUpload | None = None
        self.s3_error: str | None = None
        self.check_error: str | None = None
        self.part_size = max(self.cfg["BACKUP_PART_MB"], 5) << 20

    def execute(self) -> None:
        from psycopg import Error as DatabaseError  # here, in the work horse (dumps.py)

        b = self.backup
        b.status, b.started_at = BackupStatus.running.value, utcnow()
        db.session.commit()
        began = time.monotonic()
        try:
            source = source_of(self.policy)
            suffix = ".sqlite3" if isinstance(source, str) else getattr(source, "suffix", ".dump")
            stamp = b.started_at.strftime("%Y%m%dT%H%M%SZ")
            name = f"{stamp}-{b.id}{suffix}"
            local = policy_dir(self.policy) / name
            self.target = s3_target(self.policy.destination)
            b.bucket, b.object_key = (
                self.target.bucket,
                self.target.key(f"{self.policy.name}/{name}"),
            )
            self._start_upload()
            partial = local.with_suffix(local.suffix + ".part")
            with open(partial, "wb") as out:
                b.row_counts = self._dump(source, out, local.parent)
            self._finish_upload()  # its parts are read from the file: rename after
            partial.rename(local)
            b.local_path, b.size_bytes, b.sha256 = str(local), self.sent.size, self.sent.sha256
        except (BackupError, dumps.DumpError, storage.StorageError, names.InvalidValue,
                crypto.SecretError, OSError, DatabaseError, managed.ContainerError,
                managed.SourceError) as exc:  # fmt: skip
            self._abort_upload()
            b.mark_failed(str(exc).strip())
        except Exception as exc:  # the row must say what happened, whatever it was
            log.exception("backup %s failed unexpectedly", b.id)
            self._abort_upload()
            b.mark_failed(f"{type(exc).__name__}: {exc}")
        else:
            if self.check_error:
                b.mark_failed(f"{self.check_error}; the local copy is kept")
            elif self.s3_error:
                b.mark_failed(f"S3 upload failed, the local copy is kept: {self.s3_error}")
            else:
                b.status, b.finished_at = BackupStatus.succeeded.value, utcnow()
        b.duration_seconds = round(time.monotonic() - began, 3)
        db.session.commit()
        log.info("backup %s: %s in %.1f s", b.id, b.status, b.duration_seconds)

    def _dump(self, source, out, workdir: Path) -> dict[str, int]:
        if isinstance(source, str):  # SQLite: online backup to a file, then stream that
            copy = dumps.scratch_file(workdir, ".sqlite-copy")
            try:
                counts = dumps.sqlite_copy(source, copy)
                with open(copy, "rb") as stream:
                    self._pump(stream, out)
            finally:
                copy.unlink(missing_ok=True)
            return counts
        if isinstance(source, managed.VolumeSource):
            with source.dump() as (stream, _):
                self._pump(stream, out)
            return managed.tar_counts(Path(out.name))
        if isinstance(source, managed.DatabaseSource):
            with source.dump() as (stream, counts):
                self._pump(stream, out)
            return counts()
        with dumps.pg_dump(source, workdir) as (stream, counts):
            self._pump(stream, out)
        return counts.result()

    def _pump(self, stream, out) -> None:
        """Chunks → SHA-256 and the local file; each full part goes to S3 from that file."""
        part_start, part_md5 = 0, hashlib.md5()
        sent = self.sent
        while chunk := stream.read(READ_CHUNK):
            sent.update(chunk)
            out.write(chunk)
            if self.upload is None:
                continue
            part_md5.update(chunk)
            if sent.size - part_start >= self.part_size:
                out.flush()  # the upload thread reads these bytes from the file
                self._send(out.name, part_start, sent.size - part_start, part_md5.digest())
                part_start, part_md5 = sent.size, hashlib.md5()
        out.flush()
        if self.upload is not None and (sent.size > part_start or not self.upload.part_md5s):
            self._send(out.name, part_start, sent.size - part_start, part_md5.digest())

    def _send(self, path: str, offset: int, length: int, md5: bytes) -> None:
        try:
            self.upload.add(path, offset, length, md5)
        except storage.StorageError as exc:
            self._give_up_s3(str(exc))

    def _give_up_s3(self, reason: str) -> None:
        """S3 failed for good: keep dumping to the local file; abort the upload."""
        log.warning("backup %s: %s", self.backup.id, reason)
        self.s3_error = reason
        self._abort_upload()

    def _start_upload(self) -> None:
        # The SSRF check runs in storage.client: an internal endpoint raises here.
        self.upload = storage.MultipartUpload(
            self.target, self.backup.object_key, threads=self.cfg["BACKUP_UPLOAD_THREADS"],
            retries=self.cfg["S3_RETRIES"], base_delay=self.cfg["S3_RETRY_BASE_SECONDS"],
        )  # fmt: skip
        try:
            self.backup.upload_id = self.upload.start()
        except storage.StorageError as exc:
            self.upload = None
            self.s3_error = str(exc)
            return
        db.session.commit()  # the reaper can abort it if this worker dies

    def _finish_upload(self) -> None:
        if self.upload is None:
            return
        try:
            self.upload.complete()
        except storage.StorageError as exc:
            self._give_up_s3(str(exc))
            return
        self.backup.upload_id = None
        self.sent.part_md5s = self.upload.part_md5s
        where = f"{self.target.bucket}/{self.backup.object_key}"
        try:
            etag, how = checks.verify(
                self.target, self.backup.object_key, self.sent, retries=self.cfg["S3_RETRIES"],
                base_delay=self.cfg["S3_RETRY_BASE_SECONDS"],
            )  # fmt: skip
        except checks.ObjectMismatch as exc:
            # Kept: the evidence is the object's, and deleting stored data is a person's call.
            self.check_error = (f"the object in S3 does not match what was sent ({exc}); "
                                f"it was kept, at {where}")  # fmt: skip
            return
        except storage.StorageError as exc:  # the check did not run: the object may be right
            self.check_error = (f"the object in S3 could not be checked ({exc}); "
                                f"it was kept, at {where}")  # fmt: skip
            return
        log.info("backup %s: %s verified: %s", self.backup.id, where, how)
        self.backup.etag, self.backup.uploaded = etag, True

    def _abort_upload(self) -> None:
        upload, self.upload = self.upload, None
        if upload is None or not upload.upload_id:
            return
        upload.close()
        try:
            storage.abort(self.target, self.backup.object_key, upload.upload_id)
            self.backup.upload_id = None
        except storage.StorageError as exc:  # left on the row: the reaper retries
            log.warning("backup %s: %s", self.backup.id, exc)


# ---- lost runs ---------------------------------------------------------------


def reap_lost(grace: timedelta = timedelta(seconds=30)) -> int:
    """Running backups without a heartbeat end ``failed``; open uploads are aborted.

    A lost backup is a failed backup: the team is told, as after any failure.
    """
    cutoff = utcnow() - grace
    lost: list[Backup] = []
    for b in db.session.scalars(select(Backup).where(Backup.status == BackupStatus.running.value)):
        started = b.started_at or b.created_at
        if started > cutoff or is_alive(b.id):
            continue
        b.mark_failed("worker lost: the backup stopped without finishing")
        lost.append(b)
    db.session.commit()
    for b in lost:  # after the commit: the delivery job reads the row's error
        notify.event(b.team_id, NotificationEvent.backup_failed, b.id)
    stale = select(Backup).where(
        Backup.upload_id.is_not(None), Backup.status == BackupStatus.failed.value
    )
    for b in db.session.scalars(stale):
        try:
            storage.abort(s3_target(b.policy.destination), b.object_key, b.upload_id)
            b.upload_id = None
        except (storage.StorageError, crypto.SecretError) as exc:
            log.warning("backup %s: upload not aborted yet: %s", b.id, exc)
    db.session.commit()
    return len(lost)


def latest_good(policy_id: int) -> Backup | None:
    return db.session.scalar(
        select(Backup)
        .where(Backup.policy_id == policy_id, Backup.status == BackupStatus.succeeded.value)
        .order_by(Backup.id.desc()).limit(1)
    )  # fmt: skip
