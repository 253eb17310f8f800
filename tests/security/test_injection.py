"""SECURITY.md cases 11 and 12 (the refusal part): hostile names, refs, paths, URLs,
images and env keys are refused with 422 and nothing is stored.

Each value is sent in an otherwise valid form, so only the hostile field can be
the reason for the refusal, and the whole database is compared before and after.
"""

from __future__ import annotations

import pytest

from app.models import Role
from tests.conftest import csrf_token

SHELL = ["x;id", "x$(id)", "x`id`", "x|id", "x\nid", "x&&id", "x>out", "x id"]

HOSTILE = {
    "name": [
        *SHELL,
        "-rf",
        " -rf",
        "--help",
        "..",
        "a..b",
        "../web",
        "web/..",
        "wеb",  # Cyrillic "е"
        "Web",
        "web\r\nX-Injected: 1",
    ],
    "git_branch": [
        "main;id",
        "main$(id)",
        "main`id`",
        "main|id",
        "main\nid",
        "main id",
        "-main",
        "--upload-pack=touch /tmp/pwned",
        "..",
        "main..evil",
        "../main",
        "feature/../../x",
        "main@{0}",
        "ext::sh",
        "main.lock",
        ".hidden",
    ],
    "git_url": [
        "https://github.com/acme/web.git;id",
        "https://github.com/acme/web$(id).git",
        "https://github.com/acme/`id`.git",
        "https://github.com/acme/web.git|id",
        "https://github.com/acme/web.git\nid",
        "https://github.com/acme/web.git id",
        "https://github.com/acme/../../etc/passwd",
        "-uhttps://github.com/acme/web.git",
        "--upload-pack=touch /tmp/pwned",
        "ext::sh -c touch% /tmp/pwned",
        "ext::sh",
        "fd::17",
        "file:///etc/passwd",
        "file://localhost/srv/git/web.git",
        "file://github.com/acme/web.git",
        "ftp://github.com/acme/web.git",
        "/srv/git/web.git",
        "./web",
        "../web",
        "~/web",
        "C:\\repos\\web",
        "https://user:hunter2@github.com/acme/web.git",
        "https://ghp_token@github.com/acme/web.git",
        "ssh://git:hunter2@github.com/acme/web.git",
        "ssh://-oProxyCommand=touch%20pwned/acme/web",
        "ssh://git@github.com:-oProxyCommand=x/acme/web",
        "ssh://-oProxyCommand=x@github.com/acme/web",
        "-oProxyCommand=x@github.com:acme/web",
        "git@github.com:-oProxyCommand=x",
        "http://github.com/acme/web.git",
        "git://github.com/acme/web.git",
        "https://github.com/acme/web.git?upload-pack=x",
        "https://127.0.0.1/acme/web.git",
        "https://localhost/acme/web.git",
    ],
    "dockerfile_path": [
        "Dockerfile;id",
        "$(id)",
        "`id`",
        "Dockerfile|id",
        "Docker\nfile",
        "-f",
        "--file=/etc/passwd",
        "..",
        "../Dockerfile",
        "sub/../../Dockerfile",
        "/etc/passwd",
        "~/Dockerfile",
        "docker file",
    ],
    "build_context": [
        "app;id",
        "$(id)",
        "`id`",
        "app|id",
        "app\nx",
        "-",
        "--build-arg=x",
        "..",
        "../",
        "app/../..",
        "/",
        "/var/run",
        "~",
    ],
    "health_check_path": [
        "/;id",
        "/$(id)",
        "/`id`",
        "/|id",
        "/health\nHost: evil",
        "/health id",
        "-x",
        "health",
        "http://evil.example/",
    ],
    "image": [
        "nginx;id",
        "nginx$(id)",
        "nginx`id`",
        "nginx|id",
        "nginx\nlatest",
        "nginx latest",
        "-nginx",
        "--privileged",
        "..",
        "../nginx",
        "nginx:../x",
        "file:///etc/passwd",
        "ext::sh",
        "NGINX",
    ],
}

ENV_KEYS = [
    "A;B",
    "A$(id)",
    "A`id`",
    "A|B",
    "A\nB",
    "A B",
    "-A",
    "..",
    "A..B",
    "A=B",
    "1ABC",
    "A-B",
    "ÄPFEL",
]

GIT_FIELDS = {"name", "git_branch", "git_url", "dockerfile_path", "build_context"}


def _cases():
    for field, values in HOSTILE.items():
        for value in values:
            yield pytest.param(field, value, id=f"{field}={value!r}")


def app_form(token: str, environment_id: int, field: str, value: str) -> dict:
    source = "image" if field == "image" else "git"
    form = {
        "csrf_token": token,
        "name": "safe-name",
        "description": "",
        "environment_id": str(environment_id),
        "source_type": source,
        "git_url": "https://github.com/acme/web.git",
        "git_branch": "main",
        "build_context": ".",
        "dockerfile_path": "Dockerfile",
        "image": "nginx:1.27",
        "container_port": "8000",
        "replicas": "1",
        "health_check_path": "/healthz",
    }
    form[field] = value
    return form


@pytest.fixture
def developer(client, member, team_a):
    member(Role.developer)
    return csrf_token(client, "/")


def _assert_refused(response, db_state, before) -> None:
    assert response.status_code == 422, response.status_code
    assert db_state() == before


# A health path that leaves its own path ('..') or names another host ('//host/',
# a network-path reference that urljoin() or a browser resolves to http://host/).
HEALTH_WEAK = [
    pytest.param(
        "health_check_path",
        value,
        id=f"health_check_path={value!r}",
    )
    for value in ("/../../admin", "//evil.example/")
]


