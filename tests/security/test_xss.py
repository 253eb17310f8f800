"""SECURITY.md case 17: stored XSS. Hostile text renders as text on every page,
fragment, form, confirm dialog and flash message that shows it.

Each page is parsed: no element the payload would create (``img``, ``svg``, an
inline ``script``) and no ``on*`` attribute may appear, the raw payload must not
be in the body, and its escaped form must be (so the page really shows it).
"""

from __future__ import annotations

from html.parser import HTMLParser

import pytest
from markupsafe import escape
from sqlalchemy import select

from app.deploys.buildlog import BuildLog
from app.extensions import db
from app.models import Application, Deployment, Project, Role, Team, User
from app.projects import envvars
from tests.conftest import Auth, csrf_token
from tests.factories import PASSWORD, make_app, make_project, make_user

PAYLOADS = [
    "<img src=x onerror=alert(1)>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</textarea><script>alert(1)</script>",
]
# A build printing colours around a payload: colour markup may be added, only after escaping.
ANSI_PAYLOAD = "\x1b[31m<script>alert(1)</script>\x1b[0m"


class _Scan(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        names = {name for name, _ in attrs}
        if tag in ("img", "svg", "iframe", "object", "embed"):
            self.problems.append(f"<{tag}> element")
        if tag == "script":
            src = dict(attrs).get("src") or ""
            if not src.startswith("/static/"):
                self.problems.append(f"<script> without a static src: {attrs}")
            self._in_script = True
        for name in names:
            if name.lower().startswith("on"):
                self.problems.append(f"<{tag} {name}=...> handler")
            value = dict(attrs)[name] or ""
            if value.strip().lower().startswith("javascript:"):
                self.problems.append(f"<{tag} {name}=javascript:...>")

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.problems.append(f"inline script body: {data[:60]!r}")


def assert_inert(body: str, payload: str, where: str, shown: bool = True) -> None:
    scan = _Scan()
    scan.feed(body)
    scan.close()
    assert not scan.problems, (where, scan.problems)
    assert payload not in body, where
    if shown:
        assert str(escape(payload)) in body, f"{where}: the escaped value is not shown"


def _htmx(client, url, data):
    return client.post(url, data=data, headers={"HX-Request": "true"})


@pytest.mark.parametrize("payload", PAYLOADS)
def test_descriptions_and_env_values_entered_in_forms_render_as_text(
    app, client, member, team_a, payload
):
    member(Role.owner)
    token = csrf_token(client, "/")
    response = client.post(
        "/projects/new",
        data={"csrf_token": token, "name": "xss-proj", "description": payload},
    )
    assert response.status_code == 303
    project = db.session.scalar(select(Project).where(Project.name == "xss-proj"))
    form = {
        "csrf_token": token,
        "name": "xss-app",
        "description": payload,
        "environment_id": str(project.environments[0].id),
        "source_type": "git",
        "git_url": "https://github.com/acme/web.git",
        "git_branch": "main",
        "build_context": ".",
        "dockerfile_path": "Dockerfile",
        "container_port": "8000",
        "replicas": "1",
        "health_check_path": "/",
        "env_text": f"FROM_TEXTAREA={payload}",
    }
    response = client.post(f"/projects/{project.id}/apps/new", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)
    application = db.session.scalar(select(Application).where(Application.name == "xss-app"))
    env_url = f"/apps/{application.id}/env"

    fragment = _htmx(client, env_url, {"csrf_token": token, "key": "FROM_FORM", "value": payload})
    assert fragment.status_code == 200
    assert_inert(fragment.get_data(as_text=True), payload, "env fragment after add")

    pages = {
        "project page": f"/projects/{project.id}",
        "project edit form": f"/projects/{project.id}/edit",
        "app page": f"/apps/{application.id}",
        "app edit form": f"/apps/{application.id}/edit",
    }
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, where
        assert_inert(response.get_data(as_text=True), payload, where)
    dashboard = client.get("/").get_data(as_text=True)
    assert_inert(dashboard, payload, "dashboard", shown=False)

    var = next(v for v in application.env_vars if v.key == "FROM_FORM")
    fragment = _htmx(client, f"{env_url}/{var.id}/delete", {"csrf_token": token})
    assert fragment.status_code == 200
    assert_inert(fragment.get_data(as_text=True), payload, "env fragment after delete")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_rejected_forms_echo_hostile_text_escaped(app, client, member, team_a, payload):
    member(Role.owner)
    token = csrf_token(client, "/")
    project_form = {"csrf_token": token, "name": "Bad Name", "description": payload}
    for url in ("/projects/new", f"/projects/{team_a.project.id}/edit"):
        response = client.post(url, data=project_form)
        assert response.status_code == 422
        assert_inert(response.get_data(as_text=True), payload, url)

    app_form = {
        "csrf_token": token,
        "name": "Bad Name",
        "description": payload,
        "environment_id": str(team_a.project.environments[0].id),
        "source_type": "git",
        "git_url": "https://github.com/acme/web.git",
        "git_branch": "main",
        "env_text": f"OK={payload}",
        "container_port": "8000",
        "replicas": "1",
        "health_check_path": "/",
    }
    for url in (f"/projects/{team_a.project.id}/apps/new", f"/apps/{team_a.application.id}/edit"):
        response = client.post(url, data=app_form)
        assert response.status_code == 422
        assert_inert(response.get_data(as_text=True), payload, url)

    env = {"csrf_token": token, "key": "BAD KEY", "value": payload}
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(f"/apps/{team_a.application.id}/env", data=env, headers=headers)
        assert response.status_code == 422
        assert_inert(response.get_data(as_text=True), payload, f"env 422 {headers}")

    validate = _htmx(
        client,
        f"/projects/{team_a.project.id}/apps/validate/git_branch",
        {**app_form, "git_branch": payload},
    )
    assert_inert(validate.get_data(as_text=True), payload, "validate fragment", shown=False)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_hostile_values_written_straight_into_the_database_render_as_text(
    app, client, member, team_a, payload
):
    """Names, keys, URLs, commits and build-log lines that bypassed validation are text."""
    user = member(Role.owner)
    project = make_project(team_a.team, name=f"p{payload}")
    project.description = payload
    project.environments[0].name = payload
    application = make_app(
        project,
        name=f"a{payload}",
        git_url=payload,
        git_branch=payload,
        dockerfile_path=payload,
        build_context=payload,
        health_check_path=payload,
    )
    image_app = make_app(project, name=f"i{payload}", source_type="image", image=payload)
    envvars.set_var(application, f"K{payload}", payload, secret=False)
    envvars.set_var(application, f"S{payload}", "hidden", secret=True)
    deployment = Deployment(
        application_id=application.id,
        status="failed",
        commit_sha=payload[:40],
        commit_message=payload,
        commit_author=payload,
        git_ref=payload,
        trigger=payload[:20],
        error=payload,
    )
    db.session.add(deployment)
    user.name = payload
    db.session.commit()
    build_log = BuildLog(deployment.id)  # the real writer: rows in deployment_log_lines
    build_log.line(payload)
    build_log.line(ANSI_PAYLOAD, stream="container")
    build_log.info(payload)
    build_log.flush()

    pages = {
        "dashboard": "/",
        "project page": f"/projects/{project.id}",
        "project edit form": f"/projects/{project.id}/edit",
        "project delete confirm": f"/projects/{project.id}/delete",
        "app page": f"/apps/{application.id}",
        "image app page": f"/apps/{image_app.id}",
        "app edit form": f"/apps/{application.id}/edit",
        "app delete confirm": f"/apps/{application.id}/delete",
        "account page": "/account/",
        "deployment page": f"/deployments/{deployment.id}",
        "deployments list": f"/apps/{application.id}/deployments",
    }
    for where, url in pages.items():
        response = client.get(url)
        assert response.status_code == 200, where
        assert_inert(response.get_data(as_text=True), payload, where)

    # The partials live pages fetch: the status block and the stored log.
    partials = {
        "deployment status fragment": f"/deployments/{deployment.id}",
        "deployment log fragment": f"/deployments/{deployment.id}/log",
    }
    for where, url in partials.items():
        response = client.get(url, headers={"HX-Request": "true"})
        assert response.status_code == 200, where
        body = response.get_data(as_text=True)
        assert "<html" not in body, f"{where}: a whole page, not a fragment"
        assert_inert(body, payload, where)
    deployment_page = client.get(f"/deployments/{deployment.id}").get_data(as_text=True)
    status_fragment = client.get(
        f"/deployments/{deployment.id}", headers={"HX-Request": "true"}
    ).get_data(as_text=True)
    assert status_fragment.count(str(escape(payload))) >= 4  # message, author, ref, error
    log_fragment = client.get(f"/deployments/{deployment.id}/log").get_data(as_text=True)
    for where, body in (("deployment page", deployment_page), ("log fragment", log_fragment)):
        assert body.count(str(escape(payload))) >= 2, f"{where}: the log lines are not shown"
        assert "<script>alert(1)</script>" not in body, where
        # The colour became a class around the escaped text; the escape byte is gone.
        assert '<span class="ansi-fg-31">&lt;script&gt;alert(1)&lt;/script&gt;</span>' in body
        assert "\x1b" not in body, where

    token = csrf_token(client, "/")
    fragment = _htmx(
        client, f"/apps/{application.id}/env", {"csrf_token": token, "key": "X", "value": "x"}
    )
    assert_inert(fragment.get_data(as_text=True), payload, "env fragment (hx-confirm)")

    # Flash messages carry the deleted object's name to the next page.
    response = client.post(f"/apps/{image_app.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get(response.location).get_data(as_text=True)
    assert "deleted" in page
    assert_inert(page, payload, "flash after app delete")
    response = client.post(f"/projects/{project.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303
    page = client.get(response.location).get_data(as_text=True)
    assert "deleted" in page
    assert_inert(page, payload, "flash after project delete")


@pytest.mark.parametrize("payload", PAYLOADS)
def test_user_and_team_names_from_setup_render_as_text(app, client, payload):
    token = csrf_token(client, "/setup")
    response = client.post(
        "/setup",
        data={
            "csrf_token": token,
            "name": payload,
            "email": "owner@example.com",
            "team": payload,
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
    )
    assert response.status_code == 303
    assert db.session.scalar(select(Team.name)) == payload
    assert db.session.scalar(select(User.name)) == payload
    for url in ("/", "/account/", "/projects/new"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert_inert(response.get_data(as_text=True), payload, url)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_hostile_team_name_never_reaches_another_members_pages_raw(app, client, team_a, payload):
    team_a.team.name = payload
    db.session.commit()
    user = make_user(team_a.team, Role.viewer)
    assert Auth(client).login(user).status_code == 303
    for url in ("/", f"/projects/{team_a.project.id}", f"/apps/{team_a.application.id}"):
        response = client.get(url)
        assert response.status_code == 200
        assert_inert(response.get_data(as_text=True), payload, url, shown=False)


@pytest.mark.parametrize("payload", PAYLOADS)
def test_a_hostile_next_parameter_renders_as_text_on_the_login_page(app, client, owner, payload):
    response = client.get("/login", query_string={"next": payload})
    assert response.status_code == 200
    assert_inert(response.get_data(as_text=True), payload, "login page")
