"""SECURITY.md cases 7, 8 and 9 for project access, members and invitations.

Team A has two projects, ``shop`` and ``other``, each with an app and a deployment. A
member limited to ``shop`` sees ``shop`` only: ``other``'s pages are 404 (its existence
is not confirmed), the team-wide pages are 403, the members page is open. Every route
with a project-scoped id comes from ``url_map``, aimed at ``other``.
"""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app.accounts import invitations
from app.extensions import db
from app.models import (
    DatabaseLink,
    Deployment,
    Invitation,
    Membership,
    ProjectMembership,
    Role,
)
from tests.conftest import Auth, csrf_token
from tests.factories import make_app, make_database, make_project, make_user

# The arguments naming a project or something inside one.
PROJECT_SCOPED = {"project_id", "app_id", "application_id", "deployment_id", "var_id", "domain_id",
                  "database_id", "link_id", "volume_id"}  # fmt: skip
TEAM_WIDE_PAGES = ["/backups/", "/notifications/"]


@pytest.fixture
def two_projects(app, team_a):
    """Team A's ``shop`` (its world's project) and a second project ``other`` with an
    app, an env var, a domain and a deployment."""
    from app.models import Domain
    from app.projects import envvars

    other = make_project(team_a.team, name="other")
    other_app = make_app(other, name="other-web", description="other description")
    var = envvars.set_var(other_app, "OTHER_SETTING", "other-plain-value", secret=False)
    deployment = Deployment(application_id=other_app.id, status="failed", trigger="manual",
                            commit_sha="1" * 40, commit_message="other commit message")  # fmt: skip
    domain = Domain(application_id=other_app.id, team_id=team_a.team.id,
                    host="other-shop.example.com")  # fmt: skip
    db.session.add_all([deployment, domain])
    db.session.commit()
    database = make_database(other, "other-db", password="other-database-password")
    link = DatabaseLink(application_id=other_app.id, database_id=database.id)
    db.session.add(link)
    db.session.commit()
    from app.projects import volumes

    volume = volumes.add(other_app, label="other-data", mount_path="/data")
    ids = {
        "project_id": other.id, "app_id": other_app.id, "application_id": other_app.id,
        "deployment_id": deployment.id, "var_id": var.id, "domain_id": domain.id,
        "database_id": database.id, "link_id": link.id, "volume_id": volume.id,
    }  # fmt: skip
    return team_a.project, other, other_app, ids


def _limited(client, team_a, role: Role, project_role: Role):
    """Log ``client`` in as a member of team A with ``role``, limited to ``shop``."""
    user = make_user(team_a.team, role)
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    membership.all_projects = False
    membership.projects.append(
        ProjectMembership(project_id=team_a.project.id, role=project_role.value)
    )
    db.session.commit()
    assert Auth(client).login(user).status_code == 303
    return user


def _project_routes(flask_app, ids, methods):
    adapter = flask_app.url_map.bind("localhost")
    for rule in flask_app.url_map.iter_rules():
        args = set(rule.arguments)
        if rule.websocket or not args or not args <= PROJECT_SCOPED | {"field"}:
            continue
        if rule.endpoint.startswith("api."):
            continue  # keys, not sessions: project-limited keys in tests/api/test_api_security.py
        values = {name: ids.get(name, "name") for name in rule.arguments}
        for method in sorted(rule.methods & set(methods)):
            yield rule.endpoint, method, adapter.build(rule.endpoint, values, method=method)


OTHER_STRINGS = ("other-web", "other description", "other-plain-value", "other commit message",
                 "other-shop.example.com", "other-db", "other-database-password")  # fmt: skip


def test_a_viewer_limited_to_shop_sees_shop_and_nothing_of_other(app, client, team_a, two_projects):
    shop, other, other_app, ids = two_projects
    _limited(client, team_a, Role.viewer, Role.viewer)
    dashboard = client.get("/").get_data(as_text=True)
    assert shop.name in dashboard and team_a.application.name in dashboard
    assert f"/projects/{other.id}" not in dashboard
    for text in OTHER_STRINGS:
        assert text not in dashboard
    assert client.get(f"/projects/{shop.id}").status_code == 200
    assert client.get(f"/apps/{team_a.application.id}").status_code == 200
    requests = list(_project_routes(app, ids, ("GET",)))
    assert len(requests) >= 10
    for _, _, url in requests:
        response = client.get(url)
        assert response.status_code == 404, (url, response.status_code)
        body = response.get_data(as_text=True)
        for text in OTHER_STRINGS:
            assert text not in body, (url, text)
    for url in TEAM_WIDE_PAGES:
        assert client.get(url).status_code == 403, url
    members = client.get("/team/members/")
    assert members.status_code == 200
    assert team_a.user.email in members.get_data(as_text=True)


