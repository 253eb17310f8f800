"""Issue 14 item 2: invitations by email (a real SMTP server, aiosmtpd, receives them)
and by link; random tokens stored hashed, single use, 72 h, revocable; an email
invitation only for that address; nobody invites above their own role."""

from __future__ import annotations

import hashlib
import re
import threading
from datetime import timedelta
from email import message_from_bytes, policy

import pytest
from sqlalchemy import func, select

from app.accounts import invitations
from app.extensions import db
from app.models import AuditEvent, Invitation, Membership, ProjectMembership, Role, User
from app.models.base import utcnow
from tests.accounts.conftest import PUBLIC
from tests.conftest import Auth, RequestScopedClient, csrf_token
from tests.factories import PASSWORD, make_project, make_team, make_user, team_of

LINK = re.compile(r"/invitations/([A-Za-z0-9_-]{40,})")
NEW_PASSWORD = "a passphrase of my own"


def _client(app):
    app.test_client_class = RequestScopedClient
    return app.test_client()


def _invite(client, **form):
    token = csrf_token(client, "/team/members/")
    data = {"csrf_token": token, "email": "", "role": "developer", "access": "all"} | form
    return client.post("/team/members/invitations", data=data)


def _token(response) -> str:
    found = LINK.search(response.get_data(as_text=True))
    assert found, response.get_data(as_text=True)
    return found.group(1)


def _count(model) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(model))


def _events(action) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.action == action.value)
    return list(db.session.scalars(query.order_by(AuditEvent.id)))


def _all_audit_text() -> str:
    db.session.expire_all()
    return " ".join(str(e.details) for e in db.session.scalars(select(AuditEvent)))


# ---- creating ----------------------------------------------------------------------


def test_a_link_invitation_is_shown_once_and_stored_only_hashed(app, logged_in):
    client, owner = logged_in
    response = _invite(client, role="viewer")
    assert response.status_code == 200
    token = _token(response)
    row = db.session.scalar(select(Invitation))
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert row.email is None and row.role == "viewer" and row.all_projects
    assert row.invited_by_id == owner.id and row.team_id == team_of(owner).id
    assert timedelta(hours=71) < row.expires_at - utcnow() <= timedelta(hours=72)
    assert token not in _all_audit_text()
    assert _events(invitations.audit.Action.INVITATION_CREATED)[0].team_id == row.team_id
    listing = client.get("/team/members/").get_data(as_text=True)
    assert token not in listing and "anyone with the link" in listing


def test_an_email_invitation_is_mailed_with_a_plain_text_part(app, logged_in, smtp):
    client, owner = logged_in
    response = _invite(client, email="New.Colleague@Example.com", role="admin")
    assert response.status_code == 200
    assert "was mailed to new.colleague@example.com" in response.get_data(as_text=True)
    token = _token(response)
    assert len(smtp.messages) == 1
    envelope = smtp.messages[0]
    assert envelope.rcpt_tos == ["new.colleague@example.com"]
    message = message_from_bytes(envelope.content, policy=policy.default)
    text = message.get_body(preferencelist=("plain",)).get_content()
    assert f"{PUBLIC}/invitations/{token}" in text
    team = team_of(owner)
    assert team.name in text and owner.name in text and "as admin" in text
    row = db.session.scalar(select(Invitation))
    assert row.expires_at.strftime("%Y-%m-%d %H:%M UTC") in text
    assert team.name in message["Subject"]
    sent = _events(invitations.audit.Action.INVITATION_SENT)
    assert len(sent) == 1 and sent[0].team_id == team.id
    assert token not in _all_audit_text()


def test_without_mail_an_email_invitation_is_still_made_and_its_link_shown(app, logged_in):
    client, _ = logged_in
    response = _invite(client, email="someone@example.com")
    assert response.status_code == 200
    body = response.get_data(as_text=True)
    assert "Mail is not configured" in body
    _token(response)
    assert _count(Invitation) == 1
    assert _events(invitations.audit.Action.INVITATION_SENT) == []


def test_nobody_invites_above_their_own_role(app, client, auth):
    team = make_team()
    make_user(team, Role.owner)
    admin = make_user(team, Role.admin)
    assert auth.login(admin).status_code == 303
    response = _invite(client, role="owner")
    assert response.status_code == 403
    assert "above your own" in response.get_data(as_text=True)
    assert _count(Invitation) == 0
    assert _invite(client, role="admin").status_code == 200  # the control


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_below_admin_nobody_invites(app, client, auth, role):
    team = make_team()
    make_user(team, Role.owner)
    assert auth.login(make_user(team, role)).status_code == 303
    assert _invite(client, role="viewer").status_code == 403
    assert _count(Invitation) == 0


def test_projects_of_another_team_are_refused(app, logged_in):
    client, owner = logged_in
    mine = make_project(team_of(owner), name="shop")
    theirs = make_project(make_team(), name="elsewhere")
    response = _invite(client, access="some", **{f"project_{mine.id}": "viewer",
                                                 f"project_{theirs.id}": "viewer"})  # fmt: skip
    assert response.status_code == 422
    assert "not one of this team" in response.get_data(as_text=True)
    assert _count(Invitation) == 0 and _events(invitations.audit.Action.INVITATION_CREATED) == []


