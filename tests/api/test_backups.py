"""/api/v1 backups: destinations, policies, run now, runs, restores (issue 15)."""

from __future__ import annotations

from app import crypto
from app.backups import targets
from app.extensions import db, queue
from app.models import AuditEvent, Backup, BackupDestination, BackupPolicy, Restore, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_destination, make_policy, make_user, team_of

S3 = "https://s3.example.com"
SECRET = "s3-secret-canary-0042"
DB_PASSWORD = "db-password-canary-0043"
NEW_DEST = {"name": "offsite", "endpoint_url": S3, "bucket": "acme-backups",
            "access_key_id": "AKIA1", "secret_access_key": SECRET}  # fmt: skip


def _no_secret(response, *secrets):
    text = response.get_data(as_text=True)
    for secret in secrets:
        assert secret not in text


def _world(owner):
    team = team_of(owner)
    dest = make_destination(team, S3, "acme")
    policy = make_policy(team, dest, f"postgresql://app:{DB_PASSWORD}@db.example.com:5432/shop")
    return team, dest, policy


# ---- destinations ----------------------------------------------------------------


def test_create_a_destination_keeps_the_secret_encrypted_and_never_answers_it(api, owner):
    response = api.post("/api/v1/backups/destinations", json=NEW_DEST)
    assert response.status_code == 201, response.get_json()
    body = shaped("Destination", response.get_json())
    assert body["name"] == "offsite" and body["has_secret_key"] is True
    assert body["region"] == "us-east-1" and body["prefix"] == "" and body["path_style"] is False
    assert response.headers["Location"] == f"/api/v1/backups/destinations/{body['id']}"
    _no_secret(response, SECRET)
    dest = db.session.get(BackupDestination, body["id"])
    assert dest.team_id == team_of(owner).id and SECRET not in dest.secret_access_key
    assert crypto.decrypt(dest.secret_access_key, context=targets.S3_SECRET) == SECRET
    event = db.session.query(AuditEvent).filter_by(action="backup_destination.saved").one()
    assert event.details["api_key_id"] is not None
    listed = api.get("/api/v1/backups/destinations")
    assert [d["id"] for d in listed.get_json()["data"]] == [body["id"]]
    _no_secret(listed, SECRET)
    one = api.get(f"/api/v1/backups/destinations/{body['id']}")
    assert one.status_code == 200 and one.headers["ETag"] and one.get_json() == body


def test_a_destination_refuses_internal_and_plain_http_endpoints_and_bad_names(api):
    for field, value in (("endpoint_url", "https://10.0.0.5"), ("endpoint_url", "http://s3.x.io"),
                         ("endpoint_url", "https://localhost:9000"), ("name", "Not A Slug"),
                         ("bucket", "UPPER_case"), ("secret_access_key", "")):  # fmt: skip
        response = api.post("/api/v1/backups/destinations", json=NEW_DEST | {field: value})
        assert response.status_code == 422, (field, value, response.get_json())
        assert field in error_of(response)["details"]["fields"], (field, value)
    for extra in ({"secret": "x"}, {"path_style": "maybe"}, {"name": "x" * 64},
                  {"access_key_id": "AKIA\x00"}):  # fmt: skip
        response = api.post("/api/v1/backups/destinations", json=NEW_DEST | extra)
        assert response.status_code == 422, extra
    assert db.session.query(BackupDestination).count() == 0


def test_an_allow_listed_internal_endpoint_is_accepted(api, app):
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ("127.0.0.1",)
    response = api.post("/api/v1/backups/destinations",
                        json=NEW_DEST | {"endpoint_url": "http://127.0.0.1:9000"})  # fmt: skip
    assert response.status_code == 201, response.get_json()


def test_a_taken_destination_name_is_422_on_name(api, owner):
    make_destination(team_of(owner), S3, "acme", name="offsite")
    response = api.post("/api/v1/backups/destinations", json=NEW_DEST)
    assert response.status_code == 422
    assert "already" in error_of(response)["details"]["fields"]["name"]
    assert db.session.query(BackupDestination).count() == 1


