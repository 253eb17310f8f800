"""Single sign-on meets two-factor login and the check again, against the real provider
on loopback (tests/oidc_mock.py, fixtures from tests/accounts/test_sso.py)."""

from __future__ import annotations

import time

import pyotp
from sqlalchemy import func, select

from app.accounts import twofactor
from app.extensions import db
from app.models import Application, User
from tests.accounts.test_sso import app, idp, local, session_user, sign_in, world  # noqa: F401
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, team_of


def _user(email: str) -> User:
    db.session.expire_all()
    return db.session.scalar(select(User).where(User.email == email))


def test_an_sso_account_answers_the_check_by_signing_in_again(client, world):  # noqa: F811
    assert sign_in(client, world.idp, "ada").status_code == 303
    user = _user("ada@acme.test")
    project = make_project(team_of(user))
    target = make_app(project)
    # A member made by single sign-on is a developer: let them delete for this test.
    user.memberships[0].role = "admin"
    db.session.commit()
    with client.session_transaction() as session:
        session["auth_checked_at"] = int(time.time()) - 601
    delete = f"/apps/{target.id}/delete"
    asked = client.get(delete)
    assert asked.status_code == 303 and asked.location == f"/reauth?next={delete}"
    page = client.get(asked.location).get_data(as_text=True)
    again = f"/sso/acme/login?next={delete}"
    assert "Sign in again with Acme ID" in page
    assert f'href="{again}"' in page
    # Through the provider again: start_session marks the check, and next is kept.
    world.idp.set_user("ada", email="ada@acme.test", email_verified=True, name="Ada")
    back = world.idp.authorize(client.get(again).headers["Location"], "ada")
    answer = client.get(local(back))
    assert answer.status_code == 303 and answer.location == delete
    assert client.get(delete).status_code == 200
    token = csrf_token(client, delete)
    assert client.post(delete, data={"csrf_token": token}).status_code == 303
    db.session.expire_all()
    assert db.session.scalar(select(func.count(Application.id))) == 0


def test_an_sso_sign_in_of_a_user_with_two_factor_asks_for_the_code(client, world):  # noqa: F811
    assert sign_in(client, world.idp, "bea").status_code == 303
    user = _user("bea@acme.test")
    secret = twofactor.pending_secret(user, create=True)
    twofactor.confirm_enrolment(user, pyotp.TOTP(secret).now())
    fresh = client.application.test_client()
    answer = sign_in(fresh, world.idp, "bea")
    assert answer.status_code == 303 and answer.location == "/login/two-factor"
    assert session_user(fresh) is None
    assert fresh.get("/").status_code == 302
    token = csrf_token(fresh, "/login")
    code = pyotp.TOTP(secret).at(time.time() + 30)
    done = fresh.post("/login/two-factor", data={"csrf_token": token, "code": code})
    assert done.status_code == 303
    assert session_user(fresh) == user.id
