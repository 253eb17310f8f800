"""SECURITY.md case 1: every route, every method, needs a session.

The routes come from ``app.url_map`` so a new route is covered the day it is
added. Path ids name real objects, so a route that forgot the guard would act
on them and the whole-database comparison would catch it.
"""

from __future__ import annotations

import pytest

from app.web import PUBLIC_BLUEPRINTS, PUBLIC_ENDPOINTS
from tests.conftest import csrf_token

# SECURITY.md: "Exempt: login, setup, static, health, webhooks."
ALLOWED_PUBLIC = {
    "auth.login_get",
    "auth.login_post",
    "auth.setup_get",
    "auth.setup_post",
    # Issue 11: "Forgot password?" and its one-time link (tests/accounts/test_password_reset.py).
    "auth.forgot_get",
    "auth.forgot_post",
    "auth.reset_get",
    "auth.reset_post",
    # Issue 14: an invitation link, its page and accepting it (tests/accounts/test_invitations.py).
    "invitations.show_get",
    "invitations.accept_post",
    # Issue 14: the code step of a login; the session holds only a pending login, which
    # grants nothing (tests/accounts/test_twofactor.py).
    "twofactor.login_get",
    "twofactor.login_post",
    "static",
    "health.healthz",
    # Prometheus: no session, but a bearer token (monitoring/test_prometheus.py); off by default.
    "prometheus.scrape",
    # Issue 14: single sign-on's redirect to the provider and its callback, which checks
    # the state its own session stored (tests/accounts/test_sso.py).
    "sso.login",
    "sso.callback",
}
# Issue 13: the ACME HTTP-01 answers and the preflight's probe tokens (tests/proxy).
# Issue 15: /api/v1 never takes the session: it has its own credential, an API key, and
# every operation without one is a 401 (tests/api/test_api_security.py); /api/docs is the
# API's public reference (no data).
ALLOWED_PUBLIC_BLUEPRINTS = {"webhooks", "wellknown", "api", "api_docs"}


def _is_exempt(endpoint: str) -> bool:
    return endpoint in ALLOWED_PUBLIC or endpoint.split(".")[0] in ALLOWED_PUBLIC_BLUEPRINTS


@pytest.fixture
def protected(routes):
    """(method, url) for every non-exempt rule and method (HEAD/OPTIONS left out)."""

    def listing(flask_app, world):
        found = [
            (method, url)
            for endpoint, method, url in routes(flask_app, world)
            if not _is_exempt(endpoint)
        ]
        assert found, "url_map enumeration found no protected routes"
        return found

    return listing


# Data that would be accepted if the guard were missing: a real side effect.
FORM = {
    "name": "created-anonymously",
    "description": "anonymous",
    "key": "ANON_KEY",
    "value": "anonymous",
    "git_url": "https://git.example.com/anon/repo.git",
    "git_branch": "main",
    "build_context": ".",
    "dockerfile_path": "Dockerfile",
    "source_type": "git",
    "container_port": "8000",
    "replicas": "1",
    "health_check_path": "/",
    "current": "x",
    "password": "anonymous password 123",
    "confirm": "anonymous password 123",
}


def test_only_login_setup_static_health_and_webhooks_are_public():
    """The guard's public list holds nothing beyond SECURITY.md's exemptions."""
    assert PUBLIC_ENDPOINTS <= ALLOWED_PUBLIC
    assert PUBLIC_BLUEPRINTS <= ALLOWED_PUBLIC_BLUEPRINTS


def test_anonymous_html_requests_redirect_to_login_and_change_nothing(
    app, client, team_a, db_state, protected
):
    token = csrf_token(client, "/login")
    before = db_state()
    for method, url in protected(app, team_a):
        data = {**FORM, "csrf_token": token} if method == "POST" else None
        response = client.open(url, method=method, data=data)
        assert response.status_code == 302, (method, url, response.status_code)
        assert response.location.startswith("/login"), (method, url, response.location)
        body = response.get_data(as_text=True)
        assert team_a.project.name not in body and team_a.application.name not in body
    assert db_state() == before


def test_anonymous_htmx_requests_get_401_with_hx_redirect_and_no_fragment(
    app, client, team_a, db_state, protected
):
    token = csrf_token(client, "/login")
    before = db_state()
    for method, url in protected(app, team_a):
        data = FORM if method == "POST" else None
        response = client.open(
            url,
            method=method,
            data=data,
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        assert response.status_code == 401, (method, url, response.status_code)
        assert response.headers["HX-Redirect"].startswith("/login"), (method, url)
        assert response.get_data() == b"", (method, url)
    assert db_state() == before


def test_anonymous_json_requests_get_401_error_object(app, client, team_a, db_state, protected):
    token = csrf_token(client, "/login")
    before = db_state()
    for method, url in protected(app, team_a):
        data = FORM if method == "POST" else None
        response = client.open(
            url,
            method=method,
            data=data,
            headers={"Accept": "application/json", "X-CSRFToken": token},
        )
        assert response.status_code == 401, (method, url, response.status_code)
        assert response.is_json, (method, url)
        payload = response.get_json()
        assert set(payload) == {"error"}, (method, url, payload)
        assert payload["error"]["code"] == "unauthenticated"
        body = response.get_data(as_text=True)
        assert team_a.project.name not in body and team_a.application.name not in body
    assert db_state() == before


@pytest.mark.parametrize(
    "headers",
    [{}, {"HX-Request": "true"}, {"Accept": "application/json"}],
    ids=["html", "htmx", "json"],
)
def test_anonymous_posts_without_a_token_are_refused_and_change_nothing(
    app, client, team_a, db_state, headers, protected
):
    """Without a CSRF token an anonymous POST is refused too (400 or the login answer)."""
    before = db_state()
    for method, url in protected(app, team_a):
        if method != "POST":
            continue
        response = client.post(url, data=FORM, headers=headers)
        assert response.status_code in (302, 400, 401), (url, response.status_code)
        assert team_a.project.name not in response.get_data(as_text=True)
    assert db_state() == before


def test_unknown_paths_need_a_session_too(app, client, owner):
    """A path no route matches answers the anonymous user like any protected page."""
    response = client.get("/no/such/page")
    assert response.status_code == 302
    assert response.location.startswith("/login")


def test_before_setup_every_protected_route_redirects_to_setup(app, client, db_state, protected):
    """No Installation row: nothing but setup (and static/health) answers."""
    from types import SimpleNamespace

    dummy = SimpleNamespace(ids=dict)  # every id is 1: nothing exists yet
    token = csrf_token(client, "/setup")
    before = db_state()
    for method, url in protected(app, dummy):
        data = {**FORM, "csrf_token": token} if method == "POST" else None
        response = client.open(url, method=method, data=data)
        assert response.status_code == 302, (method, url)
        assert response.location == "/setup", (method, url, response.location)
    for method, url in (("GET", "/login"), ("POST", "/login")):
        data = {"csrf_token": token, "email": "admin@example.com", "password": "admin"}
        response = client.open(url, method=method, data=data if method == "POST" else None)
        assert response.status_code == 302 and response.location == "/setup"
    assert db_state() == before
