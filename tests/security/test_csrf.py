"""SECURITY.md case 18: a cross-site form post to any state-changing route fails
and changes nothing; htmx sends the token in the ``X-CSRFToken`` header.

POST routes come from ``app.url_map``. Each one gets a payload that would
succeed with the right token (the control test proves it), so a refusal is the
token check and nothing else.
"""

from __future__ import annotations

import re

import pytest

from app.extensions import db
from app.models import Role
from tests.conftest import Auth, csrf_token
from tests.factories import PASSWORD, make_user

CROSS_SITE = {"Origin": "https://evil.example", "Referer": "https://evil.example/page"}


def _payload(endpoint: str, world) -> dict:
    """Form data that the route accepts when the token is right."""
    app_form = {
        "name": "csrf-made",
        "description": "made by a forged request",
        "environment_id": str(world.project.environments[0].id),
        "source_type": "image",
        "image": "nginx:1.27",
        "container_port": "80",
        "replicas": "1",
        "health_check_path": "/",
        "env_text": "FORGED=1",
    }
    new_password = "forged new password!"
    return {
        "projects.new_post": {"name": "csrf-made"},
        "projects.edit_post": {"name": "csrf-renamed", "description": "forged"},
        "apps.new_post": app_form,
        "apps.edit_post": app_form,
        "apps.validate_field": app_form,
        "apps.env_add": {"key": "FORGED", "value": "1"},
        "databases.new_post": {"name": "csrf-db", "engine": "redis"},
        "databases.delete_post": {"final_backup": "y"},
        "settings.password_post": {
            "current": PASSWORD,
            "password": new_password,
            "confirm": new_password,
        },
    }.get(endpoint, {})


# Routes whose control request (right token, payload above) must change the database.
MUST_CHANGE_STATE = {
    "auth.logout_post",
    "projects.new_post",
    "projects.edit_post",
    "projects.delete_post",
    "apps.new_post",
    "apps.edit_post",
    "apps.delete_post",
    "apps.env_add",
    "apps.env_delete",
    "databases.new_post",
    "databases.delete_post",
    "databases.unlink_post",
    "settings.password_post",
    "settings.sessions_revoke_post",
}


@pytest.fixture
def post_routes(routes):
    """(endpoint, url) for every POST rule but the anonymous login and setup forms."""

    def listing(flask_app, world) -> list[tuple[str, str]]:
        found = [
            (endpoint, url)
            for endpoint, _, url in routes(flask_app, world, methods=("POST",))
            if endpoint not in ("auth.login_post", "auth.setup_post")
            # Webhooks carry no session and no token: they authenticate by
            # signature (SECURITY.md cases 21-22, tests/security/test_webhooks.py).
            and not endpoint.startswith("webhooks.")
            # /api/v1 never reads the session, so it has no CSRF surface: a cookie alone
            # is a 401 there (tests/api/test_api_security.py).
            and not endpoint.startswith("api.")
        ]
        assert len(found) >= 10
        return found

    return listing


@pytest.fixture
def owner_client(client, team_a):
    assert Auth(client).login(team_a.user).status_code == 303
    return client


def _still_logged_in(client) -> bool:
    return client.get("/account/").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        CROSS_SITE,
        {**CROSS_SITE, "HX-Request": "true"},
        {**CROSS_SITE, "Accept": "application/json"},
    ],
    ids=["html", "htmx", "json"],
)
def test_every_post_route_without_a_token_is_refused_and_changes_nothing(
    app, owner_client, team_a, db_state, headers, post_routes
):
    before = db_state()
    for endpoint, url in post_routes(app, team_a):
        response = owner_client.post(url, data=_payload(endpoint, team_a), headers=headers)
        assert response.status_code == 400, (endpoint, response.status_code)
        if "Accept" in headers:
            assert response.get_json()["error"]["code"] == "csrf_failed"
    assert db_state() == before
    assert _still_logged_in(owner_client)


@pytest.mark.parametrize("where", ["form field", "X-CSRFToken header"])
def test_every_post_route_refuses_another_sessions_token(
    app, owner_client, team_a, db_state, foreign_token, where, post_routes
):
    before = db_state()
    for endpoint, url in post_routes(app, team_a):
        data = _payload(endpoint, team_a)
        headers = dict(CROSS_SITE)
        if where == "form field":
            data = {**data, "csrf_token": foreign_token}
        else:
            headers["X-CSRFToken"] = foreign_token
        response = owner_client.post(url, data=data, headers=headers)
        assert response.status_code == 400, (endpoint, response.status_code)
    assert db_state() == before


def test_a_token_from_the_same_users_other_browser_is_refused(
    app, owner_client, team_a, db_state, new_client, post_routes
):
    other_browser = new_client()
    assert Auth(other_browser).login(team_a.user).status_code == 303
    token = csrf_token(other_browser, "/")
    before = db_state()
    for endpoint, url in post_routes(app, team_a):
        data = {**_payload(endpoint, team_a), "csrf_token": token}
        assert owner_client.post(url, data=data).status_code == 400, endpoint
    assert db_state() == before


