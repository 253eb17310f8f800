"""Applications through the forms, with environment variables, some secret."""

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import Application, EnvVar, Role
from app.projects import envvars
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of

CANARY = "canary-7f3a9c-secret-value"


def _app_form(project, **overrides):
    return {
        "name": "web",
        "description": "The storefront",
        "environment_id": str(project.environments[0].id),
        "source_type": "git",
        "git_url": "https://github.com/acme/web.git",
        "git_branch": "main",
        "build_context": ".",
        "dockerfile_path": "Dockerfile",
        "image": "",
        "container_port": "8000",
        "replicas": "2",
        "health_check_path": "/healthz",
        "cpu_limit": "0.5",
        "memory_limit_mb": "256",
        "env_text": "LOG_LEVEL=info\nWORKERS=4",
        "secret_env_text": f"API_TOKEN={CANARY}",
    } | overrides


@pytest.fixture
def project(logged_in):
    _, user = logged_in
    return make_project(team_of(user), "shop")


def _post(client, path, data):
    return client.post(path, data={"csrf_token": csrf_token(client, "/")} | data)


def test_create_git_app_with_env_vars(logged_in, project):
    client, _ = logged_in
    response = _post(client, f"/projects/{project.id}/apps/new", _app_form(project))
    assert response.status_code == 303, response.get_data(as_text=True)
    app = db.session.scalar(select(Application))
    assert (app.name, app.git_branch, app.replicas, app.cpu_limit, app.memory_limit_mb) == (
        "web",
        "main",
        2,
        0.5,
        256,
    )
    assert app.image is None
    values = {v.key: v for v in app.env_vars}
    assert values["LOG_LEVEL"].value == "info" and not values["LOG_LEVEL"].is_secret
    secret = values["API_TOKEN"]
    assert secret.is_secret and secret.value is None
    assert CANARY not in secret.secret_value
    assert envvars.decrypted(app)["API_TOKEN"] == CANARY

    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert "http://web.shop.localhost" in page
    assert "LOG_LEVEL" in page and "API_TOKEN" in page
    assert CANARY not in page


def test_create_image_app_clears_git_fields(logged_in, project):
    client, _ = logged_in
    form = _app_form(project, source_type="image", image="nginx:1.27", git_url="", git_branch="")
    assert _post(client, f"/projects/{project.id}/apps/new", form).status_code == 303
    app = db.session.scalar(select(Application))
    assert (app.source_type, app.image, app.git_url) == ("image", "nginx:1.27", None)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Web App", "lowercase letters"),
        ("git_url", "file:///etc/passwd", "Only https:// and ssh://"),
        ("git_branch", "-delete", "cannot start with '-'"),
        ("dockerfile_path", "../../etc/Dockerfile", "cannot leave the repository"),
        ("build_context", "/srv", "must be relative"),
        ("container_port", "70000", "between 1 and 65535"),
        ("replicas", "0", "between 1 and 10"),
        ("memory_limit_mb", "4", "between 16"),
        ("health_check_path", "health", "must start with '/'"),
        ("env_text", "GOOD=1\nBAD KEY=2", "Line 2"),
        ("secret_env_text", "1ABC=x", "Line 1"),
    ],
)
def test_bad_field_rerenders_422_with_message_and_input(logged_in, project, field, value, message):
    client, _ = logged_in
    response = _post(
        client, f"/projects/{project.id}/apps/new", _app_form(project, **{field: value})
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert message.replace("'", "&#39;") in body or message in body
    assert "The storefront" in body  # the user's other input is kept
    assert CANARY not in body  # secrets are not echoed back
    assert db.session.scalar(select(func.count(Application.id))) == 0
    assert db.session.scalar(select(func.count(EnvVar.id))) == 0


@pytest.mark.parametrize(
    ("url", "host"),
    [("https://10.1.2.3/team/site.git", "10.1.2.3"), ("http://192.168.1.20/a/b.git", "")],
)
def test_an_internal_git_url_names_the_setting_that_allows_it(logged_in, project, url, host):
    """The form says which setting lets an admin allow the host (and plain http://)."""
    client, _ = logged_in
    response = _post(client, f"/projects/{project.id}/apps/new", _app_form(project, git_url=url))
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "SLIPWAY_OUTBOUND_ALLOWED_HOSTS" in body
    if host:
        assert f"add {host} to SLIPWAY_OUTBOUND_ALLOWED_HOSTS" in body
    assert db.session.scalar(select(func.count(Application.id))) == 0


def test_image_source_needs_a_valid_image(logged_in, project):
    client, _ = logged_in
    form = _app_form(project, source_type="image", image="nginx;id")
    response = _post(client, f"/projects/{project.id}/apps/new", form)
    assert response.status_code == 422
    assert "image reference" in response.get_data(as_text=True)


def test_app_names_are_unique_per_project(logged_in, project):
    client, user = logged_in
    make_app(project, "web")
    response = _post(client, f"/projects/{project.id}/apps/new", _app_form(project))
    assert response.status_code == 422
    assert "already has an app" in response.get_data(as_text=True)
    other = make_project(team_of(user), "blog")
    assert _post(client, f"/projects/{other.id}/apps/new", _app_form(other)).status_code == 303


def test_inline_name_validation_fragment(logged_in, project):
    client, _ = logged_in
    make_app(project, "web")
    headers = {"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/")}
    taken = client.post(
        f"/projects/{project.id}/apps/validate/name", data={"name": "web"}, headers=headers
    )
    assert "already has an app" in taken.get_data(as_text=True)
    bad = client.post(
        f"/projects/{project.id}/apps/validate/name", data={"name": "X"}, headers=headers
    )
    assert "lowercase letters" in bad.get_data(as_text=True)
    fine = client.post(
        f"/projects/{project.id}/apps/validate/name", data={"name": "api"}, headers=headers
    )
    assert fine.status_code == 200 and "error" not in fine.get_data(as_text=True)


