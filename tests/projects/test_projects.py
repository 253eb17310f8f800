"""Projects through the forms: create, show, edit, delete; scoped to the team."""

from sqlalchemy import func, select

from app.extensions import db, queue
from app.models import Application, AuditEvent, Environment, Project, Role
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of


def _post(client, path, **data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/")} | data)


def test_create_project_gets_a_production_environment(logged_in):
    client, user = logged_in
    response = _post(client, "/projects/new", name="shop", description="The shop")
    assert response.status_code == 303
    project = db.session.scalar(select(Project))
    assert project.team_id == team_of(user).id
    assert [e.name for e in project.environments] == ["production"]
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "shop" in page and "production" in page


def test_bad_project_name_rerenders_422_and_stores_nothing(logged_in):
    client, _ = logged_in
    response = _post(client, "/projects/new", name="Shop Front!", description="kept")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "lowercase letters" in body and "kept" in body
    assert db.session.scalar(select(func.count(Project.id))) == 0


def test_project_names_are_unique_per_team(logged_in):
    client, user = logged_in
    make_project(team_of(user), "shop")
    response = _post(client, "/projects/new", name="shop")
    assert response.status_code == 422
    assert "already has a project" in response.get_data(as_text=True)
    other_team = make_team()
    make_project(other_team, "blog")
    assert _post(client, "/projects/new", name="blog").status_code == 303


def test_edit_project(logged_in):
    client, user = logged_in
    project = make_project(team_of(user), "shop")
    response = _post(client, f"/projects/{project.id}/edit", name="store", description="d")
    assert response.status_code == 303
    db.session.expire_all()
    assert db.session.get(Project, project.id).name == "store"


def test_delete_project_asks_first_then_removes_its_apps(logged_in):
    client, user = logged_in
    project = make_project(team_of(user), "shop")
    apps = [make_app(project, "web").id, make_app(project, "worker").id]
    confirm = client.get(f"/projects/{project.id}/delete")
    assert confirm.status_code == 200 and "Delete project shop?" in confirm.get_data(as_text=True)
    assert db.session.scalar(select(func.count(Project.id))) == 1  # GET changed nothing
    response = _post(client, f"/projects/{project.id}/delete")
    assert response.status_code == 303
    assert db.session.scalar(select(func.count(Project.id))) == 0
    assert db.session.scalar(select(func.count(Application.id))) == 0
    assert db.session.scalar(select(func.count(Environment.id))) == 0
    # Its apps' containers, routes and images go too, in the worker (it left them running).
    assert sorted(queue("default").job_ids) == sorted(f"remove-app-{i}" for i in apps)
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "project.deleted"))
    assert event.details == {"name": "shop", "apps": 2}


def test_another_teams_project_is_404(logged_in):
    client, _ = logged_in
    foreign = make_project(make_team(), "secret-project")
    for path in (
        f"/projects/{foreign.id}",
        f"/projects/{foreign.id}/edit",
        f"/projects/{foreign.id}/delete",
        f"/projects/{foreign.id}/apps/new",
    ):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "secret-project" not in response.get_data(as_text=True)
    assert _post(client, f"/projects/{foreign.id}/delete").status_code == 404
    assert db.session.get(Project, foreign.id) is not None


def test_viewer_sees_but_cannot_create_or_delete(client, auth):
    team = make_team()
    make_user(team, Role.owner)
    viewer = make_user(team, Role.viewer)
    project = make_project(team, "shop")
    auth.login(viewer)
    page = client.get(f"/projects/{project.id}").get_data(as_text=True)
    assert "shop" in page and "New application" not in page
    assert client.get("/projects/new").status_code == 403
    assert _post(client, "/projects/new", name="other").status_code == 403
    assert _post(client, f"/projects/{project.id}/delete").status_code == 403
    assert db.session.scalar(select(func.count(Project.id))) == 1


def test_developer_cannot_delete_a_project(client, auth):
    team = make_team()
    developer = make_user(team, Role.developer)
    project = make_project(team, "shop")
    auth.login(developer)
    assert _post(client, f"/projects/{project.id}/delete").status_code == 403
    assert db.session.get(Project, project.id) is not None