@pytest.mark.parametrize(
    "token",
    [
        "",
        "null",
        "undefined",
        "x" * 40,
        "IjAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAi.Zz.AAA",
    ],
    ids=["empty", "null", "undefined", "junk", "forged-signature"],
)
def test_every_post_route_refuses_a_garbage_token(
    app, owner_client, team_a, db_state, token, post_routes
):
    before = db_state()
    for endpoint, url in post_routes(app, team_a):
        data = {**_payload(endpoint, team_a), "csrf_token": token}
        response = owner_client.post(url, data=data, headers={"X-CSRFToken": token})
        assert response.status_code == 400, (endpoint, response.status_code)
    assert db_state() == before


def _flip(char: str) -> str:
    return "A" if char != "A" else "B"


def test_a_token_tampered_by_one_character_is_refused(
    app, owner_client, team_a, db_state, post_routes
):
    """One character changed in the signed value or in the signature.

    The last base64 character of the signature carries unused bits, so the
    characters changed here are the first ones of each part.
    """
    token = csrf_token(owner_client, "/")
    value, timestamp, signature = token.split(".")
    tampered = [
        f"{_flip(value[0])}{value[1:]}.{timestamp}.{signature}",
        f"{value}.{timestamp}.{_flip(signature[0])}{signature[1:]}",
    ]
    before = db_state()
    for bad in tampered:
        for endpoint, url in post_routes(app, team_a):
            data = {**_payload(endpoint, team_a), "csrf_token": bad}
            assert owner_client.post(url, data=data).status_code == 400, endpoint
    assert db_state() == before


def test_every_post_route_accepts_its_own_token_in_the_htmx_header(
    app, new_client, team_a, db_state, build_team, post_routes
):
    """The control: the same requests with the session's token in X-CSRFToken succeed.

    Each route runs in a fresh browser session (logout and password change end it).
    """
    for number, (endpoint, _) in enumerate(post_routes(app, team_a)):
        world = build_team(f"ctl{number}")
        client = new_client()
        assert Auth(client).login(world.user).status_code == 303
        token = csrf_token(client, "/")
        url = dict(post_routes(app, world))[endpoint]
        if endpoint == "projects.delete_post":
            # A project with a live database is not deleted (its databases go first).
            world.database.status = "deleted"
            db.session.commit()
        before = db_state()
        response = client.post(
            url,
            data=_payload(endpoint, world),
            headers={"HX-Request": "true", "X-CSRFToken": token},
        )
        body = response.get_data(as_text=True)
        assert not (response.status_code == 400 and "CSRF" in body), (endpoint, body)
        if endpoint in MUST_CHANGE_STATE:
            assert response.status_code in (200, 302, 303), (endpoint, response.status_code)
            assert db_state() != before, f"{endpoint}: the control request changed nothing"


def test_a_pre_login_token_stops_working_after_login(app, client, team_a, db_state):
    anonymous_token = csrf_token(client, "/login")
    assert Auth(client).login(team_a.user).status_code == 303
    before = db_state()
    response = client.post(
        "/projects/new", data={"csrf_token": anonymous_token, "name": "with-old-token"}
    )
    assert response.status_code == 400
    assert db_state() == before


def test_login_without_a_token_is_refused(app, client, owner, db_state):
    """Login CSRF: a cross-site form cannot log the victim into the attacker's account."""
    before = db_state()
    response = client.post(
        "/login", data={"email": owner.email, "password": PASSWORD}, headers=CROSS_SITE
    )
    assert response.status_code == 400
    assert client.get("/account/").status_code == 302
    assert db_state() == before


def test_login_with_another_sessions_token_is_refused(app, client, owner, new_client, db_state):
    other = new_client()
    token = csrf_token(other, "/login")
    csrf_token(client, "/login")
    before = db_state()
    response = client.post(
        "/login", data={"csrf_token": token, "email": owner.email, "password": PASSWORD}
    )
    assert response.status_code == 400
    assert client.get("/account/").status_code == 302
    assert db_state() == before


def test_setup_without_a_token_is_refused_and_creates_nothing(app, client, db_state):
    before = db_state()
    response = client.post(
        "/setup",
        data={
            "name": "Forged",
            "email": "forged@example.com",
            "team": "Forged",
            "password": PASSWORD,
            "confirm": PASSWORD,
        },
        headers=CROSS_SITE,
    )
    assert response.status_code == 400
    assert db_state() == before


def test_over_https_a_valid_token_from_a_cross_site_referer_is_refused(
    app_with, db_state, new_client
):
    """WTF_CSRF_SSL_STRICT: behind HTTPS the Referer must be this site."""
    https_app = app_with(PUBLIC_URL="https://slipway.example.com")
    user = make_user(role=Role.owner, email="https-owner@example.com")
    client = new_client(https_app)
    base = "https://slipway.example.com"
    page = client.get("/login", base_url=base).get_data(as_text=True)
    token = re.search(r'name="csrf-token" content="([^"]+)"', page)[1]
    login = {"csrf_token": token, "email": user.email, "password": PASSWORD}
    before = db_state()
    for headers in ({"Referer": "https://evil.example/login"}, {}):
        response = client.post("/login", base_url=base, data=login, headers=headers)
        assert response.status_code == 400, headers
    assert db_state() == before
    ok = client.post("/login", base_url=base, data=login, headers={"Referer": f"{base}/login"})
    assert ok.status_code == 303
