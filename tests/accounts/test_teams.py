"""Teams: several per user, the current one in the top bar, create, rename, settings,
delete an empty one. Everything listed is the current team's."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Membership, Role, Team, User
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of


def _post(client, url, **data):
    response = client.post(url, data={"csrf_token": csrf_token(client, "/teams"), **data})
    db.session.expire_all()  # the request wrote through its own session
    return response


def _second_team(user, name="beta", role=Role.owner):
    team = make_team(name)
    db.session.add(Membership(team_id=team.id, user_id=user.id, role=role.value))
    db.session.commit()
    return team


def test_create_team_makes_the_user_its_owner_and_switches_to_it(logged_in):
    client, user = logged_in
    response = _post(client, "/teams", name="Side project")
    assert response.status_code == 303
    team = db.session.scalar(select(Team).where(Team.name == "Side project"))
    membership = db.session.scalar(select(Membership).where(Membership.team_id == team.id))
    assert (membership.user_id, membership.role) == (user.id, "owner")
    assert db.session.get(User, user.id).current_team_id == team.id
    page = client.get("/").get_data(as_text=True)
    assert 'aria-label="Current team: Side project. Switch team"' in page
    assert db.session.scalar(
        select(func.count()).where(
            AuditEvent.action == "team.created", AuditEvent.team_id == team.id
        )
    )


def test_a_bad_team_name_re_renders_with_the_message_and_creates_nothing(logged_in):
    client, _ = logged_in
    before = db.session.scalar(select(func.count()).select_from(Team))
    response = _post(client, "/teams", name="")
    assert response.status_code == 422
    assert "This field is required" in response.get_data(as_text=True)
    response = _post(client, "/teams", name="x" * 101)
    assert response.status_code == 422
    assert db.session.scalar(select(func.count()).select_from(Team)) == before


def test_switching_scopes_the_dashboard_to_the_current_team(logged_in):
    client, user = logged_in
    first = team_of(user)
    make_project(first, "first-shop")
    second = _second_team(user)
    make_project(second, "second-shop")
    page = client.get("/").get_data(as_text=True)
    assert "first-shop" in page and "second-shop" not in page
    assert _post(client, f"/teams/{second.id}/switch").status_code == 303
    page = client.get("/").get_data(as_text=True)
    assert "second-shop" in page and "first-shop" not in page
    # The other team is one click away in the switcher.
    assert f"/teams/{first.id}/switch" in page


def test_switching_to_a_team_the_user_is_not_in_is_404_and_changes_nothing(logged_in):
    client, user = logged_in
    foreign = make_team("foreign")
    assert _post(client, f"/teams/{foreign.id}/switch").status_code == 404
    assert db.session.get(User, user.id).current_team_id is None
    assert _post(client, "/teams/999999/switch").status_code == 404


def test_a_stale_current_team_falls_back_to_the_first_team(logged_in):
    client, user = logged_in
    make_project(team_of(user), "home-shop")
    user = db.session.get(User, user.id)
    user.current_team_id = make_team("left-behind").id  # no membership there
    db.session.commit()
    assert "home-shop" in client.get("/").get_data(as_text=True)


def test_settings_rename_require_2fa_and_retention(logged_in):
    client, user = logged_in
    team = team_of(user)
    data = {"name": "Renamed", "require_2fa": "y", "audit_retention_days": "90"}
    assert _post(client, "/team/settings", **data).status_code == 303
    db.session.expire_all()
    team = db.session.get(Team, team.id)
    assert (team.name, team.require_2fa, team.audit_retention_days) == ("Renamed", True, 90)
    actions = set(
        db.session.scalars(select(AuditEvent.action).where(AuditEvent.team_id == team.id))
    )
    assert {"team.renamed", "team.settings_updated"} <= actions


def test_settings_refuse_bad_retention_with_the_message_and_change_nothing(logged_in):
    client, user = logged_in
    team = team_of(user)
    for days in ("5", "99999", "abc", ""):
        response = _post(client, "/team/settings", name="Other", audit_retention_days=days)
        assert response.status_code == 422, days
        assert 'id="field-audit_retention_days"' in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(Team, team.id).name != "Other"


def test_only_an_owner_changes_team_settings(client, auth):
    owner = make_user(role=Role.owner)
    admin = make_user(team_of(owner), Role.admin)
    auth.login(admin)
    assert client.get("/team/settings").status_code == 403
    response = _post(client, "/team/settings", name="Hijacked", audit_retention_days="365")
    assert response.status_code == 403
    db.session.expire_all()
    assert team_of(owner).name != "Hijacked"
    assert "Team settings" not in client.get("/").get_data(as_text=True)


def test_delete_an_empty_team(logged_in):
    client, user = logged_in
    spare_id = _second_team(user, "spare").id
    _post(client, f"/teams/{spare_id}/switch")
    assert client.get("/team/delete").status_code == 200
    response = _post(client, "/team/delete")
    assert response.status_code == 303
    assert db.session.get(Team, spare_id) is None
    assert db.session.scalar(select(func.count()).where(Membership.team_id == spare_id)) == 0
    row = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "team.deleted"))
    assert row.details["name"] == "spare"
    # The user works in their remaining team again.
    assert client.get("/").status_code == 200


def test_a_team_with_projects_or_the_only_team_is_not_deleted(logged_in):
    client, user = logged_in
    home = team_of(user)
    response = _post(client, "/team/delete")  # the only team
    assert response.status_code == 303
    assert db.session.get(Team, home.id) is not None
    other = _second_team(user, "busy")
    make_app(make_project(other, "busy-shop"))
    _post(client, f"/teams/{other.id}/switch")
    assert _post(client, "/team/delete").status_code == 303
    db.session.expire_all()
    assert db.session.get(Team, other.id) is not None
    page = client.get("/team/settings").get_data(as_text=True)
    assert "still has 1 project" in page


def test_a_developer_cannot_delete_the_team(client, auth):
    owner = make_user(role=Role.owner)
    team = team_of(owner)
    developer = make_user(team, Role.developer)
    _second_team(developer, "own")  # so "only team" is not why it is refused
    auth.login(developer)
    assert _post(client, "/team/delete").status_code == 403
    assert db.session.get(Team, team.id) is not None


def test_object_pages_of_another_of_my_teams_still_open(logged_in):
    client, user = logged_in
    other = _second_team(user, "other", Role.viewer)
    app = make_app(make_project(other, "elsewhere"))
    assert client.get(f"/apps/{app.id}").status_code == 200
    # ...with that team's role: a viewer there cannot edit.
    assert client.get(f"/apps/{app.id}/edit").status_code == 403
