"""``/api/v1/keys`` (issue 15): list, make (token once), revoke; a key never makes or
revokes a key broader than itself; bad input is 422 and makes nothing."""

from __future__ import annotations

from datetime import timedelta

from app.accounts import apikeys
from app.extensions import db
from app.models import ApiKey, AuditEvent, Membership, Role
from app.models.base import utcnow
from tests.api.conftest import Api, error_of, make_key
from tests.factories import make_project, make_user, team_of


def _iso(when) -> str:
    return when.isoformat().replace("+00:00", "Z")


def test_make_a_key_its_token_is_in_the_answer_only_and_works(api, client, owner):
    project = make_project(team_of(owner), "shop")
    expires = (utcnow() + timedelta(days=7)).replace(microsecond=0)
    response = api.post("/api/v1/keys", {"name": "deploy bot", "scopes": ["deploy", "read"],
                                         "project_ids": [project.id],
                                         "expires_at": _iso(expires)})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    token = body.pop("token")
    key = db.session.get(ApiKey, body["id"])
    assert body == {
        "id": key.id, "name": "deploy bot", "prefix": key.prefix, "scopes": ["read", "deploy"],
        "project_ids": [project.id], "expires_at": _iso(expires), "last_used_at": None,
        "created_at": body["created_at"], "revoked_at": None,
    }  # fmt: skip
    assert token.startswith(key.prefix) and token.split("_", 2)[2] not in key.secret_hash
    me = Api(client, token).get("/api/v1/me").get_json()
    assert me["key"]["id"] == key.id and me["team"]["id"] == team_of(owner).id
    # listed, never with its token
    listed = api.get("/api/v1/keys").get_json()
    assert [k["id"] for k in listed["data"]] == [key.id, api_key_id(api)]
    assert "token" not in listed["data"][0] and token not in str(listed)
    assert db.session.query(AuditEvent).filter_by(action="api_key.created").count() == 2


def api_key_id(api) -> int:
    return api.get("/api/v1/me").get_json()["key"]["id"]


def test_a_retry_with_the_same_idempotency_key_makes_one_key_and_never_repeats_the_token(api):
    headers = {"Idempotency-Key": "make-ci-key-1"}
    first = api.post("/api/v1/keys", {"name": "ci", "scopes": ["read"]}, headers=headers)
    assert first.status_code == 201 and first.get_json()["token"].startswith("slw_")
    again = api.post("/api/v1/keys", {"name": "ci", "scopes": ["read"]}, headers=headers)
    assert again.status_code == 409, again.get_json()
    error = error_of(again)
    assert error["code"] == "shown_once"
    assert error["details"] == {"id": first.get_json()["id"], "location": None}
    assert first.get_json()["token"] not in again.get_data(as_text=True)
    assert db.session.query(ApiKey).count() == 2  # the fixture's and one new
    import base64
    import json

    from app.extensions import redis

    stored = [json.loads(redis.client.get(k)) for k in redis.client.keys("slipway:idem:*")]
    assert stored and all(s["status"] == 409 for s in stored)
    kept = b"".join(base64.b64decode(s["body"]) for s in stored) + str(stored).encode()
    assert first.get_json()["token"].split("_", 2)[2].encode() not in kept


def test_bad_input_is_422_with_the_field_and_makes_nothing(api, owner):
    other_project = make_project(team_of(make_user()), "theirs")
    past = _iso(utcnow() - timedelta(hours=1))
    for body, field in (
        ({"scopes": ["read"]}, "name"),
        ({"name": "", "scopes": ["read"]}, "name"),
        ({"name": "x" * 101, "scopes": ["read"]}, "name"),
        ({"name": "ci", "scopes": []}, "scopes"),
        ({"name": "ci", "scopes": ["root"]}, "scopes.0"),
        ({"name": "ci", "scopes": ["read"], "project_ids": []}, "project_ids"),
        ({"name": "ci", "scopes": ["read"], "project_ids": [other_project.id]}, "project_ids"),
        ({"name": "ci", "scopes": ["read"], "project_ids": [2**70]}, "project_ids.0"),
        ({"name": "ci", "scopes": ["read"], "expires_at": past}, "expires_at"),
        ({"name": "ci", "scopes": ["read"], "expires_at": "soon"}, "expires_at"),
        ({"name": "ci", "scopes": ["read"], "team_id": 1}, "team_id"),
    ):
        response = api.post("/api/v1/keys", body)
        assert response.status_code == 422, (body, response.get_json())
        assert field in error_of(response)["details"]["fields"], (body, response.get_json())
    assert db.session.query(ApiKey).count() == 1


