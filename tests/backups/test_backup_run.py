"""Backup runs against real PostgreSQL, pg_dump and S3 servers (moto_server, s3rver)."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path
from urllib.parse import quote

from psycopg import sql

from app import names
from app.backups import dumps, runs, storage
from app.extensions import db
from app.models import Backup
from tests.backups.conftest import BOTH_SERVERS, open_uploads, target_of, work
from tests.factories import make_destination, make_policy, make_team


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _object(dest, key) -> bytes:
    out = io.BytesIO()
    storage.download(target_of(dest), key, out)
    return out.getvalue()


@BOTH_SERVERS
def test_a_postgres_backup_streams_to_a_local_file_and_s3_and_is_verified(
    app, s3, bucket, source_db
):
    src = source_db(rows=4000, payload=4000)  # ~8 MB compressed: two 5 MiB parts
    team = make_team()
    dest = make_destination(team, s3.url, bucket)
    policy = make_policy(team, dest, src.url)

    backup = runs.start_now(policy)
    work("backup")

    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "succeeded", backup.error
    local = Path(backup.local_path).read_bytes()
    assert local[:5] == b"PGDMP"  # pg_dump's custom format
    assert backup.size_bytes == len(local) and backup.sha256 == _sha(local)
    assert _object(dest, backup.object_key) == local
    assert backup.object_key.startswith(f"slipway/{policy.name}/")
    size, etag = storage.head(target_of(dest), backup.object_key)
    assert size == len(local) and etag == backup.etag
    # moto: the MD5 of the two parts' MD5s, "-2"; s3rver: the MD5 of the whole object.
    whole = f'"{hashlib.md5(local).hexdigest()}"'
    assert etag.endswith('-2"') if s3.name == "moto" else etag == whole
    assert backup.uploaded and backup.upload_id is None
    assert backup.row_counts == {"public.items": 4000, "public.notes": 2}
    assert backup.duration_seconds > 0 and backup.finished_at is not None
    if s3.lists_uploads:  # s3rver cannot list multipart uploads
        assert open_uploads(target_of(dest)) == []


def test_the_database_password_goes_to_pg_dump_in_the_environment_never_in_argv(
    app, moto, bucket, source_db, monkeypatch
):
    src = source_db(rows=10)
    team = make_team()
    policy = make_policy(team, make_destination(team, moto.url, bucket), src.url)
    seen: list[tuple[list, dict]] = []
    real = subprocess.Popen

    def recording(argv, *args, **kwargs):
        seen.append((list(argv), dict(kwargs.get("env") or {})))
        return real(argv, *args, **kwargs)

    monkeypatch.setattr(dumps.subprocess, "Popen", recording)
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    assert db.session.get(Backup, backup.id).status == "succeeded"
    ((argv, env),) = seen
    assert argv[0].endswith("pg_dump") and "--format=custom" in argv
    assert not any("slipway" in a and "@" in a for a in argv)  # no URL, no password
    assert not any(a == "slipway" for a in argv[1:])
    assert env["PGPASSWORD"] == "slipway" and env["PGDATABASE"] == src.name


@BOTH_SERVERS
def test_slipways_own_database_is_backed_up(app, s3, bucket):
    """SQLite through the online backup API; PostgreSQL through pg_dump (whichever runs)."""
    team = make_team()
    policy = make_policy(team, make_destination(team, s3.url, bucket), None)
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "succeeded", backup.error
    data = Path(backup.local_path).read_bytes()
    sqlite = app.config["SQLALCHEMY_DATABASE_URI"].startswith("sqlite")
    assert data[:6] == (b"SQLite" if sqlite else b"PGDMP\x01"[:6])
    assert _object(policy.destination, backup.object_key) == data
    counts = {k.split(".", 1)[1]: v for k, v in backup.row_counts.items()}
    assert counts["teams"] == 1 and counts["backup_policies"] == 1


def test_a_dump_failure_ends_failed_with_the_reason_and_aborts_the_upload(
    app, moto, bucket, source_db
):
    src = source_db(rows=10)
    team = make_team()
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, src.url.replace(src.name, src.name + "_missing"))
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    backup = db.session.get(Backup, backup.id)
    assert backup.status == "failed"
    assert "does not exist" in backup.error
    assert open_uploads(target_of(dest)) == []


# Every character that means something in a URL, and a literal percent sign.
AWKWARD_PASSWORD = "p@ss:w/rd%41?#x"


def test_a_url_encoded_user_and_password_are_decoded_before_they_are_stored():
    url = f"postgresql://app%2Euser:{quote(AWKWARD_PASSWORD, safe='')}@127.0.0.1:5432/x"
    assert names.database_url(url, ("127.0.0.1",)) == (
        "postgresql://app.user@127.0.0.1:5432/x", AWKWARD_PASSWORD)  # fmt: skip
    own = dumps.PgConn.from_url(
        f"postgresql+psycopg://s%2Ex:{quote(AWKWARD_PASSWORD, safe='')}@h/db"
    )
    assert (own.user, own.password) == ("s.x", AWKWARD_PASSWORD)


def test_a_password_with_url_special_characters_reaches_pg_dump_decoded(
    app, moto, bucket, source_db
):
    """A real role whose password has @ : / % ? #, registered by its percent-encoded URL."""
    src = source_db(rows=10)
    role = f"slipway_bk_pct_{src.name[-6:]}"
    src.execute(sql.SQL("CREATE ROLE {} LOGIN SUPERUSER PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(AWKWARD_PASSWORD)))  # fmt: skip
    try:
        url = f"postgresql://{role}:{quote(AWKWARD_PASSWORD, safe='')}@127.0.0.1:5432/{src.name}"
        team = make_team()
        policy = make_policy(team, make_destination(team, moto.url, bucket), url)
        backup = runs.start_now(policy)
        work("backup")
        db.session.expire_all()
        backup = db.session.get(Backup, backup.id)
        assert backup.status == "succeeded", backup.error
        assert backup.row_counts == {"public.items": 10, "public.notes": 2}
    finally:
        src.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
        src.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