def test_patch_a_destination_keeps_the_stored_secret_unless_one_is_given(api, owner):
    dest = make_destination(team_of(owner), S3, "acme")
    stored = dest.secret_access_key
    url = f"/api/v1/backups/destinations/{dest.id}"
    etag = api.get(url).headers["ETag"]
    response = api.patch(url, json={"bucket": "other-bucket"}, headers={"If-Match": etag})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["bucket"] == "other-bucket" and response.headers["ETag"] != etag
    db.session.expire_all()
    dest = db.session.get(BackupDestination, dest.id)
    assert dest.bucket == "other-bucket" and dest.secret_access_key == stored
    assert dest.endpoint_url == S3 and dest.path_style is True  # untouched fields stay
    response = api.patch(url, json={"secret_access_key": SECRET})
    assert response.status_code == 200
    _no_secret(response, SECRET)
    db.session.expire_all()
    secret = db.session.get(BackupDestination, dest.id).secret_access_key
    assert crypto.decrypt(secret, context=targets.S3_SECRET) == SECRET


def test_patch_with_a_stale_etag_is_412_and_changes_nothing(api, owner):
    dest = make_destination(team_of(owner), S3, "acme")
    url = f"/api/v1/backups/destinations/{dest.id}"
    etag = api.get(url).headers["ETag"]
    assert api.patch(url, json={"bucket": "second"}).status_code == 200
    response = api.patch(url, json={"bucket": "third"}, headers={"If-Match": etag})
    assert response.status_code == 412
    assert error_of(response)["code"] == "precondition_failed"
    db.session.expire_all()
    assert db.session.get(BackupDestination, dest.id).bucket == "second"


def test_patch_bad_input_is_422_and_changes_nothing(api, owner):
    dest = make_destination(team_of(owner), S3, "acme")
    url = f"/api/v1/backups/destinations/{dest.id}"
    response = api.patch(url, json={"endpoint_url": "https://192.168.1.1"})
    assert response.status_code == 422
    assert "endpoint_url" in error_of(response)["details"]["fields"]
    db.session.expire_all()
    assert db.session.get(BackupDestination, dest.id).endpoint_url == S3


def test_delete_a_destination_in_use_is_409_then_204_once_free(api, owner):
    team, dest, policy = _world(owner)
    url = f"/api/v1/backups/destinations/{dest.id}"
    response = api.delete(url)
    assert response.status_code == 409 and error_of(response)["code"] == "in_use"
    assert api.delete(f"/api/v1/backups/policies/{policy.id}").status_code == 204
    assert api.delete(url).status_code == 204
    assert db.session.query(BackupDestination).count() == 0
    assert api.get(url).status_code == 404


def test_another_team_s_destination_is_404_and_unchanged(api, api_for):
    stranger = api_for()
    theirs = make_destination(stranger.team, S3, "theirs")
    url = f"/api/v1/backups/destinations/{theirs.id}"
    assert api.get(url).status_code == 404
    assert api.patch(url, json={"bucket": "mine"}).status_code == 404
    assert api.delete(url).status_code == 404
    db.session.expire_all()
    assert db.session.get(BackupDestination, theirs.id).bucket == "theirs"
    assert api.get("/api/v1/backups/destinations").get_json()["data"] == []


def test_a_read_key_or_a_developer_may_look_but_not_manage(api_for, owner):
    team = team_of(owner)
    dest = make_destination(team, S3, "acme")
    reader = api_for(team=team, scopes=("read",))
    developer = api_for(team=team, role=Role.developer)
    for client in (reader, developer):
        assert client.get("/api/v1/backups/destinations").status_code == 200
        # the gate answers before the body is read: an empty body is a 403, not a 422
        assert client.post("/api/v1/backups/destinations", json={}).status_code == 403
        url = f"/api/v1/backups/destinations/{dest.id}"
        assert client.patch(url, json={"bucket": "x"}).status_code == 403
        assert client.delete(url).status_code == 403
    assert db.session.query(BackupDestination).count() == 1


