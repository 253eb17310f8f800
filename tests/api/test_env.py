"""/api/v1/apps/<id>/env: list (secret values never), set, remove (issue 15)."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, EnvVar, Role
from app.projects import envvars
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_app, make_project, make_team, team_of

CANARY = "canary-e7b2-secret-value"


@pytest.fixture
def web(owner):
    return make_app(make_project(team_of(owner), "shop"), "web")


def _vars() -> dict[str, EnvVar]:
    db.session.expire_all()
    return {v.key: v for v in db.session.scalars(select(EnvVar))}


def test_put_creates_a_plain_variable_and_the_list_shows_it(api, web):
    response = api.put(f"/api/v1/apps/{web.id}/env/LOG_LEVEL", json={"value": "info"})
    assert response.status_code == 200, response.get_json()
    body = shaped("EnvVar", response.get_json())
    assert body == {
        "key": "LOG_LEVEL", "value": "info", "secret": False, "updated_at": body["updated_at"]
    }  # fmt: skip
    assert response.headers["ETag"]
    listed = shaped("EnvVarList", api.get(f"/api/v1/apps/{web.id}/env").get_json())
    assert listed["data"] == [body] and listed["next_cursor"] is None
    assert _vars()["LOG_LEVEL"].value == "info"
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "env.set"))
    assert event is not None and "info" not in str(event.details)


def test_a_secret_value_is_stored_encrypted_and_never_answered(api, web):
    response = api.put(
        f"/api/v1/apps/{web.id}/env/API_TOKEN", json={"value": CANARY, "secret": True}
    )
    assert response.status_code == 200
    assert response.get_json()["value"] is None and response.get_json()["secret"] is True
    listing = api.get(f"/api/v1/apps/{web.id}/env")
    assert CANARY not in response.get_data(as_text=True) + listing.get_data(as_text=True)
    assert listing.get_json()["data"][0]["value"] is None
    stored = _vars()["API_TOKEN"]
    assert stored.value is None and CANARY not in (stored.secret_value or "")
    assert envvars.decrypted_one(stored) == CANARY
    app_page = api.get(f"/api/v1/apps/{web.id}")
    assert CANARY not in app_page.get_data(as_text=True)


def test_put_replaces_a_variable_and_can_turn_a_secret_plain(api, web):
    api.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": CANARY, "secret": True})
    response = api.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": "visible"})
    assert response.get_json()["value"] == "visible" and response.get_json()["secret"] is False
    stored = _vars()
    assert len(stored) == 1 and stored["KEY"].secret_value is None


@pytest.mark.parametrize(
    ("key", "payload", "field"),
    [
        ("1ABC", {"value": "x"}, "key"),
        ("A-B", {"value": "x"}, "key"),
        ("K" * 256, {"value": "x"}, "key"),
        ("OK", {"value": "a\x00b"}, "value"),
        ("OK", {"value": "v" * (32 * 1024 + 1)}, "value"),
        ("OK", {"value": 5}, "value"),
        ("OK", {}, "value"),
        ("OK", {"value": "x", "secret": "maybe"}, "secret"),
        ("OK", {"value": "x", "colour": "red"}, "colour"),
    ],
)
def test_put_refuses_what_the_form_refuses(api, web, key, payload, field):
    response = api.put(f"/api/v1/apps/{web.id}/env/{key}", json=payload)
    assert response.status_code == 422, response.get_json()
    assert field in error_of(response)["details"]["fields"]
    assert _vars() == {}


def test_put_with_a_stale_if_match_is_412_and_changes_nothing(api, web):
    first = api.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": "one"})
    etag = first.headers["ETag"]
    api.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": "two"})
    response = api.put(
        f"/api/v1/apps/{web.id}/env/KEY", json={"value": "three"}, headers={"If-Match": etag}
    )
    assert response.status_code == 412
    assert _vars()["KEY"].value == "two"


def test_another_team_s_app_is_404_and_a_read_or_deploy_key_is_403(api, api_for, web):
    theirs = make_app(make_project(make_team(), "theirs"), "web")
    envvars.set_var(theirs, "THEIRS", "x", secret=False)
    db.session.commit()
    assert api.get(f"/api/v1/apps/{theirs.id}/env").status_code == 404
    assert api.put(f"/api/v1/apps/{theirs.id}/env/K", json={"value": "x"}).status_code == 404
    assert api.delete(f"/api/v1/apps/{theirs.id}/env/THEIRS").status_code == 404
    for scopes in (["read"], ["deploy"]):
        key = api_for(team=web.project.team, scopes=scopes)
        assert key.get(f"/api/v1/apps/{web.id}/env").status_code == 200
        assert key.put(f"/api/v1/apps/{web.id}/env/K", json={}).status_code == 403
        assert key.delete(f"/api/v1/apps/{web.id}/env/K").status_code == 403
    viewer = api_for(team=web.project.team, role=Role.viewer)
    assert viewer.put(f"/api/v1/apps/{web.id}/env/K", json={"value": "x"}).status_code == 403
    assert set(_vars()) == {"THEIRS"}


def test_delete_removes_the_variable_and_an_unknown_key_is_404(api, web):
    api.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": "x"})
    api.put(f"/api/v1/apps/{web.id}/env/OTHER", json={"value": "y"})
    response = api.delete(f"/api/v1/apps/{web.id}/env/KEY")
    assert response.status_code == 204
    assert set(_vars()) == {"OTHER"}
    missing = api.delete(f"/api/v1/apps/{web.id}/env/KEY")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    assert db.session.scalar(select(func.count(AuditEvent.id)).where(
        AuditEvent.action == "env.deleted")) == 1  # fmt: skip


def test_a_developer_with_a_write_key_sets_variables(api_for, web):
    writer = api_for(team=web.project.team, role=Role.developer, scopes=["write"])
    response = writer.put(f"/api/v1/apps/{web.id}/env/KEY", json={"value": "x", "secret": True})
    assert response.status_code == 200
    assert writer.delete(f"/api/v1/apps/{web.id}/env/KEY").status_code == 204
