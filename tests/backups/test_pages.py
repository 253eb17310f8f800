"""The Backups and Notifications pages, through the real forms (CSRF, 422 re-render)."""

from __future__ import annotations

from pathlib import Path

import pytest

from app import notify
from app.backups import runs, targets
from app.extensions import db
from app.models import (
    Backup,
    BackupDestination,
    BackupPolicy,
    NotificationChannel,
    Restore,
    Role,
)
from tests.backups.conftest import BOTH_SERVERS, encrypted_with_a_retired_key, work
from tests.conftest import Auth, csrf_token
from tests.factories import make_destination, make_policy, make_team, make_user

CANARY = "canary-S3-secret-9f8e7d"


@pytest.fixture
def admin(app, client):
    """The installation owner (the first user), logged in."""
    user = make_user(role=Role.owner)
    assert Auth(client).login(user).status_code == 303
    return user


def _team(user):
    return user.memberships[0].team


def _dest_form(token, moto, bucket_name, **changes):
    return {
        "csrf_token": token, "name": "primary", "endpoint_url": moto.url,
        "region": "us-east-1", "bucket": bucket_name, "prefix": "prod/db",
        "access_key_id": "testing", "secret_access_key": CANARY, "path_style": "y",
    } | changes  # fmt: skip


def test_adding_a_destination_stores_the_secret_encrypted(app, client, admin, moto, bucket):
    token = csrf_token(client, "/backups/")
    response = client.post("/backups/destinations/new", data=_dest_form(token, moto, bucket))
    assert response.status_code == 303
    dest = db.session.query(BackupDestination).one()
    assert dest.prefix == "prod/db" and dest.path_style
    assert CANARY not in dest.secret_access_key and dest.secret_access_key.startswith("k1:")
    page = client.get("/backups/").get_data(as_text=True)
    assert "primary" in page and CANARY not in page
    edit = client.get(f"/backups/destinations/{dest.id}/edit").get_data(as_text=True)
    assert CANARY not in edit


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("prefix", "../other-team", "letters, digits"),
        ("prefix", "team-a/../team-b", "cannot contain"),
        ("prefix", "a//b", "cannot contain"),
        ("prefix", "-rf", "not starting with -"),
        ("prefix", "a;b", "letters, digits"),
        ("bucket", "Bad_Bucket", "bucket name"),
        ("endpoint_url", "ftp://s3.example.com", "https://"),
        ("endpoint_url", "https://169.254.169.254", "internal address"),
        ("endpoint_url", "https://10.0.0.5:9000", "internal address"),
        ("secret_access_key", "", "Enter the secret key"),
    ],
)
def test_bad_destination_input_is_refused_next_to_the_field(
    app, client, admin, moto, bucket, field, value, message
):
    token = csrf_token(client, "/backups/")
    response = client.post(
        "/backups/destinations/new", data=_dest_form(token, moto, bucket, **{field: value})
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    start = body.index(f'id="field-{field}"')
    assert message in body[start : start + 1500]
    assert db.session.query(BackupDestination).count() == 0


def test_test_connection_says_what_worked_and_what_failed(app, client, admin, moto, bucket):
    team = _team(admin)
    good = make_destination(team, moto.url, bucket)
    bad = make_destination(team, moto.url, "no-such-bucket-here")
    token = csrf_token(client, "/backups/")
    ok = client.post(f"/backups/destinations/{good.id}/test", data={"csrf_token": token},
                     headers={"HX-Request": "true"}).get_data(as_text=True)  # fmt: skip
    assert "Connection works." in ok and "write: ok" in ok and "delete: ok" in ok
    failed = client.post(f"/backups/destinations/{bad.id}/test", data={"csrf_token": token})
    text = failed.get_data(as_text=True)
    assert failed.status_code == 200 and "Connection failed." in text
    assert "NoSuchBucket" in text


def test_test_connection_refuses_an_internal_endpoint_at_use(app, client, admin, moto, bucket):
    dest = make_destination(_team(admin), moto.url, bucket)
    # allowed when saved, no longer now
    app.config["OUTBOUND_ALLOWED_HOSTS"] = app.config["BACKUP_ALLOWED_HOSTS"] = ()
    token = csrf_token(client, "/backups/")
    text = client.post(f"/backups/destinations/{dest.id}/test",
                       data={"csrf_token": token}).get_data(as_text=True)  # fmt: skip
    assert "internal address" in text and "write: ok" not in text


def test_test_connection_with_an_undecryptable_secret_says_so_and_changes_nothing(
    app, client, admin, moto, bucket
):
    """A secret key stored under an encryption key that was rotated away: a plain answer, no 500."""
    sealed = encrypted_with_a_retired_key("testing", targets.S3_SECRET)
    dest = make_destination(_team(admin), moto.url, bucket, secret_access_key=sealed)
    before = moto.requests_for(bucket)
    token = csrf_token(client, "/backups/")
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(f"/backups/destinations/{dest.id}/test",
                               data={"csrf_token": token}, headers=headers)  # fmt: skip
        text = response.get_data(as_text=True)
        assert response.status_code == 200 and "Connection failed." in text
        assert "secret key cannot be decrypted" in text and "enter it again" in text
    db.session.expire_all()
    assert db.session.get(BackupDestination, dest.id).secret_access_key == sealed
    assert moto.requests_for(bucket) == before  # nothing was sent


def test_a_download_from_s3_with_an_undecryptable_secret_says_so(
    app, client, admin, moto, bucket, source_db
):
    team = _team(admin)
    dest = make_destination(team, moto.url, bucket)
    policy = make_policy(team, dest, source_db(rows=5).url)
    runs.start_now(policy)
    work("backup")
    backup = db.session.query(Backup).one()
    assert backup.status == "succeeded" and backup.uploaded
    Path(backup.local_path).unlink()  # the download has to come from S3
    dest.secret_access_key = encrypted_with_a_retired_key("testing", targets.S3_SECRET)
    db.session.commit()
    response = client.get(f"/backups/{backup.id}/download")
    assert response.status_code == 502
    assert "secret key cannot be decrypted" in response.get_data(as_text=True)


def test_testing_a_channel_with_an_undecryptable_secret_says_so(app, client, admin):
    channel = NotificationChannel(
        team_id=_team(admin).id, name="ops", kind="webhook", events=["backup.failed"],
        settings={"host": "hooks.example.com"},
        secret=encrypted_with_a_retired_key("https://hooks.example.com/x", notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    token = csrf_token(client, "/notifications/")
    response = client.post(f"/notifications/{channel.id}/test", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get("/notifications/").get_data(as_text=True)
    assert "cannot be decrypted" in page


def _policy_form(token, dest, **changes):
    return {
        "csrf_token": token, "name": "main-db", "target_type": "postgres",
        "database_url": "postgresql://slipway:db-password-canary@127.0.0.1:5432/somedb",
        "destination_id": str(dest.id), "cron": "0 2 * * *", "keep_local_days": "7",
        "keep_daily": "30", "keep_weekly": "12", "enabled": "y",
    } | changes  # fmt: skip


def test_a_policy_keeps_the_database_password_encrypted_and_apart(app, client, admin, moto, bucket):
    dest = make_destination(_team(admin), moto.url, bucket)
    token = csrf_token(client, "/backups/")
    assert client.post("/backups/policies/new", data=_policy_form(token, dest)).status_code == 303
    policy = db.session.query(BackupPolicy).one()
    assert policy.database_url == "postgresql://slipway@127.0.0.1:5432/somedb"
    assert "db-password-canary" not in policy.database_password
    assert (policy.cron, policy.keep_local_days, policy.keep_daily, policy.keep_weekly) == (
        "0 2 * * *", 7, 30, 12)  # fmt: skip
    for url in ("/backups/", f"/backups/policies/{policy.id}/edit"):
        assert "db-password-canary" not in client.get(url).get_data(as_text=True)


def test_the_policy_form_defaults_to_nightly_at_two(app, client, admin, moto, bucket):
    make_destination(_team(admin), moto.url, bucket)
    body = client.get("/backups/policies/new").get_data(as_text=True)
    assert 'value="0 2 * * *"' in body and 'value="30"' in body and 'value="12"' in body


@pytest.mark.parametrize(
    "changes,field",
    [
        ({"cron": "every night"}, "cron"),
        ({"cron": "0 25 * * *"}, "cron"),
        ({"database_url": "mysql://u:p@db.example.com/x"}, "database_url"),
        ({"database_url": "postgresql://u:p@127.0.0.2/x"}, "database_url"),
        ({"database_url": "postgresql://u:p@db.example.com/x;drop"}, "database_url"),
        ({"name": "-x"}, "name"),
    ],
)
def test_bad_policy_input_is_refused(app, client, admin, moto, bucket, changes, field):
    dest = make_destination(_team(admin), moto.url, bucket)
    token = csrf_token(client, "/backups/")
    response = client.post("/backups/policies/new", data=_policy_form(token, dest, **changes))
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'class="error"' in body[body.index(f'id="field-{field}"') :][:1500]
    assert db.session.query(BackupPolicy).count() == 0


def test_a_destination_of_another_team_cannot_be_chosen(app, client, admin, moto, bucket):
    other = make_destination(make_team(), moto.url, bucket)
    token = csrf_token(client, "/backups/")
    response = client.post("/backups/policies/new", data=_policy_form(token, other))
    assert response.status_code == 422
    assert db.session.query(BackupPolicy).count() == 0


def test_only_the_installation_owner_may_back_up_slipways_own_database(app, client, moto, bucket):
    make_user(role=Role.owner)  # the installation owner is someone else
    team = make_team()
    user = make_user(team, Role.owner)
    dest = make_destination(team, moto.url, bucket)
    own = make_policy(team, dest, None, name="own-db")
    assert Auth(client).login(user).status_code == 303
    token = csrf_token(client, "/backups/")
    response = client.post("/backups/policies/new",
                           data=_policy_form(token, dest, target_type="slipway"))  # fmt: skip
    assert response.status_code == 422 and "installation owner" in response.get_data(as_text=True)
    assert (
        client.post(f"/backups/policies/{own.id}/run", data={"csrf_token": token}).status_code
        == 403
    )
    assert db.session.query(Backup).count() == 0


@BOTH_SERVERS
def test_run_now_download_and_restore_from_the_page(app, client, admin, s3, bucket, source_db):
    src = source_db(rows=100)
    policy = make_policy(_team(admin), make_destination(_team(admin), s3.url, bucket), src.url)
    token = csrf_token(client, "/backups/")
    assert client.post(f"/backups/policies/{policy.id}/run",
                       data={"csrf_token": token}).status_code == 303  # fmt: skip
    busy = client.get("/backups/").get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in busy and "queued" in busy
    work("backup")
    backup = db.session.query(Backup).one()
    page = client.get("/backups/", headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "succeeded" in page and backup.sha256[:12] in page and "every 3s" not in page
    assert f"s3://{bucket}/{backup.object_key}" in page

    local = Path(backup.local_path).read_bytes()
    assert client.get(f"/backups/{backup.id}/download").data == local
    Path(backup.local_path).unlink()  # now it streams from S3
    response = client.get(f"/backups/{backup.id}/download")
    assert response.status_code == 200 and response.data == local

    wrong = {"csrf_token": token, "mode": "same", "confirm": "wrong"}
    refused = client.post(f"/backups/{backup.id}/restore", data=wrong)
    assert refused.status_code == 422 and db.session.query(Restore).count() == 0
    src.execute("DELETE FROM items")
    done = client.post(f"/backups/{backup.id}/restore",
                       data={"csrf_token": token, "mode": "same", "confirm": src.name})  # fmt: skip
    assert done.status_code == 303
    work("backup")
    restore = db.session.query(Restore).one()
    shown = client.get(done.headers["Location"]).get_data(as_text=True)
    assert restore.status == "succeeded" and "succeeded" in shown and "SHA-256 matches" in shown
    assert src.execute("SELECT count(*) FROM items") == [(100,)]


def test_a_viewer_sees_backups_but_cannot_act(app, client, moto, bucket, source_db):
    owner = make_user(role=Role.owner)
    team = _team(owner)
    policy = make_policy(team, make_destination(team, moto.url, bucket), source_db(rows=5).url)
    viewer = make_user(team, Role.viewer)
    assert Auth(client).login(viewer).status_code == 303
    page = client.get("/backups/").get_data(as_text=True)
    assert policy.name in page and "Run now</button>" not in page
    assert "Test connection</button>" not in page
    token = csrf_token(client, "/backups/")
    for url in (f"/backups/policies/{policy.id}/run", f"/backups/policies/{policy.id}/drill",
                f"/backups/destinations/{policy.destination_id}/test"):  # fmt: skip
        assert client.post(url, data={"csrf_token": token}).status_code == 403
    assert db.session.query(Backup).count() == 0


def test_notification_channels_keep_their_url_secret(app, client, admin):
    token = csrf_token(client, "/notifications/")
    hook = "https://hooks.example.com/services/T000/B000/url-canary-123"
    response = client.post("/notifications/", data={
        "csrf_token": token, "name": "ops", "kind": "slack", "events": ["backup.failed",
        "drill.failed"], "url": hook})  # fmt: skip
    assert response.status_code == 303
    channel = db.session.query(NotificationChannel).one()
    assert "url-canary-123" not in channel.secret and channel.events == [
        "backup.failed", "drill.failed"]  # fmt: skip
    page = client.get("/notifications/").get_data(as_text=True)
    assert "hooks.example.com" in page and "url-canary-123" not in page


@pytest.mark.parametrize(
    "data,field",
    [
        ({"kind": "webhook", "url": "http://hooks.example.com/x"}, "url"),
        ({"kind": "webhook", "url": "https://127.0.0.1/x"}, "url"),
        ({"kind": "webhook", "url": "https://[::1]/x"}, "url"),
        ({"kind": "email", "smtp_host": "10.1.2.3", "sender": "a@b.c", "to": "d@e.f"}, "smtp_host"),
        (
            {
                "kind": "email",
                "smtp_host": "mail.example.com",
                "sender": "a@b.c",
                "to": "x@y.z\r\nBcc: evil@example.com",
            },
            "to",
        ),  # fmt: skip
    ],
)
def test_bad_channel_input_is_refused(app, client, admin, data, field):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = app.config["BACKUP_ALLOWED_HOSTS"] = ()
    token = csrf_token(client, "/notifications/")
    response = client.post("/notifications/", data={"csrf_token": token, "name": "ops",
                           "events": ["backup.failed"], **data})  # fmt: skip
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'class="error"' in body[body.index(f'id="field-{field}"') :][:1500]
    assert db.session.query(NotificationChannel).count() == 0
