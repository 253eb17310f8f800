"""SECURITY.md case 9: a viewer cannot change anything or see secret values; a
developer cannot delete projects or applications.

Roles rank viewer < developer < admin < owner (app/models/accounts.py).
"""

from __future__ import annotations

import pytest

from app.models import Role
from tests.conftest import csrf_token


def _writes(world, token: str) -> list[tuple[str, dict]]:
    """Every state-changing request a member could send for team A's objects."""
    env_id = world.project.environments[0].id
    app_form = {
        "csrf_token": token,
        "name": "renamed",
        "description": "changed",
        "environment_id": str(env_id),
        "source_type": "image",
        "image": "nginx:1.27",
        "container_port": "80",
        "replicas": "2",
        "health_check_path": "/",
    }
    a, p = world.application.id, world.project.id
    return [
        ("/projects/new", {"csrf_token": token, "name": "viewer-made"}),
        (f"/projects/{p}/edit", {"csrf_token": token, "name": "renamed", "description": "x"}),
        (f"/projects/{p}/delete", {"csrf_token": token}),
        (f"/projects/{p}/apps/new", app_form),
        (f"/apps/{a}/edit", app_form),
        (f"/apps/{a}/delete", {"csrf_token": token}),
        (f"/apps/{a}/env", {"csrf_token": token, "key": "NEW_KEY", "value": "v"}),
        (f"/apps/{a}/env", {"csrf_token": token, "key": "API_TOKEN", "value": "replaced"}),
        (f"/apps/{a}/env/{world.plain_var.id}/delete", {"csrf_token": token}),
        (f"/apps/{a}/env/{world.secret_var.id}/delete", {"csrf_token": token}),
        (
            f"/apps/{a}/domains",
            {
                "csrf_token": token,
                "host": "viewer.example.com",
                "path_prefix": "/",
                "https_mode": "off",
                "www": "none",
            },
        ),
        (f"/apps/{a}/domains/{world.domain.id}/retry", {"csrf_token": token}),
        (f"/apps/{a}/domains/{world.domain.id}/remove", {"csrf_token": token}),
        (
            f"/apps/{a}/domains/{world.domain.id}/edit",
            {"csrf_token": token, "path_prefix": "/viewer", "https_mode": "off", "www": "none"},
        ),
        (
            f"/apps/{a}/domains/{world.domain.id}/certificate",
            {"csrf_token": token, "chain_pem": "chain", "key_pem": "key"},
        ),
    ]


def _edit_pages(world) -> list[str]:
    a, p = world.application.id, world.project.id
    return [
        "/projects/new",
        f"/projects/{p}/edit",
        f"/projects/{p}/delete",
        f"/projects/{p}/apps/new",
        f"/apps/{a}/edit",
        f"/apps/{a}/delete",
        f"/apps/{a}/domains/{world.domain.id}/remove",
        f"/apps/{a}/domains/{world.domain.id}/edit",
        f"/apps/{a}/domains/{world.domain.id}/certificate",
    ]


@pytest.mark.parametrize("headers", [{}, {"HX-Request": "true"}], ids=["html", "htmx"])
def test_a_viewer_cannot_change_anything(app, client, member, team_a, db_state, headers):
    member(Role.viewer)
    token = csrf_token(client, "/")
    before = db_state()
    for url, data in _writes(team_a, token):
        response = client.post(url, data=data, headers=headers)
        assert response.status_code == 403, (url, response.status_code)
    validate = client.post(
        f"/projects/{team_a.project.id}/apps/validate/name",
        data={"csrf_token": token, "name": "x"},
        headers=headers,
    )
    assert validate.status_code == 403
    assert db_state() == before


def test_a_viewer_gets_no_edit_forms(app, client, member, team_a):
    member(Role.viewer)
    for url in _edit_pages(team_a):
        response = client.get(url)
        assert response.status_code == 403, url
        assert "bravo" not in response.get_data(as_text=True)


