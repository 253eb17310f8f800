"""Sensitive actions ask again (the password, or a two-factor code) once the last check
is more than ten minutes old: deleting an app or a project, restoring a backup,
showing the webhook secret."""

from __future__ import annotations

import time

import pyotp
from sqlalchemy import func, select

from app.accounts import twofactor
from app.extensions import db
from app.models import Application, AuditEvent, Backup, Project, Restore
from app.sources import webhooks
from tests.conftest import csrf_token
from tests.factories import (
    make_app,
    make_destination,
    make_policy,
    make_project,
    make_user,
    team_of,
)


def _age(client, seconds: int = 601) -> None:
    """Move the time of the session's last check back."""
    with client.session_transaction() as session:
        session["auth_checked_at"] = int(time.time()) - seconds


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(model.id)))


def _audits(action: str) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count(AuditEvent.id)).where(AuditEvent.action == action))


def _reauth(client, next_url: str, **fields):
    token = csrf_token(client, "/reauth")
    return client.post("/reauth", data={"csrf_token": token, "next": next_url, **fields})


def test_an_old_session_is_asked_again_before_deleting_an_app(logged_in):
    client, user = logged_in
    app = make_app(make_project(team_of(user)))
    _age(client)
    page = client.get(f"/apps/{app.id}/delete")
    assert page.status_code == 303
    assert page.location == f"/reauth?next=/apps/{app.id}/delete"
    token = csrf_token(client, "/reauth")
    posted = client.post(f"/apps/{app.id}/delete", data={"csrf_token": token})
    assert posted.status_code == 303 and posted.location.startswith("/reauth?next=")
    assert _count(Application) == 1

    wrong = _reauth(client, f"/apps/{app.id}/delete", password="not my password")
    assert wrong.status_code == 422
    assert "That is not your password." in wrong.get_data(as_text=True)
    assert _count(Application) == 1
    assert client.get(f"/apps/{app.id}/delete").status_code == 303  # still old
    assert _audits("reauth.failed") == 1

    right = _reauth(client, f"/apps/{app.id}/delete", password="correct horse battery staple")
    assert right.status_code == 303 and right.location == f"/apps/{app.id}/delete"
    assert _audits("reauth.succeeded") == 1
    assert client.get(f"/apps/{app.id}/delete").status_code == 200
    deleted = client.post(f"/apps/{app.id}/delete", data={"csrf_token": token})
    assert deleted.status_code == 303 and not deleted.location.startswith("/reauth")
    assert _count(Application) == 0


def test_a_fresh_session_goes_straight_through(logged_in):
    client, user = logged_in
    project = make_project(team_of(user))
    _age(client, 60)
    token = csrf_token(client, "/")
    assert client.get(f"/projects/{project.id}/delete").status_code == 200
    response = client.post(f"/projects/{project.id}/delete", data={"csrf_token": token})
    assert response.status_code == 303 and response.location == "/"
    assert _count(Project) == 0


def test_an_old_session_cannot_delete_a_project_restore_or_show_the_webhook_secret(logged_in):
    client, user = logged_in
    team = team_of(user)
    project = make_project(team)
    app = make_app(project)
    webhooks.rotate_secret(app)
    policy = make_policy(team, make_destination(team, "https://s3.example.com", "b"), None)
    backup = Backup(team_id=team.id, policy_id=policy.id, status="succeeded", trigger="manual",
                    local_path="/nonexistent", size_bytes=1, sha256="0" * 64)  # fmt: skip
    db.session.add(backup)
    db.session.commit()
    _age(client)
    token = csrf_token(client, "/")
    restore = f"/backups/{backup.id}/restore"
    assert client.get(restore).location.startswith("/reauth")
    for url in (f"/projects/{project.id}/delete", f"/apps/{app.id}/git/secret/reveal", restore):
        response = client.post(url, data={"csrf_token": token, "mode": "new",
                                          "new_database": "restored"})  # fmt: skip
        assert response.status_code == 303 and response.location.startswith("/reauth"), url
    assert _count(Project) == 1
    assert _count(Restore) == 0
    assert _audits("webhook.secret_revealed") == 0


def test_a_two_factor_code_answers_the_check_too(logged_in):
    client, user = logged_in
    secret = twofactor.pending_secret(user, create=True)
    twofactor.confirm_enrolment(user, pyotp.TOTP(secret).now())
    app = make_app(make_project(team_of(user)))
    _age(client)
    page = client.get(f"/reauth?next=/apps/{app.id}/delete").get_data(as_text=True)
    assert "Two-factor code" in page and "Password" in page
    wrong = _reauth(client, f"/apps/{app.id}/delete", code="000000")
    assert wrong.status_code == 422
    code = pyotp.TOTP(secret).at(time.time() + 30)
    right = _reauth(client, f"/apps/{app.id}/delete", code=code)
    assert right.status_code == 303 and right.location == f"/apps/{app.id}/delete"
    # The code is spent: it cannot answer a second check.
    _age(client)
    assert _reauth(client, "/", code=code).status_code == 422