def test_edit_keeps_secrets_and_replaces_plain_vars(logged_in, project):
    client, _ = logged_in
    _post(client, f"/projects/{project.id}/apps/new", _app_form(project))
    app = db.session.scalar(select(Application))
    edit_page = client.get(f"/apps/{app.id}/edit").get_data(as_text=True)
    assert "LOG_LEVEL=info" in edit_page and CANARY not in edit_page
    form = _app_form(
        project, name="web", env_text="LOG_LEVEL=debug", secret_env_text="", replicas="3"
    )
    assert _post(client, f"/apps/{app.id}/edit", form).status_code == 303
    db.session.expire_all()
    app = db.session.get(Application, app.id)
    assert app.replicas == 3
    env = envvars.decrypted(app)
    assert env == {"API_TOKEN": CANARY, "LOG_LEVEL": "debug"}


def test_env_var_add_and_delete_with_htmx_fragment(logged_in, project):
    client, _ = logged_in
    app = make_app(project, "web")
    headers = {"HX-Request": "true", "X-CSRFToken": csrf_token(client, "/")}
    response = client.post(
        f"/apps/{app.id}/env",
        data={"key": "DB_PASSWORD", "value": CANARY, "is_secret": "y"},
        headers=headers,
    )
    assert response.status_code == 200
    fragment = response.get_data(as_text=True)
    assert fragment.lstrip().startswith('<section class="card" id="env">')
    assert "DB_PASSWORD" in fragment and CANARY not in fragment
    assert "Vary" in response.headers and "HX-Request" in response.headers["Vary"]
    var = db.session.scalar(select(EnvVar))
    response = client.post(f"/apps/{app.id}/env/{var.id}/delete", headers=headers)
    assert response.status_code == 200 and "DB_PASSWORD" not in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(EnvVar.id))) == 0


def test_env_var_with_bad_key_is_422_without_htmx_too(logged_in, project):
    client, _ = logged_in
    app = make_app(project, "web")
    response = _post(client, f"/apps/{app.id}/env", {"key": "BAD-KEY", "value": "x"})
    assert response.status_code == 422
    assert "letters, digits and" in response.get_data(as_text=True)
    assert db.session.scalar(select(func.count(EnvVar.id))) == 0


def test_delete_app_through_confirmation(logged_in, project):
    client, _ = logged_in
    app = make_app(project, "web")
    assert "Delete application web?" in client.get(f"/apps/{app.id}/delete").get_data(as_text=True)
    response = _post(client, f"/apps/{app.id}/delete", {})
    assert response.status_code == 303
    assert db.session.scalar(select(func.count(Application.id))) == 0


def test_another_teams_app_and_env_vars_are_404(logged_in):
    client, _ = logged_in
    foreign = make_app(make_project(make_team()), "hidden-app")
    envvars.set_var(foreign, "TOKEN", CANARY, secret=True)
    db.session.commit()
    var = foreign.env_vars[0]
    for path in (f"/apps/{foreign.id}", f"/apps/{foreign.id}/edit", f"/apps/{foreign.id}/delete"):
        response = client.get(path)
        assert response.status_code == 404 and "hidden-app" not in response.get_data(as_text=True)
    assert _post(client, f"/apps/{foreign.id}/env/{var.id}/delete", {}).status_code == 404
    assert _post(client, f"/apps/{foreign.id}/env", {"key": "X", "value": "1"}).status_code == 404
    assert _post(client, f"/apps/{foreign.id}/delete", {}).status_code == 404
    assert db.session.scalar(select(func.count(EnvVar.id))) == 1


def test_env_var_of_another_app_is_404(logged_in, project):
    client, _ = logged_in
    mine = make_app(project, "web")
    foreign = make_app(make_project(make_team()), "other")
    envvars.set_var(foreign, "TOKEN", "x", secret=False)
    db.session.commit()
    var = foreign.env_vars[0]
    assert _post(client, f"/apps/{mine.id}/env/{var.id}/delete", {}).status_code == 404
    assert db.session.get(EnvVar, var.id) is not None


def test_viewer_cannot_edit_or_add_env(client, auth):
    team = make_team()
    make_user(team, Role.owner)
    viewer = make_user(team, Role.viewer)
    app = make_app(make_project(team), "web")
    auth.login(viewer)
    page = client.get(f"/apps/{app.id}").get_data(as_text=True)
    assert "web" in page and "Add or replace" not in page
    assert client.get(f"/apps/{app.id}/edit").status_code == 403
    assert _post(client, f"/apps/{app.id}/env", {"key": "X", "value": "1"}).status_code == 403
    assert db.session.scalar(select(func.count(EnvVar.id))) == 0
