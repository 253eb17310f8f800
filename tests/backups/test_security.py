"""SECURITY.md cases for backups: 11 (hostile values reach no command), 13 (SSRF at
use), 19 (S3 secret and database passwords never leave the server; the SMTP password
of an email channel: test_notify.py, next to its SMTP server). Cases 7 and 8
(another team's destinations, policies, backups, restores and channels) are covered
by tests/security/, whose team worlds include backup objects."""

from __future__ import annotations

import json
import zlib
from datetime import timedelta
from pathlib import Path

from app.backups import dumps, restores, retention, runs, storage
from app.extensions import db, redis
from app.models import Backup, BackupDestination, BackupPolicy, Restore, Role
from app.models.base import utcnow
from tests.backups.conftest import target_of, work
from tests.conftest import Auth, csrf_token
from tests.factories import make_destination, make_policy, make_user, team_of

S3_CANARY = "s3-canary-5b1c0e"
DB_CANARY = "dbpw-canary-7e2a9d"


def test_secrets_never_reach_pages_jobs_logs_or_backup_metadata(
    app, client, moto, bucket, source_db, logs
):
    src = source_db(rows=20)
    role = f"slipway_bk_canary_{src.name[-6:]}"
    src.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{DB_CANARY}'")
    try:
        user = make_user(role=Role.owner)
        assert Auth(client).login(user).status_code == 303
        token = csrf_token(client, "/backups/")
        assert client.post("/backups/destinations/new", data={
            "csrf_token": token, "name": "dd", "endpoint_url": moto.url, "region": "us-east-1",
            "bucket": bucket, "prefix": "", "access_key_id": "testing",
            "secret_access_key": S3_CANARY, "path_style": "y"}).status_code == 303  # fmt: skip
        dest_id = db.session.query(BackupDestination).one().id
        url = f"postgresql://{role}:{DB_CANARY}@127.0.0.1:5432/{src.name}"
        assert client.post("/backups/policies/new", data={
            "csrf_token": token, "name": "pp", "target_type": "postgres", "database_url": url,
            "destination_id": str(dest_id), "cron": "0 2 * * *", "keep_local_days": "7",
            "keep_daily": "30", "keep_weekly": "12", "enabled": "y",
        }).status_code == 303  # fmt: skip
        policy = db.session.query(BackupPolicy).one()
        client.post(f"/backups/policies/{policy.id}/run", data={"csrf_token": token})
        payloads = [zlib.decompress(redis.client.hget(k, "data")) for k in redis.client.keys(
            "rq:job:*") if redis.client.hget(k, "data")]  # fmt: skip
        work("backup")
        backup = db.session.query(Backup).one()
        # moto accepts any key: the canary S3 secret is really used, the backup succeeds
        assert backup.status == "succeeded", backup.error
        pages = [client.get(u).get_data(as_text=True) for u in (
            "/backups/", f"/backups/policies/{policy.id}/edit",
            f"/backups/destinations/{dest_id}/edit", f"/backups/{backup.id}/restore")]  # fmt: skip
        row = json.dumps({c.name: str(getattr(backup, c.name)) for c in Backup.__table__.columns})
        stored = json.dumps([policy.database_url, policy.database_password])
        assert f"backup {backup.id}: succeeded" in logs.text  # the logs are really captured
        for canary in (S3_CANARY, DB_CANARY):
            assert all(canary not in p for p in pages)
            assert all(canary.encode() not in p for p in payloads)
            assert canary not in logs.text
            assert canary not in row
            assert canary not in stored
        assert DB_CANARY.encode() not in Path(backup.local_path).read_bytes()
    finally:
        src.execute(f"DROP OWNED BY {role}")
        src.execute(f"DROP ROLE {role}")


def test_a_hostile_database_url_written_into_the_database_runs_no_command(
    app, moto, bucket, tmp_path
):
    from tests.factories import make_destination, make_policy, make_team

    team = make_team()
    policy = make_policy(team, make_destination(team, moto.url, bucket), None)
    marker = tmp_path / "pwned"
    policy.target_type = "postgres"
    policy.database_url = f"postgresql://u@127.0.0.1:5432/-x;touch {marker}"
    db.session.commit()
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "failed" and "database name" in backup.error
    assert not marker.exists()


def test_a_database_host_that_became_internal_is_refused_at_use(app, moto, bucket, source_db):
    from tests.factories import make_destination, make_policy, make_team

    team = make_team()
    policy = make_policy(team, make_destination(team, moto.url, bucket), source_db(rows=1).url)
    # allow-listed when saved; not any more
    app.config["OUTBOUND_ALLOWED_HOSTS"] = app.config["BACKUP_ALLOWED_HOSTS"] = ()
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "failed" and "internal address" in backup.error
    assert backup.size_bytes is None


def test_an_s3_endpoint_that_resolves_internally_is_refused_at_every_use(
    app, client, moto, bucket, source_db
):
    """Backup run, restore, download, retention and the reaper's abort all refuse an
    endpoint whose host is internal and not allow-listed, and send it nothing.

    ``localhost`` reaches the same S3 server as the allow-listed ``127.0.0.1``, so
    anything that got through would show in its access log. The database host
    stays allow-listed: the S3 check is the one that fires.
    """
    src = source_db(rows=5)
    user = make_user(role=Role.owner)
    team = team_of(user)
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, src.url)
    good = []
    for days_ago in (3, 0):
        backup = runs.start_now(policy)
        work("backup")
        db.session.expire_all()
        backup = db.session.get(Backup, backup.id)
        assert backup.status == "succeeded", backup.error
        backup.started_at = utcnow() - timedelta(days=days_ago)
        db.session.commit()
        good.append(backup)
    keys = sorted(b.object_key for b in good)
    dest.endpoint_url = f"http://localhost:{moto.port}"  # straight into the database
    db.session.commit()
    before = moto.requests_for(bucket)

    run = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    run = db.session.get(Backup, run.id)
    assert run.status == "failed" and "localhost resolves to an internal address" in run.error

    Path(good[1].local_path).unlink()  # restore and download must come from S3
    copy = f"{src.name}_copy"
    restore = restores.start(good[1], kind="restore", target_database=copy, user_id=None)
    work("backup")
    db.session.expire_all()
    restore = db.session.get(Restore, restore.id)
    assert restore.status == "failed" and "internal address" in restore.error
    assert not dumps.database_exists(runs.source_of(policy), copy)

    assert Auth(client).login(user).status_code == 303
    download = client.get(f"/backups/{good[1].id}/download")
    assert download.status_code == 502 and "internal address" in download.get_data(as_text=True)

    policy.keep_local_days = policy.keep_daily = policy.keep_weekly = 0
    db.session.commit()
    retention.prune(policy)
    db.session.expire_all()
    assert db.session.get(Backup, good[0].id).uploaded  # not deleted, and the row says so

    run = db.session.get(Backup, run.id)
    run.upload_id = "an-upload-left-open"
    db.session.commit()
    runs.reap_lost()
    db.session.expire_all()
    assert db.session.get(Backup, run.id).upload_id == "an-upload-left-open"  # not aborted

    assert moto.requests_for(bucket) == before  # nothing reached the S3 server
    dest.endpoint_url = moto.url
    db.session.commit()
    listed = storage.client(target_of(dest)).list_objects_v2(Bucket=bucket)
    assert sorted(o["Key"] for o in listed["Contents"]) == keys