def test_a_viewer_sees_no_edit_or_delete_controls(app, client, member, team_a):
    member(Role.viewer)
    app_page = client.get(f"/apps/{team_a.application.id}").get_data(as_text=True)
    project_page = client.get(f"/projects/{team_a.project.id}").get_data(as_text=True)
    assert f"/apps/{team_a.application.id}/edit" not in app_page
    assert f"/apps/{team_a.application.id}/delete" not in app_page
    assert f"/apps/{team_a.application.id}/env" not in app_page
    assert f"/projects/{team_a.project.id}/edit" not in project_page
    assert f"/projects/{team_a.project.id}/delete" not in project_page


def test_a_viewer_never_sees_secret_values(app, client, member, team_a):
    member(Role.viewer)
    pages = ["/", f"/projects/{team_a.project.id}", f"/apps/{team_a.application.id}"]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert "alpha-secret-value" not in body, url
        assert team_a.secret_var.secret_value not in body, url
    app_page = client.get(f"/apps/{team_a.application.id}").get_data(as_text=True)
    # Plain values are visible to viewers, and the secret's key is listed, masked.
    assert "alpha-plain-value" in app_page and "API_TOKEN" in app_page


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_below_admin_nobody_can_delete_projects_or_apps(
    app, client, member, team_a, db_state, role
):
    member(role)
    token = csrf_token(client, "/")
    before = db_state()
    for url in (f"/projects/{team_a.project.id}/delete", f"/apps/{team_a.application.id}/delete"):
        assert client.get(url).status_code == 403, url
        assert client.post(url, data={"csrf_token": token}).status_code == 403, url
    assert db_state() == before


def test_a_developer_edits_but_does_not_see_delete_buttons(app, client, member, team_a):
    member(Role.developer)
    app_page = client.get(f"/apps/{team_a.application.id}").get_data(as_text=True)
    assert f"/apps/{team_a.application.id}/edit" in app_page
    assert client.get(f"/apps/{team_a.application.id}/edit").status_code == 200


def test_a_developer_never_gets_secret_values_back(app, client, member, team_a):
    """Developers may replace secrets; no page, form or fragment shows the stored value."""
    member(Role.developer)
    pages = [
        f"/apps/{team_a.application.id}",
        f"/apps/{team_a.application.id}/edit",
        f"/projects/{team_a.project.id}",
        "/",
    ]
    for url in pages:
        body = client.get(url).get_data(as_text=True)
        assert "alpha-secret-value" not in body, url
    token = csrf_token(client, "/")
    fragment = client.post(
        f"/apps/{team_a.application.id}/env",
        data={"csrf_token": token, "key": "OTHER", "value": "x"},
        headers={"HX-Request": "true"},
    )
    assert fragment.status_code == 200
    assert "alpha-secret-value" not in fragment.get_data(as_text=True)


def test_an_admin_can_delete_an_app(app, client, member, team_a, counts):
    """The control for the tests above: the same request works with the role."""
    member(Role.admin)
    token = csrf_token(client, "/")
    before = counts()["applications"]
    response = client.post(f"/apps/{team_a.application.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303
    assert counts()["applications"] == before - 1


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_nobody_raises_their_own_role_through_a_form(app, client, member, team_a, role):
    """No form field (role, is_owner, team role) changes a membership."""
    from app.extensions import db
    from app.models import Membership

    user = member(role)
    token = csrf_token(client, "/")
    smuggled = {"role": "owner", "is_owner": "y", "team_role": "owner", "csrf_token": token}
    for url in (
        "/account/password",
        "/account/sessions/revoke",
        f"/apps/{team_a.application.id}/env",
        "/projects/new",
    ):
        client.post(url, data={**smuggled, "name": "role-raise", "key": "ROLE", "value": "x"})
    db.session.expire_all()
    roles = {m.role for m in db.session.query(Membership).filter_by(user_id=user.id)}
    assert roles == {role.value}
