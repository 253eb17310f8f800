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
        *_sso_writes(token),
        *_member_writes(world, token),
        *_database_writes(world, token),
        *_volume_writes(world, token),
    ]


def _database_writes(world, token: str) -> list[tuple[str, dict]]:
    """Creating, running, rotating, deleting, linking databases (developer and above)."""
    d, a = world.database.id, world.application.id
    return [
        (
            f"/projects/{world.project.id}/databases/new",
            {"csrf_token": token, "name": "viewer-db", "engine": "redis"},
        ),
        *(
            (f"/databases/{d}/{verb}", {"csrf_token": token})
            for verb in ("start", "stop", "restart", "rotate")
        ),
        (f"/databases/{d}/delete", {"csrf_token": token, "final_backup": "y"}),
        (
            f"/apps/{a}/databases/link",
            {"csrf_token": token, "database_id": str(d), "prefix": "VIEWER"},
        ),
        (f"/apps/{a}/databases/{world.link.id}/unlink", {"csrf_token": token}),
    ]


def _volume_writes(world, token: str) -> list[tuple[str, dict]]:
    """An app's Volumes tab (developer and above; purging: admin and above)."""
    a, v = world.application.id, world.volume.id
    return [
        (f"/apps/{a}/volumes", {"csrf_token": token, "label": "viewer", "mount_path": "/viewer",
                                "mode": "shared"}),
        (f"/apps/{a}/volumes/{v}/mode", {"csrf_token": token, "mode": "shared"}),
        (f"/apps/{a}/volumes/{v}/detach", {"csrf_token": token}),
        (f"/apps/{a}/volumes/{v}/reattach", {"csrf_token": token}),
        (f"/apps/{a}/volumes/{v}/purge", {"csrf_token": token}),
    ]  # fmt: skip


def _sso_writes(token: str, provider_id: int = 1) -> list[tuple[str, dict]]:
    """Single sign-on's settings: the installation's owner's only, whatever the team role."""
    provider_form = {
        "csrf_token": token, "name": "Rogue", "slug": "rogue",
        "discovery_url": "https://idp.example.com", "client_id": "c", "client_secret": "s",
        "allowed_domains": "example.com", "team_id": "1", "default_role": "admin",
        "enabled": "y",
    }  # fmt: skip
    return [
        ("/installation/sso/new", provider_form),
        (f"/installation/sso/{provider_id}/edit", provider_form),
        (f"/installation/sso/{provider_id}/delete", {"csrf_token": token}),
        ("/installation/sso/password-login", {"csrf_token": token, "change": "off"}),
    ]


def _member_writes(world, token: str) -> list[tuple[str, dict]]:
    """Managing members and invitations (admin and above)."""
    m, i = world.membership.id, world.invitation.id
    return [
        ("/team/members/invitations",
         {"csrf_token": token, "email": "", "role": "viewer", "access": "all"}),
        (f"/team/members/invitations/{i}/revoke", {"csrf_token": token}),
        (f"/team/members/{m}/role", {"csrf_token": token, "role": "viewer"}),
        (f"/team/members/{m}/projects", {"csrf_token": token, "access": "all"}),
        (f"/team/members/{m}/remove", {"csrf_token": token}),
        (f"/team/members/{m}/transfer", {"csrf_token": token}),
    ]  # fmt: skip


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
        f"/apps/{a}/volumes/{world.volume.id}/detach",
        f"/apps/{a}/volumes/{world.volume.id}/purge",
        "/installation/sso",
        "/installation/sso/new",
        f"/team/members/{world.membership.id}/edit",
        f"/team/members/{world.membership.id}/remove",
        f"/team/members/{world.membership.id}/transfer",
        f"/projects/{p}/databases/new",
        f"/databases/{world.database.id}/delete",
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
    assert f"/apps/{team_a.application.id}/databases/" not in app_page  # no link, no unlink
    d = team_a.database.id
    database_page = client.get(f"/databases/{d}").get_data(as_text=True)
    for verb in ("start", "stop", "restart", "rotate", "delete"):
        assert f"/databases/{d}/{verb}" not in database_page, verb
    assert f"/projects/{team_a.project.id}/databases/new" not in project_page
    assert f"/projects/{team_a.project.id}/edit" not in project_page
    assert f"/projects/{team_a.project.id}/delete" not in project_page


def test_a_viewer_never_sees_secret_values(app, client, member, team_a):
    member(Role.viewer)
    d = team_a.database.id
    pages = ["/", f"/projects/{team_a.project.id}", f"/apps/{team_a.application.id}",
             f"/databases/{d}", f"/databases/{d}/logs", f"/databases/{d}/metrics"]  # fmt: skip
    for url in pages:
        response = client.get(url)
        assert response.status_code == 200
        body = response.get_data(as_text=True)
        assert "alpha-secret-value" not in body, url
        assert "alpha-database-password" not in body, url
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