def test_a_project_role_above_the_invitation_role_is_refused(app, logged_in):
    client, owner = logged_in
    shop = make_project(team_of(owner), name="shop")
    response = _invite(client, role="viewer", access="some", **{f"project_{shop.id}": "admin"})
    assert response.status_code == 422
    assert '<option value="admin" selected>' in response.get_data(as_text=True)  # kept
    assert _count(Invitation) == 0


def test_a_project_limited_invitation_needs_a_project(app, logged_in):
    client, owner = logged_in
    make_project(team_of(owner), name="shop")
    response = _invite(client, access="some")
    assert response.status_code == 422
    assert "at least one project" in response.get_data(as_text=True)
    assert _count(Invitation) == 0


# ---- accepting ---------------------------------------------------------------------


def _make(team, actor, **fields) -> str:
    values = {"email": None, "role": "developer", "all_projects": True} | fields
    _, token = invitations.create(team, actor, **values)
    return token


def test_a_new_account_accepts_a_link_invitation_and_is_logged_in(app, owner):
    team = team_of(owner)
    token = _make(team, owner, role="viewer")
    browser = _client(app)
    page = browser.get(f"/invitations/{token}")
    assert page.status_code == 200
    body = page.get_data(as_text=True)
    assert team.name in body and "viewer" in body and owner.name in body
    form = {
        "csrf_token": csrf_token(browser, f"/invitations/{token}"),
        "name": "Newcomer",
        "email": "Newcomer@Example.com",
        "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
    }
    response = browser.post(f"/invitations/{token}", data=form)
    assert response.status_code == 303, response.get_data(as_text=True)
    user = db.session.scalar(select(User).where(User.email == "newcomer@example.com"))
    membership = db.session.scalar(select(Membership).where(Membership.user_id == user.id))
    assert membership.team_id == team.id and membership.role == "viewer"
    assert user.current_team_id == team.id and user.check_password(NEW_PASSWORD)
    assert browser.get("/").status_code == 200  # logged in
    accepted = _events(invitations.audit.Action.INVITATION_ACCEPTED)
    assert len(accepted) == 1 and accepted[0].user_id == user.id
    assert accepted[0].team_id == team.id
    # Used once: the same link again, by anyone, is refused and changes nothing.
    again = _client(app)
    form["email"], form["csrf_token"] = "second@example.com", csrf_token(again, "/login")
    assert again.post(f"/invitations/{token}", data=form).status_code == 410
    assert _count(User) == 2 and _count(Membership) == 2


def test_an_email_invitation_creates_the_account_with_the_invited_address(app, owner):
    token = _make(team_of(owner), owner, email="invited@example.com")
    browser = _client(app)
    page = browser.get(f"/invitations/{token}").get_data(as_text=True)
    assert 'value="invited@example.com"' in page and "readonly" in page
    form = {
        "csrf_token": csrf_token(browser, "/login"),
        "name": "Invited",
        "email": "attacker@example.com",
        "password": NEW_PASSWORD,
        "confirm": NEW_PASSWORD,
    }
    assert browser.post(f"/invitations/{token}", data=form).status_code == 303
    assert db.session.scalar(select(User).where(User.email == "attacker@example.com")) is None
    assert db.session.scalar(select(User).where(User.email == "invited@example.com")) is not None


def test_an_existing_account_logs_in_and_joins_with_project_access(app, owner, auth, client):
    team = team_of(owner)
    shop = make_project(team, name="shop")
    make_project(team, name="other")
    other_team = make_team("elsewhere")
    user = make_user(other_team, Role.owner, email="Existing@Example.com")
    token = _make(team, owner, email="existing@example.com", role="developer",
                  all_projects=False, projects=[(shop.id, "viewer")])  # fmt: skip
    anonymous = client.get(f"/invitations/{token}").get_data(as_text=True)
    assert f"/login?next=/invitations/{token}" in anonymous
    assert auth.login(user).status_code == 303
    page = client.get(f"/invitations/{token}").get_data(as_text=True)
    assert f"Join {team.name}" in page
    response = client.post(f"/invitations/{token}", data={"csrf_token": csrf_token(client, "/")})
    assert response.status_code == 303
    db.session.expire_all()
    membership = db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.team_id == team.id)
    )
    assert membership.role == "developer" and not membership.all_projects
    assert [(p.project_id, p.role) for p in membership.projects] == [(shop.id, "viewer")]
    assert db.session.get(User, user.id).current_team_id == team.id
    assert "shop" in client.get("/").get_data(as_text=True)


def _refusal_audited(reason: str) -> None:
    rows = _events(invitations.audit.Action.INVITATION_REFUSED)
    assert any((r.details or {}).get("reason") == reason for r in rows), [r.details for r in rows]