def test_the_check_page_only_returns_to_local_pages(logged_in):
    client, _ = logged_in
    _age(client)
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = _reauth(client, target, password="correct horse battery staple")
        assert response.status_code == 303 and response.location == "/", target


def test_wrong_answers_are_rate_limited(app, logged_in):
    client, _ = logged_in
    _age(client)
    allowed = int(app.config["REAUTH_LIMIT"].split()[0])
    for _ in range(allowed):
        assert _reauth(client, "/", password="wrong password").status_code == 422
    assert _reauth(client, "/", password="wrong password").status_code == 429
    assert _reauth(client, "/", password="correct horse battery staple").status_code == 429


def test_an_account_without_password_or_code_is_told_to_sign_in_again(client, auth):
    """A single sign-on account (no usable password, no TOTP): the page says to log out
    and sign in again, and a fresh sign-in is the check."""
    user = make_user()
    auth.login(user)
    user.password_hash = "!sso"
    db.session.commit()
    _age(client)
    page = client.get("/reauth?next=/")
    assert page.status_code == 200
    assert "Log out and sign in again" in page.get_data(as_text=True)
    assert _reauth(client, "/", password="correct horse battery staple").status_code == 422
    # Signing in again (start_session, as single sign-on does) marks the check.
    from app.web.auth import start_session

    with client.application.test_request_context():
        from flask import session

        start_session(user, method="sso")
        assert isinstance(session.get("auth_checked_at"), int)


def test_with_password_login_off_a_members_password_does_not_answer(client, auth):
    """Password login off for everyone but owners: a developer's password no longer
    answers the check (a TOTP code still does)."""
    from app.models import Installation, Role

    owner = make_user()
    member = make_user(team_of(owner), Role.developer)
    secret = twofactor.pending_secret(member, create=True)
    twofactor.confirm_enrolment(member, pyotp.TOTP(secret).now())
    auth.login(member)
    token = csrf_token(client, "/login")
    client.post(
        "/login/two-factor",
        data={"csrf_token": token, "code": pyotp.TOTP(secret).at(time.time() + 30)},
    )
    db.session.get(Installation, 1).password_login = False
    db.session.commit()
    _age(client)
    page = client.get("/reauth?next=/").get_data(as_text=True)
    assert 'name="password"' not in page and 'name="code"' in page
    refused = _reauth(client, "/", password="correct horse battery staple")
    assert refused.status_code == 422
    assert client.get("/account/two-factor/disable").location.startswith("/reauth")


def test_an_old_session_cannot_change_roles_remove_members_or_delete_a_team(logged_in):
    from app.models import Membership, Role, Team
    from tests.factories import make_team

    client, user = logged_in
    team = team_of(user)
    colleague = make_user(team, Role.developer)
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == colleague.id, Membership.team_id == team.id)
    )
    spare = make_team("spare")
    db.session.add(Membership(team_id=spare.id, user_id=user.id, role="owner"))
    db.session.commit()
    membership_id, spare_id = membership.id, spare.id
    _age(client)
    token = csrf_token(client, "/")
    m = f"/team/members/{membership_id}"
    for url in (f"{m}/edit", f"{m}/remove", f"{m}/transfer"):
        assert client.get(url).location.startswith("/reauth"), url
    for url, data in ((f"{m}/role", {"role": "viewer"}), (f"{m}/projects", {"access": "all"}),
                      (f"{m}/remove", {}), (f"{m}/transfer", {})):  # fmt: skip
        response = client.post(url, data={"csrf_token": token, **data})
        assert response.status_code == 303, url
        assert response.location == f"/reauth?next={m}/" + (
            "edit" if url.endswith(("role", "projects")) else url.rsplit("/", 1)[1]
        ), url
    client.post(f"/teams/{spare_id}/switch", data={"csrf_token": token})
    assert client.get("/team/delete").location.startswith("/reauth")
    assert client.post("/team/delete", data={"csrf_token": token}).location.startswith("/reauth")
    db.session.expire_all()
    membership = db.session.get(Membership, membership_id)
    assert membership is not None and membership.role == Role.developer.value
    assert db.session.get(Team, spare_id) is not None
    assert _audits("member.role_changed") == _audits("member.removed") == 0
    # After the password, the change goes through.
    right = _reauth(client, f"{m}/edit", password="correct horse battery staple")
    assert right.status_code == 303 and right.location == f"{m}/edit"
    client.post(f"/teams/{team.id}/switch", data={"csrf_token": token})
    assert client.post(f"{m}/role", data={"csrf_token": token, "role": "viewer"}).status_code == 303
    db.session.expire_all()
    assert db.session.get(Membership, membership_id).role == Role.viewer.value
