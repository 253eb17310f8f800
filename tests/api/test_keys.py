"""API keys as credentials: what authenticates, what is refused, and how (issue 15)."""

from __future__ import annotations

from datetime import timedelta

from app.accounts import apikeys, members
from app.extensions import db
from app.models import ApiKey, Membership, Role
from app.models.base import utcnow
from tests.api.conftest import Api, error_of, make_key
from tests.factories import make_user, team_of


def test_a_key_authenticates_as_its_member_and_reports_its_scopes(client, owner):
    key, token = make_key(owner, scopes=["deploy"])
    assert token.startswith(f"slw_{key.id}_") and token.startswith(key.prefix)
    assert key.secret_hash != token.split("_", 2)[2] and token not in key.secret_hash
    response = Api(client, token).get("/api/v1/me")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["email"] == owner.email and body["key"]["scopes"] == ["deploy"]
    assert body["team"]["role"] == "owner"
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).last_used_at is not None


def test_no_key_a_wrong_key_and_a_malformed_header_are_401_in_the_envelope(client, owner):
    key, token = make_key(owner)
    altered = token[:-1] + ("A" if token[-1] != "A" else "B")
    for headers in ({}, {"Authorization": "Bearer slw_1_nope"}, {"Authorization": token},
                    {"Authorization": f"Basic {token}"}, {"Authorization": altered}):  # fmt: skip
        response = client.get("/api/v1/me", headers=headers)
        assert response.status_code == 401, headers
        assert error_of(response)["code"] in ("unauthenticated", "invalid_key")


def test_a_session_cookie_is_not_a_credential_on_the_api(logged_in):
    client, _ = logged_in
    assert client.get("/").status_code == 200  # the session works on pages
    response = client.get("/api/v1/me")
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthenticated"
    # and a POST with the cookie is refused the same way (no CSRF surface)
    assert client.post("/api/v1/me").status_code in (401, 405)


def test_a_key_in_the_query_string_is_refused_even_when_valid(client, owner):
    _, token = make_key(owner)
    for name in ("api_key", "token", "key", "access_token"):
        response = client.get(f"/api/v1/me?{name}={token}")
        assert response.status_code == 400
        assert error_of(response)["code"] == "key_in_query"
    # also with the header: the URL may already have been logged somewhere
    bearer = {"Authorization": f"Bearer {token}"}
    response = client.get(f"/api/v1/me?api_key={token}", headers=bearer)
    assert response.status_code == 400


def test_revoked_and_expired_keys_stop_working(client, owner):
    key, token = make_key(owner)
    assert Api(client, token).get("/api/v1/me").status_code == 200
    apikeys.revoke(owner, db.session.get(ApiKey, key.id))
    assert error_of(Api(client, token).get("/api/v1/me"))["code"] == "invalid_key"
    soon, token2 = make_key(owner, expires_at=utcnow() + timedelta(seconds=60))
    assert Api(client, token2).get("/api/v1/me").status_code == 200
    db.session.get(ApiKey, soon.id).expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert Api(client, token2).get("/api/v1/me").status_code == 401


def test_a_demoted_or_removed_member_s_keys_stop_working(client, owner):
    team = team_of(owner)
    dev = make_user(team=team, role=Role.admin)
    _, token = make_key(dev, team)
    other = make_user(team=team, role=Role.admin)
    _, kept = make_key(other, team)
    membership = db.session.query(Membership).filter_by(user_id=dev.id, team_id=team.id).one()
    members.change_role(owner, membership, Role.developer)
    assert Api(client, token).get("/api/v1/me").status_code == 401
    assert Api(client, kept).get("/api/v1/me").status_code == 200  # others' keys go on
    membership = db.session.query(Membership).filter_by(user_id=other.id, team_id=team.id).one()
    members.remove(owner, membership)
    assert Api(client, kept).get("/api/v1/me").status_code == 401
    db.session.expire_all()
    reasons = {k.revoked_reason for k in db.session.query(ApiKey).all()}
    assert reasons == {"role lowered to developer", "removed from the team"}