def test_destinations_page_by_cursor(api, owner):
    team = team_of(owner)
    made = [make_destination(team, S3, f"b{i}").id for i in range(5)]
    seen, cursor = [], None
    while True:
        response = api.get("/api/v1/backups/destinations", query_string={
            "limit": 2, **({"cursor": cursor} if cursor else {})})  # fmt: skip
        body = response.get_json()
        assert len(body["data"]) <= 2
        seen += [d["id"] for d in body["data"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == made
    assert api.get("/api/v1/backups/destinations?limit=0").status_code == 422
    assert api.get("/api/v1/backups/destinations?cursor=nope").status_code == 422


# ---- policies ---------------------------------------------------------------------


def test_create_a_policy_stores_the_password_apart_and_never_answers_it(api, owner):
    dest = make_destination(team_of(owner), S3, "acme")
    response = api.post("/api/v1/backups/policies", json={
        "name": "shop", "destination_id": dest.id, "cron": "30 3 * * *",
        "database_url": f"postgresql://app:{DB_PASSWORD}@db.example.com:5432/shop",
    })  # fmt: skip
    assert response.status_code == 201, response.get_json()
    body = shaped("Policy", response.get_json())
    assert body["database_url"] == "postgresql://app@db.example.com:5432/shop"
    assert body["has_database_password"] is True and body["cron"] == "30 3 * * *"
    assert body["keep_daily"] == 30 and body["enabled"] is True
    _no_secret(response, DB_PASSWORD)
    _no_secret(api.get("/api/v1/backups/policies"), DB_PASSWORD)
    policy = db.session.get(BackupPolicy, body["id"])
    assert DB_PASSWORD not in (policy.database_url + policy.database_password)


def test_a_policy_refuses_bad_input(api, api_for, owner):
    team = team_of(owner)
    dest = make_destination(team, S3, "acme")
    theirs = make_destination(api_for().team, S3, "theirs")
    good = {"name": "shop", "destination_id": dest.id,
            "database_url": "postgresql://app:pw@db.example.com:5432/shop"}  # fmt: skip
    for change, field in (
        ({"cron": "every day"}, "cron"),
        ({"database_url": "postgresql://app:pw@127.0.0.1:5432/shop"}, "database_url"),
        ({"database_url": None}, "database_url"),
        ({"destination_id": theirs.id}, "destination_id"),
        ({"keep_daily": -1}, "keep_daily"),
        ({"target_type": "mysql"}, "target_type"),
    ):
        response = api.post("/api/v1/backups/policies", json=good | change)
        assert response.status_code == 422, (change, response.get_json())
        assert field in error_of(response)["details"]["fields"], change
    assert db.session.query(BackupPolicy).count() == 0


def test_only_the_installation_owner_backs_up_slipway_s_own_database(api, api_for, owner):
    team = team_of(owner)
    dest = make_destination(team, S3, "acme")
    admin = api_for(team=team, role=Role.admin)  # not the installation's owner
    body = {"name": "own", "target_type": "slipway", "destination_id": dest.id}
    response = admin.post("/api/v1/backups/policies", json=body)
    assert response.status_code == 422
    assert "target_type" in error_of(response)["details"]["fields"]
    assert api.post("/api/v1/backups/policies", json=body).status_code == 201
    own = db.session.query(BackupPolicy).filter_by(name="own").one()
    assert admin.post(f"/api/v1/backups/policies/{own.id}/run", json={}).status_code == 403
    assert admin.get(f"/api/v1/backups/policies/{own.id}").status_code == 200


def test_patch_a_policy_keeps_the_url_unless_given_and_checks_etag(api, owner):
    _, _, policy = _world(owner)
    url = f"/api/v1/backups/policies/{policy.id}"
    stored = (policy.database_url, policy.database_password)
    etag = api.get(url).headers["ETag"]
    response = api.patch(url, json={"enabled": False, "keep_weekly": 4},
                         headers={"If-Match": etag})  # fmt: skip
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["enabled"] is False and response.get_json()["keep_weekly"] == 4
    db.session.expire_all()
    policy = db.session.get(BackupPolicy, policy.id)
    assert (policy.database_url, policy.database_password) == stored
    assert policy.enabled is False
    stale = api.patch(url, json={"enabled": True}, headers={"If-Match": etag})
    assert stale.status_code == 412
    bad = api.patch(url, json={"cron": "61 * * * *"})
    assert bad.status_code == 422 and "cron" in error_of(bad)["details"]["fields"]
    db.session.expire_all()
    assert db.session.get(BackupPolicy, policy.id).enabled is False


def test_run_now_queues_a_backup_and_points_at_it(api, owner):
    _, _, policy = _world(owner)
    response = api.post(f"/api/v1/backups/policies/{policy.id}/run", json={})
    assert response.status_code == 202, response.get_json()
    body = shaped("Backup", response.get_json())
    assert body["status"] == "queued" and body["trigger"] == "manual" and body["final"] is False
    assert response.headers["Location"] == f"/api/v1/backups/{body['id']}" == body["url"]
    backup = db.session.get(Backup, body["id"])
    assert backup.policy_id == policy.id
    assert queue("backup").fetch_job(backup.rq_job_id) is not None
    assert api.get(body["url"]).get_json()["id"] == body["id"]


def test_backups_list_newest_first_filtered_by_policy(api, api_for, owner):
    team, dest, policy = _world(owner)
    other = make_policy(team, dest, None)
    rows = [Backup(team_id=team.id, policy_id=p.id, trigger="manual")
            for p in (policy, other, policy)]  # fmt: skip
    stranger = api_for()
    their_policy = make_policy(stranger.team, make_destination(stranger.team, S3, "t"), None)
    rows.append(Backup(team_id=stranger.team.id, policy_id=their_policy.id))
    db.session.add_all(rows)
    db.session.commit()
    ids = [r.id for r in rows]
    listed = api.get("/api/v1/backups").get_json()
    assert [b["id"] for b in listed["data"]] == ids[2::-1]
    mine = api.get(f"/api/v1/backups?policy_id={policy.id}").get_json()["data"]
    assert [b["id"] for b in mine] == [ids[2], ids[0]]
    first = api.get("/api/v1/backups?limit=2").get_json()
    assert len(first["data"]) == 2 and first["next_cursor"]
    rest = api.get(f"/api/v1/backups?limit=2&cursor={first['next_cursor']}").get_json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    assert api.get(f"/api/v1/backups/{ids[3]}").status_code == 404
    assert api.get("/api/v1/backups?policy_id=abc").status_code == 422


# ---- restores ---------------------------------------------------------------------


def _succeeded(team, policy) -> Backup:
    backup = Backup(team_id=team.id, policy_id=policy.id, trigger="manual", status="succeeded",
                    uploaded=True, object_key="slipway/shop/x.dump")  # fmt: skip
    db.session.add(backup)
    db.session.commit()
    return backup


def test_restore_into_a_new_database(api, owner):
    team, _, policy = _world(owner)
    backup = _succeeded(team, policy)
    response = api.post(f"/api/v1/backups/{backup.id}/restore",
                        json={"mode": "new", "new_database": "shop_copy"})  # fmt: skip
    assert response.status_code == 202, response.get_json()
    body = shaped("Restore", response.get_json())
    assert body["kind"] == "restore" and body["target_database"] == "shop_copy"
    assert body["status"] == "queued" and body["user_id"] == owner.id
    assert response.headers["Location"] == f"/api/v1/restores/{body['id']}"
    assert db.session.get(Restore, body["id"]).backup_id == backup.id
    assert queue("backup").fetch_job(f"restore-{body['id']}") is not None
    assert api.get(body["url"]).get_json()["id"] == body["id"]
    event = db.session.query(AuditEvent).filter_by(action="backup.restore_started").one()
    assert event.details["api_key_id"]


def test_restore_over_the_same_database_needs_its_name_typed(api, owner):
    team, _, policy = _world(owner)
    backup = _succeeded(team, policy)
    url = f"/api/v1/backups/{backup.id}/restore"
    for body in ({"mode": "same"}, {"mode": "same", "confirm": "shop2"}):
        response = api.post(url, json=body)
        assert response.status_code == 422
        assert "shop" in error_of(response)["details"]["fields"]["confirm"]
    bad_name = api.post(url, json={"mode": "new", "new_database": "Bad-Name"})
    assert "new_database" in error_of(bad_name)["details"]["fields"]
    assert db.session.query(Restore).count() == 0
    response = api.post(url, json={"mode": "same", "confirm": "shop"})
    assert response.status_code == 202
    assert response.get_json()["target_database"] is None


def test_restore_refusals_copy_own_database_scope_and_role(api, api_for, owner):
    team, dest, policy = _world(owner)
    failed = Backup(team_id=team.id, policy_id=policy.id, status="failed")
    db.session.add(failed)
    db.session.commit()
    response = api.post(f"/api/v1/backups/{failed.id}/restore",
                        json={"mode": "new", "new_database": "x"})  # fmt: skip
    assert response.status_code == 409
    own = _succeeded(team, make_policy(team, dest, None))
    response = api.post(f"/api/v1/backups/{own.id}/restore", json={"mode": "same",
                        "confirm": "slipway"})  # fmt: skip
    assert response.status_code == 422 and "mode" in error_of(response)["details"]["fields"]
    backup = _succeeded(team, policy)
    url = f"/api/v1/backups/{backup.id}/restore"
    write = api_for(team=team, scopes=("write",))  # write holds backup.manage, not restore
    assert write.post(url, json={}).status_code == 403
    developer = api_for(team=team, role=Role.developer)
    assert developer.post(url, json={}).status_code == 403
    stranger = api_for()
    assert stranger.post(url, json={}).status_code == 404
    assert db.session.query(Restore).count() == 0


def test_another_team_s_policy_backup_and_restore_are_404(api, api_for):
    stranger = api_for()
    s_team = stranger.team
    policy = make_policy(s_team, make_destination(s_team, S3, "t"), None)
    backup = _succeeded(s_team, policy)
    restore = Restore(team_id=s_team.id, backup_id=backup.id, kind="drill")
    db.session.add(restore)
    db.session.commit()
    for path in (f"/api/v1/backups/policies/{policy.id}", f"/api/v1/backups/{backup.id}",
                 f"/api/v1/restores/{restore.id}"):  # fmt: skip
        assert api.get(path).status_code == 404, path
    assert api.post(f"/api/v1/backups/policies/{policy.id}/run", json={}).status_code == 404
    assert api.patch(f"/api/v1/backups/policies/{policy.id}", json={"enabled": False}
                     ).status_code == 404  # fmt: skip
    assert db.session.query(Backup).count() == 1
    assert stranger.get(f"/api/v1/restores/{restore.id}").status_code == 200


def test_the_first_gate_question_is_the_declared_action(api, owner, monkeypatch):
    """Each handler's first question to the gate is its operation's action."""
    from app import access
    from app.web.api import spec

    team, dest, policy = _world(owner)
    backup = _succeeded(team, policy)
    asked = []
    real = access.decide

    def spy(user, action, resource):
        asked.append(action)
        return real(user, action, resource)

    monkeypatch.setattr(access, "decide", spy)
    calls = [
        ("get", "/api/v1/backups/destinations", "destinations_list"),
        ("post", "/api/v1/backups/destinations", "destination_create"),
        ("patch", f"/api/v1/backups/destinations/{dest.id}", "destination_update"),
        ("post", "/api/v1/backups/policies", "policy_create"),
        ("post", f"/api/v1/backups/policies/{policy.id}/run", "policy_run"),
        ("get", f"/api/v1/backups/{backup.id}", "backup_get"),
        ("post", f"/api/v1/backups/{backup.id}/restore", "backup_restore"),
    ]
    for method, path, endpoint in calls:
        asked.clear()
        getattr(api, method)(path, **({} if method == "get" else {"json": {}}))
        assert asked and asked[0] == spec.OPERATIONS[f"api.{endpoint}"].action, (path, asked)


def test_another_member_sees_the_same_backups(api_for, owner):
    team = team_of(owner)
    viewer = api_for(team=team, role=Role.viewer, user=make_user(team=team, role=Role.viewer))
    make_destination(team, S3, "acme")
    assert len(viewer.get("/api/v1/backups/destinations").get_json()["data"]) == 1
