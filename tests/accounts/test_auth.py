"""Setup, login, logout, password change: the accounts a user sees."""

from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Installation, Membership, Role, Team, User
from tests.conftest import csrf_token
from tests.factories import PASSWORD


def _setup_form(client, token_page=None, **overrides):
    data = {
        "name": "Ann Owner",
        "email": "Ann@Example.com",
        "team": "Acme",
        "password": PASSWORD,
        "confirm": PASSWORD,
        "csrf_token": csrf_token(client, "/setup" if token_page is None else token_page),
    } | overrides
    return client.post("/setup", data=data)


def test_fresh_install_sends_every_page_to_setup(client):
    for path in ("/", "/login", "/projects/new", "/account/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"].endswith("/setup")


def test_setup_creates_owner_team_and_logs_in(client):
    response = _setup_form(client)
    assert response.status_code == 303
    user = db.session.scalar(select(User))
    assert user.email == "ann@example.com"
    assert user.password_hash.startswith("$argon2")
    membership = db.session.scalar(select(Membership))
    assert membership.role == Role.owner
    assert db.session.scalar(select(Team.name)) == "Acme"
    assert db.session.get(Installation, 1).owner_id == user.id
    assert "No projects yet" in client.get("/").get_data(as_text=True)


def test_setup_with_bad_input_rerenders_with_errors_and_stores_nothing(client):
    response = _setup_form(client, password="short", confirm="different")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "Ann Owner" in body  # the user's input is kept
    assert "Passwords differ." in body
    assert db.session.scalar(select(func.count(User.id))) == 0


def test_setup_is_gone_once_done(client, owner):
    assert client.get("/setup").headers["Location"].endswith("/login")
    response = _setup_form(client, token_page="/login", email="mallory@example.com")
    assert response.headers["Location"].endswith("/login")
    assert db.session.scalar(select(func.count(User.id))) == 1


def test_login_with_next_and_logout(client, auth, owner):
    token = csrf_token(client)
    response = client.post(
        "/login",
        data={
            "csrf_token": token,
            "email": owner.email.upper(),
            "password": PASSWORD,
            "next": "/account/",
        },
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/account/"
    assert client.get("/account/").status_code == 200
    auth.logout()
    assert client.get("/account/").status_code == 302


def test_wrong_password_says_so_and_is_audited(client, auth, owner):
    response = auth.login(owner, "wrong password!")
    assert response.status_code == 401
    assert "Wrong email or password." in response.get_data(as_text=True)
    actions = db.session.scalars(select(AuditEvent.action)).all()
    assert "login.failed" in actions


def test_password_change_keeps_this_session_and_ends_others(app, logged_in):
    client, user = logged_in
    other = app.test_client()
    other_auth_response = other.post(
        "/login",
        data={"csrf_token": csrf_token(other), "email": user.email, "password": PASSWORD},
    )
    assert other_auth_response.status_code == 303
    new_password = "a brand new passphrase"
    response = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client, "/account/"),
            "current": PASSWORD,
            "password": new_password,
            "confirm": new_password,
        },
    )
    assert response.status_code == 303
    assert client.get("/account/").status_code == 200
    assert other.get("/account/").status_code == 302
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(new_password)


def test_password_change_needs_the_current_password(logged_in):
    client, user = logged_in
    response = client.post(
        "/account/password",
        data={
            "csrf_token": csrf_token(client, "/account/"),
            "current": "not it at all",
            "password": "a brand new passphrase",
            "confirm": "a brand new passphrase",
        },
    )
    assert response.status_code == 422
    assert "not your current password" in response.get_data(as_text=True)
    db.session.expire_all()
    assert db.session.get(User, user.id).check_password(PASSWORD)


def test_logout_everywhere_else(app, logged_in):
    client, user = logged_in
    other = app.test_client()
    other.post(
        "/login",
        data={"csrf_token": csrf_token(other), "email": user.email, "password": PASSWORD},
    )
    assert other.get("/").status_code == 200
    client.post("/account/sessions/revoke", data={"csrf_token": csrf_token(client, "/account/")})
    assert client.get("/").status_code == 200
    assert other.get("/").status_code == 302


def test_login_is_rate_limited_per_account(client, auth, owner):
    for _ in range(5):
        assert auth.login(owner, "wrong password!").status_code == 401
    response = auth.login(owner, PASSWORD)
    assert response.status_code == 429
    assert client.get("/account/").status_code == 302


def test_successful_logins_do_not_count_against_the_limit(client, auth, owner):
    for _ in range(7):
        assert auth.login(owner).status_code == 303
        auth.logout()