def test_key_creation_refuses_bad_scopes_names_projects_and_past_expiry(owner):
    import pytest

    team = team_of(owner)
    for kwargs, field in (
        ({"scopes": []}, "scopes"), ({"scopes": ["root"]}, "scopes"),
        ({"name": " "}, "name"), ({"projects": [999999]}, "projects"),
        ({"expires_at": utcnow() - timedelta(days=1)}, "expires_at"),
    ):  # fmt: skip
        with pytest.raises(apikeys.KeyRefused) as refused:
            make_key(owner, team, **kwargs)
        assert refused.value.field == field
    assert db.session.query(ApiKey).count() == 0


def test_every_answer_has_a_request_id_and_a_sane_one_is_kept(client, owner):
    assert len(client.get("/login").headers["X-Request-Id"]) == 32
    _, token = make_key(owner)
    given = client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}",
                                              "X-Request-Id": "ci-run-42.step:3"})  # fmt: skip
    assert given.headers["X-Request-Id"] == "ci-run-42.step:3"
    hostile = client.get("/api/v1/me", headers={"X-Request-Id": "a\u00e9<script>" * 20})
    assert hostile.headers["X-Request-Id"] != "a\u00e9<script>" * 20


def test_unknown_routes_and_methods_under_the_api_answer_in_the_envelope(api):
    assert error_of(api.get("/api/v1/nope"))["code"] == "not_found"
    response = api.delete("/api/v1/me")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


def test_rate_limit_headers_and_429_with_retry_after(app, client, owner):
    app.config["API_RATE_LIMIT"] = "3 per minute"
    _, token = make_key(owner)
    api = Api(client, token)
    seen = [api.get("/api/v1/me") for _ in range(4)]
    assert [r.status_code for r in seen] == [200, 200, 200, 429]
    assert seen[0].headers["RateLimit-Limit"] == "3"
    assert [r.headers["RateLimit-Remaining"] for r in seen[:3]] == ["2", "1", "0"]
    assert error_of(seen[3])["code"] == "rate_limited"
    assert 1 <= int(seen[3].headers["Retry-After"]) <= 60
    # another key has its own budget; a stranger's bad tokens do not spend this one
    _, other = make_key(owner)
    assert Api(client, other).get("/api/v1/me").status_code == 200


def test_an_unexpected_failure_is_a_500_in_the_envelope_without_details(api, monkeypatch):
    from app import access

    def broken():
        raise RuntimeError("database exploded: password=hunter2")

    monkeypatch.setattr(access, "current_membership", broken)
    response = api.get("/api/v1/me")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal_error" and "hunter2" not in response.get_data(as_text=True)


def test_a_403_says_whether_the_key_s_scopes_or_the_member_s_role_refused(api_for):
    narrow = api_for(role=Role.owner, scopes=["read"])
    error = error_of(narrow.post("/api/v1/projects", json={"name": "nope"}))
    assert "scopes (read) do not allow project.create" in error["message"]
    assert error["details"] == {"action": "project.create", "scopes": ["read"]}
    viewer = api_for(role=Role.viewer, scopes=["admin"])
    error = error_of(viewer.post("/api/v1/projects", json={"name": "nope"}))
    assert error["message"] == "Your role does not allow project.create here."


def test_a_body_too_large_or_not_json_answers_in_the_envelope_and_makes_nothing(api):
    from app.models import Project

    as_json = {**api._headers(None), "Content-Type": "application/json"}
    body = b'{"name": "' + b"x" * (3 * 2**20) + b'"}'
    big = api.client.post("/api/v1/projects", data=body, headers=as_json)
    assert big.status_code == 413 and error_of(big)["code"] == "request_entity_too_large"
    form = api.client.post("/api/v1/projects", data={"name": "formdata"},
                           headers=api._headers(None))  # fmt: skip
    assert form.status_code == 415 and error_of(form)["code"] == "unsupported_media_type"
    broken = api.client.post("/api/v1/projects", data=b'{"name": ', headers=as_json)
    assert broken.status_code == 400 and error_of(broken)["code"] == "invalid_json"
    assert db.session.query(Project).count() == 0