def test_a_developer_limited_to_shop_cannot_delete_it_or_touch_other(
    app, client, team_a, two_projects, db_state
):
    shop, other, other_app, ids = two_projects
    _limited(client, team_a, Role.developer, Role.developer)
    token = csrf_token(client, "/")
    before = db_state()
    assert client.get(f"/projects/{shop.id}/delete").status_code == 403
    assert client.post(f"/projects/{shop.id}/delete", data={"csrf_token": token}).status_code == 403
    form = {"csrf_token": token, "name": "taken", "key": "K", "value": "v", "description": "x"}
    requests = list(_project_routes(app, ids, ("POST",)))
    assert len(requests) >= 10
    for _, _, url in requests:
        response = client.post(url, data=form)
        assert response.status_code == 404, (url, response.status_code)
    for url in ("/projects/new", "/backups/policies/new"):
        assert client.post(url, data={"csrf_token": token, "name": "x"}).status_code == 403, url
    assert db_state() == before
    # The control: on shop the developer's role holds.
    assert client.get(f"/apps/{team_a.application.id}/edit").status_code == 200


def test_a_project_role_below_the_membership_role_is_what_counts(app, client, team_a, db_state):
    """A developer of the team who is only a viewer on shop cannot edit shop's app."""
    _limited(client, team_a, Role.developer, Role.viewer)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(f"/apps/{team_a.application.id}/env",
                           data={"csrf_token": token, "key": "NEW", "value": "1"})  # fmt: skip
    assert response.status_code == 403
    assert db_state() == before


def test_a_limited_member_cannot_manage_members(app, client, team_a, db_state):
    """Even an admin limited to some projects has only the team's name and members."""
    _limited(client, team_a, Role.admin, Role.admin)
    token = csrf_token(client, "/")
    before = db_state()
    form = {"csrf_token": token, "email": "", "role": "viewer", "access": "all"}
    assert client.post("/team/members/invitations", data=form).status_code == 403
    role = {"csrf_token": token, "role": "viewer"}
    assert client.post(f"/team/members/{team_a.membership.id}/role", data=role).status_code == 403
    assert db_state() == before


def test_an_invitation_limited_to_shop_gives_exactly_shop(app, client, team_a, two_projects):
    shop, other, _, _ = two_projects
    _, token = invitations.create(
        team_a.team, team_a.user, email=None, role="developer", all_projects=False,
        projects=[(shop.id, "viewer")],
    )  # fmt: skip
    form = {"csrf_token": csrf_token(client, "/login"), "name": "Limited",
            "email": "limited@example.com", "password": "a long enough password",
            "confirm": "a long enough password"}  # fmt: skip
    assert client.post(f"/invitations/{token}", data=form).status_code == 303
    assert client.get(f"/projects/{shop.id}").status_code == 200
    assert client.get(f"/projects/{other.id}").status_code == 404
    assert "other-web" not in client.get("/").get_data(as_text=True)


def test_another_teams_members_and_invitations_are_404_and_untouched(
    app, client, member, team_a, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    m, i = team_b.membership.id, team_b.invitation.id
    for url in (f"/team/members/{m}/edit", f"/team/members/{m}/remove",
                f"/team/members/{m}/transfer"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    for url, data in (
        (f"/team/members/{m}/role", {"role": "viewer"}),
        (
            f"/team/members/{m}/projects",
            {"access": "some", f"project_{team_a.project.id}": "viewer"},
        ),
        (f"/team/members/{m}/remove", {}),
        (f"/team/members/{m}/transfer", {}),
        (f"/team/members/invitations/{i}/revoke", {}),
    ):
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 404, url
        assert "bravo" not in response.get_data(as_text=True)
    listing = client.get("/team/members/").get_data(as_text=True)
    assert team_b.user.email not in listing
    assert db_state() == before


def test_an_invitation_naming_another_teams_project_is_refused(
    app, client, member, team_a, team_b, db_state
):
    """Case 8: a project id in the form is checked against the current team."""
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    form = {"csrf_token": token, "email": "", "role": "viewer", "access": "some",
            f"project_{team_b.project.id}": "viewer"}  # fmt: skip
    response = client.post("/team/members/invitations", data=form)
    assert response.status_code == 422
    assert "bravo" not in response.get_data(as_text=True)
    assert db_state() == before
    assert db.session.scalar(select(Invitation).where(Invitation.team_id == team_a.team.id)) == (
        team_a.invitation
    )