def test_a_key_never_makes_a_key_broader_than_itself(api_for, owner):
    team = team_of(owner)
    mine, other = make_project(team, "mine"), make_project(team, "other")
    soon = utcnow() + timedelta(days=1)
    narrow = api_for(team=team, role=Role.admin, scopes=("deploy",), projects=[mine.id])
    key = db.session.get(ApiKey, narrow.key.id)
    key.expires_at = soon
    db.session.commit()
    later, earlier = _iso(soon + timedelta(hours=1)), _iso(soon - timedelta(hours=1))
    for body, field in (
        ({"scopes": ["write"]}, "scopes"),
        ({"scopes": ["admin"]}, "scopes"),
        ({"scopes": ["read"], "expires_at": earlier}, "project_ids"),  # every project
        ({"scopes": ["read"], "project_ids": [mine.id, other.id], "expires_at": earlier},
         "project_ids"),
        ({"scopes": ["read"], "project_ids": [mine.id]}, "expires_at"),  # never expires
        ({"scopes": ["read"], "project_ids": [mine.id], "expires_at": later}, "expires_at"),
    ):  # fmt: skip
        response = narrow.post("/api/v1/keys", {"name": "child"} | body)
        assert response.status_code in (403, 422), (body, response.get_json())
        assert field in error_of(response)["details"]["fields"], (body, response.get_json())
    assert db.session.query(ApiKey).count() == 1  # only the narrow key itself
    ok = narrow.post("/api/v1/keys", {"name": "child", "scopes": ["read", "deploy"],
                                      "project_ids": [mine.id], "expires_at": earlier})  # fmt: skip
    assert ok.status_code == 201, ok.get_json()
    assert ok.get_json()["project_ids"] == [mine.id]


def test_scopes_above_the_request_keys_are_a_403_key_exceeded(api_for):
    reader = api_for(role=Role.owner, scopes=("read",))
    response = reader.post("/api/v1/keys", {"name": "escalate", "scopes": ["admin"]})
    assert response.status_code == 403
    assert error_of(response)["code"] == "key_exceeded"
    assert db.session.query(ApiKey).count() == 1
    # its own scopes it may hand on
    assert reader.post("/api/v1/keys", {"name": "r", "scopes": ["read"]}).status_code == 201


def test_list_is_the_members_keys_in_this_team_only_and_paginates(api_for, owner):
    team = team_of(owner)
    me = api_for(team=team, role=Role.developer, scopes=("read",))
    for n in range(4):
        make_key(me.user, team, scopes=["read"], name=f"k{n}")
    colleague = make_user(team=team, role=Role.developer)
    make_key(colleague, team, name="theirs")
    elsewhere = team_of(make_user())
    db.session.add(Membership(team_id=elsewhere.id, user_id=me.user.id, role="owner"))
    db.session.commit()
    make_key(me.user, elsewhere, name="other-team")
    seen, cursor = [], None
    while True:
        query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
        page = me.get("/api/v1/keys" + query).get_json()
        assert len(page["data"]) <= 2
        seen += [k["name"] for k in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["k3", "k2", "k1", "k0", "ci"]
    assert me.get("/api/v1/keys?limit=0").status_code == 422
    assert me.get("/api/v1/keys?cursor=nope").status_code == 422


def test_revoke_own_key_204_then_it_is_401_and_listed_as_revoked(api, client, owner):
    key, token = make_key(owner, name="old")
    assert Api(client, token).get("/api/v1/me").status_code == 200
    response = api.delete(f"/api/v1/keys/{key.id}")
    assert response.status_code == 204 and response.get_data() == b""
    assert Api(client, token).get("/api/v1/me").status_code == 401
    listed = {k["id"]: k for k in api.get("/api/v1/keys").get_json()["data"]}
    assert listed[key.id]["revoked_at"] is not None
    # a key may revoke itself
    assert api.delete(f"/api/v1/keys/{api_key_id(api)}").status_code == 204
    assert api.get("/api/v1/me").status_code == 401


def test_revoking_another_users_key_or_an_unknown_one_is_404_and_changes_nothing(api, owner):
    colleague = make_user(team=team_of(owner), role=Role.owner)
    theirs, token = make_key(colleague, team_of(owner))
    stranger = make_user()
    foreign, _ = make_key(stranger)
    for key_id in (theirs.id, foreign.id, 999999):
        response = api.delete(f"/api/v1/keys/{key_id}")
        assert response.status_code == 404, key_id
        assert error_of(response)["code"] == "not_found"
    db.session.expire_all()
    assert db.session.get(ApiKey, theirs.id).revoked_at is None
    assert db.session.get(ApiKey, foreign.id).revoked_at is None


def test_a_narrow_key_cannot_revoke_a_broader_key_of_its_member(api_for, owner):
    reader = api_for(role=Role.owner, scopes=("read",))
    admin_key, _ = make_key(reader.user, reader.team, scopes=["admin"])
    response = reader.delete(f"/api/v1/keys/{admin_key.id}")
    assert response.status_code == 403 and error_of(response)["code"] == "key_exceeded"
    db.session.expire_all()
    assert db.session.get(ApiKey, admin_key.id).revoked_at is None
    read_key, _ = make_key(reader.user, reader.team, scopes=["read"])
    assert reader.delete(f"/api/v1/keys/{read_key.id}").status_code == 204


def test_the_operations_are_in_the_openapi_document(api):
    paths = api.get("/api/v1/openapi.json").get_json()["paths"]
    assert set(paths["/api/v1/keys"]) == {"get", "post"}
    assert set(paths["/api/v1/keys/{key_id}"]) == {"delete"}
    created = paths["/api/v1/keys"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/ApiKeyCreated")


def test_create_uses_the_domain_function_the_page_uses(api, monkeypatch):
    calls = []
    real = apikeys.create
    monkeypatch.setattr(apikeys, "create", lambda *a, **kw: calls.append(a) or real(*a, **kw))
    assert api.post("/api/v1/keys", {"name": "ci", "scopes": ["read"]}).status_code == 201
    assert len(calls) == 1