def _refused(app, owner, token, status, reason, login=None):
    browser = _client(app)
    if login is not None:
        assert Auth(browser).login(login).status_code == 303
    before = (_count(User), _count(Membership), _count(ProjectMembership))
    assert browser.get(f"/invitations/{token}").status_code == status
    page = "/" if login is not None else "/login"
    form = {"csrf_token": csrf_token(browser, page), "name": "X", "email": "x@example.com",
            "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}  # fmt: skip
    response = browser.post(f"/invitations/{token}", data=form)
    assert response.status_code == status
    assert (_count(User), _count(Membership), _count(ProjectMembership)) == before
    _refusal_audited(reason)
    assert token not in _all_audit_text()
    return response.get_data(as_text=True)


def test_a_guessed_token_is_refused_and_audited_without_the_token(app, owner):
    body = _refused(app, owner, "x" * 43, 404, "unknown")
    assert "not valid" in body


def test_an_expired_invitation_is_refused(app, owner):
    token = _make(team_of(owner), owner)
    row = db.session.scalar(select(Invitation))
    row.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert "expired" in _refused(app, owner, token, 410, "expired")


def test_a_revoked_invitation_is_refused(app, logged_in):
    client, owner = logged_in
    token = _make(team_of(owner), owner)
    row = db.session.scalar(select(Invitation))
    listing = client.get("/team/members/").get_data(as_text=True)
    assert f"/team/members/invitations/{row.id}/revoke" in listing
    revoke = client.post(f"/team/members/invitations/{row.id}/revoke",
                         data={"csrf_token": csrf_token(client, "/")})  # fmt: skip
    assert revoke.status_code == 303
    assert len(_events(invitations.audit.Action.INVITATION_REVOKED)) == 1
    assert "revoked" in _refused(app, owner, token, 410, "revoked")


def test_an_email_invitation_refuses_another_account(app, owner):
    token = _make(team_of(owner), owner, email="right@example.com")
    wrong = make_user(make_team(), Role.owner, email="wrong@example.com")
    body = _refused(app, owner, token, 403, "wrong email", login=wrong)
    assert "another email address" in body
    # The right account still can: the refusal used nothing up.
    right = make_user(make_team(), Role.owner, email="RIGHT@example.com")
    invitations.accept(token, right)
    assert _count(Membership) == 4


def test_a_member_cannot_accept_again(app, owner):
    token = _make(team_of(owner), owner)
    body = _refused(app, owner, token, 409, "already a member", login=owner)
    assert "already a member" in body


def test_two_concurrent_accepts_make_exactly_one_membership(app, owner, monkeypatch):
    """Both requests pass the checks, then race at the claim: one joins, one is refused."""
    team = team_of(owner)
    token = _make(team, owner)
    first, second = make_user(make_team()), make_user(make_team())
    barrier = threading.Barrier(2, timeout=10)
    real_check = invitations.check

    def check_then_wait(token):
        found = real_check(token)
        barrier.wait()
        return found

    monkeypatch.setattr(invitations, "check", check_then_wait)
    outcomes: dict[int, object] = {}

    def accept(user_id):
        with app.app_context():
            try:
                invitations.accept(token, db.session.get(User, user_id))
                outcomes[user_id] = "joined"
            except invitations.InvitationRefused as exc:
                outcomes[user_id] = exc.status
            finally:
                db.session.remove()

    threads = [threading.Thread(target=accept, args=(u.id,)) for u in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values(), key=str) == [410, "joined"], outcomes
    joined = db.session.scalars(select(Membership.user_id).where(Membership.team_id == team.id))
    assert sorted(joined) == sorted([owner.id, *(u for u, o in outcomes.items() if o == "joined")])


def test_refused_tokens_are_rate_limited_per_address(app, owner):
    app.config["INVITATION_LIMIT_IP"] = "3 per minute"
    browser = _client(app)
    statuses = [browser.get(f"/invitations/guess{i:040d}").status_code for i in range(5)]
    assert statuses == [404, 404, 404, 429, 429]
    rows = _events(invitations.audit.Action.INVITATION_REFUSED)
    assert len(rows) == 1 and rows[0].details["count"] == 3  # one counted row, no flood


def test_a_new_account_with_a_taken_address_is_refused_and_nothing_is_used(app, owner):
    token = _make(team_of(owner), owner)
    browser = _client(app)
    form = {"csrf_token": csrf_token(browser, "/login"), "name": "Dup", "email": owner.email,
            "password": NEW_PASSWORD, "confirm": NEW_PASSWORD}  # fmt: skip
    response = browser.post(f"/invitations/{token}", data=form)
    assert response.status_code == 409
    assert "log in to accept" in response.get_data(as_text=True)
    assert db.session.scalar(select(Invitation.accepted_at)) is None
    assert _count(User) == 1
    assert owner.check_password(PASSWORD)


def test_the_domain_refuses_a_guessed_token_outside_a_request_too(app, owner):
    with pytest.raises(invitations.InvitationRefused) as refused:
        invitations.accept("y" * 43, owner)
    assert refused.value.status == 404
    assert _count(Membership) == 1
    _refusal_audited("unknown")