def test_a_developer_cannot_manage_members_or_invitations(app, client, member, team_a, db_state):
    member(Role.developer)
    token = csrf_token(client, "/")
    before = db_state()
    for url, data in _member_writes(team_a, token):
        assert client.post(url, data=data).status_code == 403, url
    assert client.get("/team/members/").status_code == 200  # reading is allowed
    assert db_state() == before


def test_an_admin_manages_members_but_not_owners(app, client, member, team_a, db_state):
    """The control: an admin may invite; the owner's membership stays out of reach."""
    member(Role.admin)
    token = csrf_token(client, "/")
    writes = _member_writes(team_a, token)
    assert client.post(writes[0][0], data=writes[0][1]).status_code == 200
    before = db_state()
    for url, data in writes[2:]:
        assert client.post(url, data=data).status_code == 403, url
    assert db_state() == before


@pytest.mark.parametrize("role", [Role.viewer, Role.developer, Role.admin])
def test_nobody_raises_their_own_role_through_the_members_page(app, client, member, team_a, role):
    from app.extensions import db
    from app.models import Membership

    user = member(role)
    mine = db.session.query(Membership).filter_by(user_id=user.id).one()
    token = csrf_token(client, "/")
    for higher in ("owner", "admin"):
        if higher != role.value:
            client.post(f"/team/members/{mine.id}/role", data={"csrf_token": token, "role": higher})
    db.session.expire_all()
    assert db.session.get(Membership, mine.id).role == role.value


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
        "/account/two-factor",
        "/account/two-factor/recovery-codes",
        "/account/two-factor/disable",
        "/reauth",
        f"/apps/{team_a.application.id}/env",
        "/projects/new",
    ):
        client.post(url, data={**smuggled, "name": "role-raise", "key": "ROLE", "value": "x"})
    db.session.expire_all()
    roles = {m.role for m in db.session.query(Membership).filter_by(user_id=user.id)}
    assert roles == {role.value}


@pytest.mark.parametrize("role", list(Role))
def test_no_team_role_reaches_the_single_sign_on_settings(
    app, client, member, team_a, db_state, role
):
    """Team A's owner ran setup; a member of any role, even owner, is not the installation's
    owner: the settings pages and every write are 403 and change nothing."""
    from app.extensions import db
    from app.models.sso import OidcProvider

    provider = OidcProvider(
        slug="acme", name="Acme", discovery_url="https://idp.example.com", client_id="slipway",
        client_secret="k1:x", allowed_domains="example.com", team_id=team_a.team.id,
    )  # fmt: skip
    db.session.add(provider)
    db.session.commit()
    member(role)
    token = csrf_token(client, "/")
    before = db_state()
    pages = ["/installation/sso", "/installation/sso/new", f"/installation/sso/{provider.id}/edit",
             f"/installation/sso/{provider.id}/delete"]  # fmt: skip
    for url in pages:
        assert client.get(url).status_code == 403, url
    for url, data in _sso_writes(token, provider.id):
        assert client.post(url, data=data).status_code == 403, url
    assert db_state() == before


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_below_admin_nobody_reads_or_exports_the_audit_log(
    app, client, member, team_a, db_state, role
):
    member(role)
    token = csrf_token(client, "/")
    before = db_state()
    for url in ("/team/audit", "/team/audit?action=member."):
        assert client.get(url).status_code == 403, url
    assert client.post("/team/audit.csv", data={"csrf_token": token}).status_code == 403
    assert db_state() == before  # no audit.exported row either


@pytest.mark.parametrize("role", [Role.admin, Role.owner])
def test_admins_and_owners_read_and_export_the_audit_log(app, client, member, team_a, role):
    """The control for the test above."""
    member(role)
    assert client.get("/team/audit").status_code == 200
    export = client.post("/team/audit.csv", data={"csrf_token": csrf_token(client, "/")})
    assert export.status_code == 200 and export.get_data(as_text=True).startswith("id,")


@pytest.mark.parametrize("role", list(Role))
def test_every_role_manages_its_own_two_factor_login(app, client, member, role):
    """Two-factor login is the user's own: every role may turn it on (and needs no team
    action for it)."""
    user = member(role)
    page = client.get("/account/two-factor")
    assert page.status_code == 200
    assert 'src="data:image/svg+xml' in page.get_data(as_text=True)
    assert client.get("/reauth?next=/").status_code == 200
    assert user.totp_enabled_at is None