@pytest.mark.parametrize(("field", "value"), [*_cases(), *HEALTH_WEAK])
def test_hostile_value_in_new_app_form_is_refused_and_nothing_is_stored(
    app, client, developer, team_a, db_state, field, value
):
    before = db_state()
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(developer, team_a.project.environments[0].id, field, value),
    )
    _assert_refused(response, db_state, before)


@pytest.mark.parametrize(("field", "value"), [*_cases(), *HEALTH_WEAK])
def test_hostile_value_in_app_edit_form_is_refused_and_the_app_is_unchanged(
    app, client, developer, team_a, db_state, field, value
):
    before = db_state()
    response = client.post(
        f"/apps/{team_a.application.id}/edit",
        data=app_form(developer, team_a.project.environments[0].id, field, value),
    )
    _assert_refused(response, db_state, before)


@pytest.mark.parametrize("field", sorted(HOSTILE))
def test_the_app_form_baseline_is_valid(app, client, developer, team_a, counts, field):
    """The control: the form used above is accepted when no field is hostile."""
    safe = {
        "name": "safe-name",
        "git_branch": "release/1.2",
        "git_url": "git@github.com:acme/web.git",
        "dockerfile_path": "docker/Dockerfile.prod",
        "build_context": "services/web",
        "health_check_path": "/healthz?full=1",
        "image": "ghcr.io/acme/web:1.2.3",
    }
    before = counts()["applications"]
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(developer, team_a.project.environments[0].id, field, safe[field]),
    )
    assert response.status_code == 303, response.get_data(as_text=True)
    assert counts()["applications"] == before + 1


@pytest.mark.parametrize("value", HOSTILE["name"])
def test_hostile_project_name_is_refused_and_nothing_is_stored(
    app, client, developer, team_a, db_state, value
):
    before = db_state()
    response = client.post("/projects/new", data={"csrf_token": developer, "name": value})
    _assert_refused(response, db_state, before)
    response = client.post(
        f"/projects/{team_a.project.id}/edit", data={"csrf_token": developer, "name": value}
    )
    _assert_refused(response, db_state, before)


@pytest.mark.parametrize("secret", [False, True], ids=["plain", "secret"])
@pytest.mark.parametrize("key", ENV_KEYS)
def test_hostile_env_key_is_refused_and_nothing_is_stored(
    app, client, developer, team_a, db_state, key, secret
):
    before = db_state()
    data = {"csrf_token": developer, "key": key, "value": "v"}
    if secret:
        data["is_secret"] = "y"
    for headers in ({}, {"HX-Request": "true"}):
        response = client.post(f"/apps/{team_a.application.id}/env", data=data, headers=headers)
        _assert_refused(response, db_state, before)


@pytest.mark.parametrize("textarea", ["env_text", "secret_env_text"])
@pytest.mark.parametrize("key", [k for k in ENV_KEYS if "\n" not in k and "=" not in k])
def test_hostile_env_key_in_the_app_form_is_refused_and_nothing_is_stored(
    app, client, developer, team_a, db_state, key, textarea
):
    before = db_state()
    form = app_form(developer, team_a.project.environments[0].id, "name", "safe-name")
    form[textarea] = f"GOOD=1\n{key}=value\n"
    response = client.post(f"/projects/{team_a.project.id}/apps/new", data=form)
    _assert_refused(response, db_state, before)
    form["name"] = team_a.application.name
    response = client.post(f"/apps/{team_a.application.id}/edit", data=form)
    _assert_refused(response, db_state, before)


def test_inline_validation_refuses_hostile_values_without_storing(
    app, client, developer, team_a, db_state
):
    """The htmx validate endpoint reports the error and writes nothing."""
    before = db_state()
    for field, values in HOSTILE.items():
        form = app_form(developer, team_a.project.environments[0].id, field, values[0])
        response = client.post(
            f"/projects/{team_a.project.id}/apps/validate/{field}",
            data=form,
            headers={"HX-Request": "true"},
        )
        assert response.status_code == 200
        assert 'class="error"' in response.get_data(as_text=True), field
    assert db_state() == before


def test_env_add_without_a_value_field_is_refused_not_a_crash(
    app, client, developer, team_a, db_state
):
    before = db_state()
    response = client.post(
        f"/apps/{team_a.application.id}/env", data={"csrf_token": developer, "key": "NO_VALUE"}
    )
    assert response.status_code in (303, 422)
    assert db_state() == before or response.status_code == 303


def test_nul_bytes_in_descriptions_are_refused_with_422(app, client, developer, team_a, db_state):
    before = db_state()
    response = client.post(
        "/projects/new",
        data={"csrf_token": developer, "name": "nul-proj", "description": "a\x00b"},
    )
    assert response.status_code == 422
    form = app_form(developer, team_a.project.environments[0].id, "description", "a\x00b")
    response = client.post(f"/projects/{team_a.project.id}/apps/new", data=form)
    assert response.status_code == 422
    assert db_state() == before


# SECURITY.md case 13 (seen while testing git URLs): loopback written as a single
# number, in octal, in short form or as 0 is not parsed by ipaddress, so it passes
# as a host name, yet getaddrinfo()/inet_aton() (git, curl) resolve it to 127.0.0.1
# or 0.0.0.0.
@pytest.mark.parametrize(
    "url",
    [
        "https://2130706433/acme/web.git",
        "https://0177.0.0.1/acme/web.git",
        "https://127.1/acme/web.git",
        "https://0/acme/web.git",
        "git@127.1:acme/web.git",
    ],
)
def test_git_urls_naming_loopback_in_numeric_form_are_refused(
    app, client, developer, team_a, db_state, url
):
    before = db_state()
    form = app_form(developer, team_a.project.environments[0].id, "git_url", url)
    response = client.post(f"/projects/{team_a.project.id}/apps/new", data=form)
    assert response.status_code == 422
    assert db_state() == before
