"""The object check after upload, against S3 servers that answer differently, and Test
connection taking the same path (issue 11 items 3 and 4)."""

from __future__ import annotations

import hashlib
import itertools
import time
from pathlib import Path

import pytest

from app.backups import runs, storage
from app.extensions import db
from app.models import Backup, Role
from tests.backups.conftest import target_of, work
from tests.conftest import Auth, csrf_token
from tests.factories import S3_KEY, make_destination, make_policy, make_team, make_user, team_of

_n = itertools.count(1)


def _backup(endpoint: str, bucket: str, team=None) -> Backup:
    """A backup of Slipway's own database to ``endpoint``, run to its end."""
    team = team or make_team()
    policy = make_policy(team, make_destination(team, endpoint, bucket), None)
    backup = runs.start_now(policy)
    work("backup")
    db.session.expire_all()
    return db.session.get(Backup, backup.id)


def _target(endpoint: str, bucket: str) -> storage.S3Target:
    return storage.S3Target(endpoint, "us-east-1", bucket, "", S3_KEY, S3_KEY, True, 5)


def _keys(endpoint: str, bucket: str) -> list[str]:
    listed = storage.client(_target(endpoint, bucket)).list_objects_v2(Bucket=bucket)
    return [o["Key"] for o in listed.get("Contents", [])]


class _Sink:
    def write(self, data: bytes) -> int:
        return len(data)


@pytest.mark.parametrize("s3", ["s3rver"], indirect=True)
def test_a_backup_to_s3rver_succeeds_and_its_object_is_kept(app, s3rver, s3, bucket):
    """s3rver's multipart ETag is the MD5 of the whole object: before, the check failed
    and the object was deleted."""
    backup = _backup(s3rver.url, bucket)
    assert backup.status == "succeeded", backup.error
    data = Path(backup.local_path).read_bytes()
    assert backup.etag == f'"{hashlib.md5(data).hexdigest()}"'  # the whole-object form
    assert backup.uploaded and _keys(s3rver.url, bucket) == [backup.object_key]
    assert storage.download(target_of(backup.policy.destination), backup.object_key,
                            _Sink()) == backup.sha256  # fmt: skip


def test_an_etag_that_is_not_an_md5_is_verified_by_reading_the_object_back(app, bucket, s3_proxy):
    """As SSE-KMS ETags: neither form matches, so the object is read back and hashed."""
    proxy = s3_proxy("etag")
    backup = _backup(proxy.url, bucket)
    assert backup.status == "succeeded", backup.error
    assert backup.uploaded and backup.etag.strip('"') != hashlib.md5(
        Path(backup.local_path).read_bytes()).hexdigest()  # fmt: skip
    assert proxy.gets_of(backup.object_key) == 1  # the read-back
    assert _keys(proxy.url, bucket) == [backup.object_key]


def test_an_s3_sha256_checksum_verifies_the_object_without_reading_it_back(app, bucket, s3_proxy):
    proxy = s3_proxy("sha256")
    backup = _backup(proxy.url, bucket)
    assert backup.status == "succeeded", backup.error
    assert proxy.gets_of(backup.object_key) == 0


def test_a_wrong_s3_checksum_fails_the_backup_and_keeps_the_object(app, bucket, s3_proxy):
    proxy = s3_proxy("wrong-sha256")
    backup = _backup(proxy.url, bucket)
    assert backup.status == "failed" and not backup.uploaded
    assert "SHA-256 checksum S3 reports differs" in backup.error, backup.error
    assert f"it was kept, at {bucket}/{backup.object_key}" in backup.error
    assert _keys(proxy.url, bucket) == [backup.object_key]


def test_a_corrupt_object_fails_the_backup_is_kept_and_the_reason_says_what_differs(
    app, client, bucket, s3_proxy
):
    """The server stores one byte less than it was sent: a size mismatch."""
    proxy = s3_proxy("truncate")
    user = make_user(role=Role.owner)
    backup = _backup(proxy.url, bucket, team_of(user))
    assert backup.status == "failed" and not backup.uploaded
    size = backup.size_bytes
    assert f"the bucket holds {size - 1} bytes, {size} were sent" in backup.error, backup.error
    assert f"it was kept, at {bucket}/{backup.object_key}" in backup.error
    assert "the local copy is kept" in backup.error and Path(backup.local_path).exists()
    assert _keys(proxy.url, bucket) == [backup.object_key]  # not deleted
    assert Auth(client).login(user).status_code == 303
    page = client.get("/backups/").get_data(as_text=True)
    assert f"the bucket holds {size - 1} bytes" in page  # the reason is shown


@pytest.mark.parametrize(
    ("server", "works", "failed_step", "reason"),
    [
        ("moto", True, None, None),
        ("s3rver", True, None, None),
        ("etag", True, None, None),
        ("no-multipart", False, "write", "NotImplemented"),
        ("truncate", False, "check", "were sent"),
    ],
)
def test_test_connection_works_exactly_where_a_backup_works(
    app, client, request, s3_proxy, server, works, failed_step, reason
):
    """Before, it wrote one small object with a single PUT: it said "works" for s3rver and
    for a server without multipart uploads, where every backup then failed."""
    if server in ("moto", "s3rver"):
        endpoint = request.getfixturevalue(server).url
    else:
        endpoint = s3_proxy(server).url
    bucket = f"bk-probe-{server}-{next(_n)}-{int(time.time() * 1000) % 100000}"
    storage.client(_target(endpoint, bucket)).create_bucket(Bucket=bucket)
    user = make_user(role=Role.owner)
    dest = make_destination(team_of(user), endpoint, bucket, prefix="")
    assert Auth(client).login(user).status_code == 303
    token = csrf_token(client, "/backups/")
    page = client.post(f"/backups/destinations/{dest.id}/test", data={"csrf_token": token})
    text = page.get_data(as_text=True)
    assert page.status_code == 200
    assert ("Connection works." in text) is works, text
    backup = _backup(endpoint, bucket)
    assert (backup.status == "succeeded") is works, backup.error
    if works:
        for step in ("write", "check", "read", "delete"):
            assert f"{step}: ok" in text
        assert "in 2 parts" in text
    else:
        assert f"{failed_step}: FAILED" in text and reason in text, text
    probes = [k for k in _keys(endpoint, bucket) if ".slipway-probe-" in k]
    assert probes == []  # deleted, even after a failed check
