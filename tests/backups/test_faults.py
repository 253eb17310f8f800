"""Fault tests: S3 down during an upload, a worker killed mid-backup, retention limits."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import psycopg

from app.backups import retention, runs, storage
from app.config import ROOT
from app.extensions import db
from app.models import Backup
from app.models.base import utcnow
from tests.backups.conftest import BOTH_SERVERS, open_uploads, target_of, work
from tests.conftest import TEST_KEY
from tests.factories import make_destination, make_policy, make_team


def _reload(backup_id: int) -> Backup:
    db.session.expire_all()
    return db.session.get(Backup, backup_id)


def test_s3_going_down_mid_upload_keeps_the_local_file_and_fails_with_the_reason(
    app, moto, bucket, source_db, monkeypatch
):
    src = source_db(rows=6000, payload=4000)  # ~12 MB compressed: three parts
    team = make_team()
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, src.url)
    sent = []
    real_add = storage.MultipartUpload.add

    def add_then_die(self, *part):
        real_add(self, *part)
        sent.append(part)
        if len(sent) == 1:
            for future in self._parts:
                future.result()  # the first part is in; then S3 goes away
            moto.stop()

    monkeypatch.setattr(storage.MultipartUpload, "add", add_then_die)
    backup = runs.start_now(policy)
    try:
        work("backup")
        failed = _reload(backup.id)
    finally:
        moto.start()
    assert failed.status == "failed"
    assert "S3 upload failed, the local copy is kept" in failed.error
    assert "attempts" in failed.error  # retried with backoff before giving up
    data = Path(failed.local_path).read_bytes()
    assert len(data) == failed.size_bytes and hashlib.sha256(data).hexdigest() == failed.sha256
    assert failed.upload_id  # S3 was down: the abort is left for the reaper
    # The S3 server lost its state on restart: make the bucket again, then recover.
    storage.client(target_of(dest)).create_bucket(Bucket=bucket)
    runs.reap_lost()
    assert _reload(backup.id).upload_id is None
    monkeypatch.setattr(storage.MultipartUpload, "add", real_add)
    again = runs.start_now(policy)
    work("backup")
    assert _reload(again.id).status == "succeeded"


def _worker_env(app, tmp_path) -> dict:
    cfg = app.config
    uri = cfg["SQLALCHEMY_DATABASE_URI"].replace("postgresql+psycopg://", "postgresql://", 1)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")},
        "SLIPWAY_DATABASE_URL": uri,
        "SLIPWAY_REDIS_URL": cfg["REDIS_URL"],
        "SLIPWAY_DATA_DIR": str(tmp_path / "worker-data"),
        "SLIPWAY_SECRET_KEY": "worker-test",
        "SLIPWAY_ENCRYPTION_KEYS": TEST_KEY,
        "SLIPWAY_BACKUPS_DIR": cfg["BACKUPS_DIR"],
        "SLIPWAY_BACKUP_ALLOWED_HOSTS": "127.0.0.1",
        "SLIPWAY_BACKUP_PART_MB": "5",
        "SLIPWAY_BACKUP_ALIVE_TTL": "2",
        "SLIPWAY_ADOPT_UNLABELLED": "0",
    }


def _descendants(pid: int) -> list[int]:
    """Child processes, recursively (RQ's work horse runs in its own session)."""
    found = []
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return found
    for child in map(int, children):
        found += [child, *_descendants(child)]
    return found


def _kill_all(pid: int) -> None:
    for victim in [pid, *_descendants(pid)]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_worker_killed_mid_backup_leaves_a_failed_row_and_no_open_upload(
    app, moto, bucket, source_db, tmp_path
):
    """The real worker process is killed while pg_dump waits on a table lock."""
    src = source_db(rows=100)
    team = make_team()
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, src.url)
    blocker = psycopg.connect(src.url)
    blocker.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")  # pg_dump will wait here
    backup = runs.start_now(policy)
    worker = subprocess.Popen(
        [sys.executable, str(ROOT / "worker.py"), "--queues", "backup"],
        env=_worker_env(app, tmp_path), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            row = _reload(backup.id)
            if row.status == "running" and row.upload_id and runs.is_alive(row.id):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the worker never started the backup")
        assert open_uploads(target_of(dest)) != []
        _kill_all(worker.pid)  # worker, work horse and pg_dump: as if the box lost power
        worker.wait(timeout=10)
    finally:
        if worker.poll() is None:
            _kill_all(worker.pid)
        blocker.rollback()
        blocker.close()
    time.sleep(2.5)  # the heartbeat key (TTL 2 s here) expires
    assert not runs.is_alive(backup.id)
    assert runs.reap_lost(grace=timedelta(0)) == 1
    lost = _reload(backup.id)
    assert lost.status == "failed" and "worker lost" in lost.error
    assert lost.upload_id is None
    assert open_uploads(target_of(dest)) == []
    again = runs.start_now(policy)
    work("backup")
    assert _reload(again.id).status == "succeeded"


@BOTH_SERVERS
def test_retention_never_deletes_the_last_good_backup(app, s3, bucket, source_db):
    src = source_db(rows=10)
    team = make_team()
    dest = make_destination(team, s3.url, bucket)
    policy = make_policy(team, dest, src.url, keep_local_days=0, keep_daily=0, keep_weekly=0)
    first = runs.start_now(policy)
    work("backup")
    first = _reload(first.id)
    first.started_at = utcnow() - timedelta(days=3)
    db.session.commit()
    second = runs.start_now(policy)
    work("backup")
    first, second = _reload(first.id), _reload(second.id)
    assert second.status == "succeeded"
    assert first.local_path is None and not first.uploaded  # pruned everywhere
    assert Path(second.local_path).exists() and second.uploaded  # the newest stays
    keys = [o["Key"] for o in storage.client(target_of(dest)).list_objects_v2(
        Bucket=bucket).get("Contents", [])]  # fmt: skip
    assert keys == [second.object_key]


def test_retention_keeps_dailies_and_weeklies(app):
    class B:
        def __init__(self, i, days_ago):
            self.id, self.started_at, self.created_at = i, utcnow() - timedelta(days=days_ago), None

    # Two backups a day for 60 days, newest first.
    good = [B(1000 - i, i / 2) for i in range(120)]
    keep = retention.to_keep_in_s3(good, daily=30, weekly=12)
    assert good[0].id in keep
    daily = {
        b.started_at.date() for b in good if b.id in keep and (utcnow() - b.started_at).days < 30
    }
    assert len(daily) >= 29
    assert 30 <= len(keep) <= 30 + 12 + 1
    assert json.dumps(sorted(keep))  # plain ints


def _good_backups(policy, count: int) -> list[Backup]:
    """``count`` succeeded backups of ``policy``, one a day ending 8 days ago (oldest first).

    Each is dated as soon as it is made, so that the next run's retention (newest
    per day in S3) keeps it; the policy must keep local copies for 10+ days.
    """
    made = []
    for n in range(count):
        backup = runs.start_now(policy)
        work("backup")
        backup = _reload(backup.id)
        assert backup.status == "succeeded", backup.error
        backup.started_at = utcnow() - timedelta(days=7 + count - n)
        db.session.commit()
        made.append(backup)
    assert all(_reload(b.id).local_path and _reload(b.id).uploaded for b in made)
    return made


def _keys(dest) -> list[str]:
    listed = storage.client(target_of(dest)).list_objects_v2(Bucket=dest.bucket)
    return sorted(o["Key"] for o in listed.get("Contents", []))


def test_an_s3_failure_in_retention_keeps_every_row_true_and_the_backup_good(
    app, moto, bucket, source_db, monkeypatch
):
    """Local removals are committed one by one; S3 fails on the second delete."""
    src = source_db(rows=10)
    team = make_team()
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, src.url, keep_local_days=30)  # nothing is pruned yet
    old = _good_backups(policy, 3)
    paths = {b.id: b.local_path for b in old}
    keys = {b.id: b.object_key for b in old}
    policy.keep_local_days = policy.keep_daily = policy.keep_weekly = 0
    db.session.commit()
    deletes = []
    real_delete = storage.delete

    def delete_then_fail(target, key, **kwargs):
        deletes.append(key)
        if len(deletes) > 1:
            raise storage.StorageError(f"deleting {key} failed after 3 attempts: S3 is down")
        real_delete(target, key, **kwargs)

    monkeypatch.setattr(storage, "delete", delete_then_fail)
    newest = runs.start_now(policy)
    work("backup")
    newest = _reload(newest.id)
    assert newest.status == "succeeded" and newest.error is None
    for b in old:  # every local removal is on its row, although S3 failed later
        assert _reload(b.id).local_path is None and not Path(paths[b.id]).exists()
    assert deletes[0] == keys[old[2].id] and len(deletes) == 2  # newest first; then it stops
    assert not _reload(old[2].id).uploaded
    assert _reload(old[1].id).uploaded and _reload(old[0].id).uploaded  # still there: true
    assert _keys(dest) == sorted([keys[old[0].id], keys[old[1].id], newest.object_key])


@BOTH_SERVERS
def test_a_failed_run_prunes_nothing(app, s3, bucket, source_db):
    src = source_db(rows=10)
    team = make_team()
    dest = make_destination(team, s3.url, bucket)
    policy = make_policy(team, dest, src.url, keep_local_days=30)
    old = _good_backups(policy, 2)
    policy.keep_local_days = policy.keep_daily = policy.keep_weekly = 0
    policy.database_url = policy.database_url.replace(src.name, src.name + "_missing")
    db.session.commit()
    failed = runs.start_now(policy)
    work("backup")
    assert _reload(failed.id).status == "failed"
    for b in old:
        b = _reload(b.id)
        assert b.local_path and Path(b.local_path).exists() and b.uploaded
    assert _keys(dest) == sorted(b.object_key for b in old)
