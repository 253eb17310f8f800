"""Restores and restore drills: real pg_restore, SHA-256 checked before anything is touched."""

from __future__ import annotations

from pathlib import Path

from app.backups import restores, runs
from app.extensions import db, queue
from app.models import Backup, NotificationChannel, Restore
from tests.backups.conftest import BOTH_SERVERS, SourceDb, work
from tests.factories import make_destination, make_policy, make_team


def _backed_up(s3, bucket, source_db, rows=200):
    src = source_db(rows=rows)
    team = make_team()
    policy = make_policy(team, make_destination(team, s3.url, bucket), src.url)
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "succeeded", backup.error
    return src, backup


def _restore(backup, **kwargs) -> Restore:
    restore = restores.start(backup, user_id=None, **{"kind": "restore",
                             "target_database": None} | kwargs)  # fmt: skip
    work("backup")
    db.session.expire_all()
    return db.session.get(Restore, restore.id)


@BOTH_SERVERS
def test_restore_into_the_same_database_puts_the_rows_back(app, s3, bucket, source_db):
    src, backup = _backed_up(s3, bucket, source_db)
    src.execute("DELETE FROM items WHERE id > 50")
    src.execute("DROP TABLE notes")
    restore = _restore(backup)
    assert restore.status == "succeeded", restore.error
    assert src.execute("SELECT count(*) FROM items") == [(200,)]
    assert src.execute("SELECT note FROM notes ORDER BY id") == [("first",), ("second",)]
    assert "SHA-256 matches" in restore.log and restore.duration_seconds > 0


@BOTH_SERVERS
def test_restore_into_a_new_database(app, s3, bucket, source_db):
    src, backup = _backed_up(s3, bucket, source_db)
    name = f"{src.name}_copy"
    restore = _restore(backup, target_database=name)
    assert restore.status == "succeeded", restore.error
    assert SourceDb(name).execute("SELECT count(*) FROM items") == [(200,)]
    again = _restore(backup, target_database=name)
    assert again.status == "failed" and "already exists" in again.error


@BOTH_SERVERS
def test_a_corrupted_local_file_without_an_s3_copy_is_refused(app, s3, bucket, source_db):
    src, backup = _backed_up(s3, bucket, source_db)
    backup.uploaded = False  # as if S3 had failed: only the local copy exists
    db.session.commit()
    with open(backup.local_path, "r+b") as fh:
        fh.seek(100)
        fh.write(b"\x00corrupted\x00")
    src.execute("DELETE FROM items WHERE id > 10")
    restore = _restore(backup)
    assert restore.status == "failed"
    assert "Refusing to restore" in restore.error
    assert "does NOT match" in restore.log
    assert src.execute("SELECT count(*) FROM items") == [(10,)]  # untouched


@BOTH_SERVERS
def test_a_corrupted_local_file_falls_back_to_the_verified_s3_copy(app, s3, bucket, source_db):
    src, backup = _backed_up(s3, bucket, source_db)
    Path(backup.local_path).write_bytes(b"PGDMP garbage")
    src.execute("DELETE FROM items")
    restore = _restore(backup)
    assert restore.status == "succeeded", restore.error
    assert "downloaded; SHA-256 matches" in restore.log
    assert src.execute("SELECT count(*) FROM items") == [(200,)]


@BOTH_SERVERS
def test_a_restore_drill_compares_row_counts_and_drops_the_scratch_database(
    app, s3, bucket, source_db
):
    src, backup = _backed_up(s3, bucket, source_db)
    src.execute("INSERT INTO notes VALUES (3, 'after the backup')")  # the source moved on
    drill = _restore(backup, kind="drill")
    assert drill.status == "succeeded", drill.error
    assert drill.comparison["matches"] is True
    assert drill.comparison["rows"] == 202
    scratch = drill.comparison["scratch"]
    assert scratch.startswith(f"slipway_drill_{drill.id}_") and scratch in drill.log
    assert SourceDb("postgres").execute(
        "SELECT count(*) FROM pg_database WHERE datname = %s", (scratch,)
    ) == [(0,)]


@BOTH_SERVERS
def test_a_failed_drill_is_recorded_and_tells_the_team(app, s3, bucket, source_db):
    src, backup = _backed_up(s3, bucket, source_db)
    backup.row_counts = {**backup.row_counts, "public.items": 999}  # what the dump "said"
    db.session.add(NotificationChannel(team_id=backup.team_id, name="ops", kind="webhook",
                                       events=["drill.failed"], settings={}))  # fmt: skip
    db.session.commit()
    drill = restores.start(backup, kind="drill", target_database=None, user_id=None)
    work("backup")  # not "notify": the notification stays queued for inspection
    db.session.expire_all()
    drill = db.session.get(Restore, drill.id)
    assert drill.status == "failed"
    assert drill.comparison["differences"] == {"public.items": [999, 200]}
    jobs = queue("notify").get_jobs()
    assert [(j.func_name, j.args[1:]) for j in jobs] == [
        ("app.jobs.send_notification", ["drill.failed", drill.id, 0])
    ]


@BOTH_SERVERS
def test_monthly_drills_take_each_policys_latest_good_backup(app, s3, bucket, source_db):
    _, backup = _backed_up(s3, bucket, source_db)
    assert restores.start_monthly_drills() == 1
    work("backup")
    db.session.expire_all()
    drill = db.session.query(Restore).one()
    assert (drill.kind, drill.backup_id, drill.status) == ("drill", backup.id, "succeeded")
