"""The dashboard lists projects with their apps' state, and warns when Docker is away."""

from app.extensions import db
from app.models import Deployment
from tests.factories import make_app, make_project, make_team, team_of


def test_dashboard_lists_projects_apps_and_latest_state(logged_in):
    client, user = logged_in
    project = make_project(team_of(user), "shop")
    web = make_app(project, "web")
    make_app(project, "worker")
    db.session.add_all(
        [
            Deployment(application_id=web.id, status="failed"),
            Deployment(application_id=web.id, status="running"),
        ]
    )
    db.session.commit()
    make_project(make_team(), "not-mine")
    page = client.get("/").get_data(as_text=True)
    assert "shop" in page and "web" in page and "worker" in page
    assert "status-running" in page and "not deployed" in page
    assert "status-failed" not in page  # only the newest deployment counts
    assert "not-mine" not in page


def test_banner_when_docker_engine_is_unreachable(app, logged_in, tmp_path):
    client, _ = logged_in
    app.config["DOCKER_HOST"] = f"unix://{tmp_path}/no-docker.sock"
    page = client.get("/").get_data(as_text=True)
    assert "The Docker engine is unreachable" in page


def test_no_banner_when_docker_engine_answers(logged_in):
    """Runs against the real engine that ``make test`` starts."""
    client, _ = logged_in
    page = client.get("/").get_data(as_text=True)
    assert "The Docker engine is unreachable" not in page


def test_healthz_needs_no_session(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.get_json() == {"status": "ok"}


def test_the_app_list_comes_back_alone_to_htmx_with_apps_added_since(logged_in):
    """live.js fetches it again when an app it does not list gets a deployment."""
    client, user = logged_in
    project = make_project(team_of(user), "shop")
    make_app(project, "web")
    page = client.get("/").get_data(as_text=True)
    assert '<div id="app-list" data-live-list="apps" data-refresh-url="/">' in page
    added = make_app(project, "added-later")
    db.session.add(Deployment(application_id=added.id, status="queued"))
    db.session.commit()
    make_app(make_project(make_team(), "not-mine"), "theirs")

    response = client.get("/", headers={"HX-Request": "true"})
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="app-list"') and body.rstrip().endswith("</div>")
    assert "<html" not in body and "New project" not in body  # the list, not the page
    assert f'data-app-badge="{added.id}"' in body and "added-later" in body
    assert "status-queued" in body
    assert "not-mine" not in body and "theirs" not in body


def test_an_empty_app_list_is_still_marked_for_live_updates(logged_in):
    client, _ = logged_in
    page = client.get("/").get_data(as_text=True)
    assert "No projects yet" in page and 'data-live-list="apps"' in page
