"""/api/v1 members and invitations (issue 15)."""

from __future__ import annotations

from app.accounts import invitations
from app.extensions import db
from app.models import ApiKey, AuditEvent, Invitation, Membership, ProjectMembership, Role
from tests.api.conftest import error_of, make_key
from tests.api.shapes import shaped
from tests.factories import make_project, make_user, team_of


def _membership(user, team) -> Membership:
    return db.session.query(Membership).filter_by(user_id=user.id, team_id=team.id).one()


def test_list_members_with_their_roles_and_projects(api, api_for, owner):
    team = team_of(owner)
    project = make_project(team)
    dev = make_user(team=team, role=Role.developer)
    membership = _membership(dev, team)
    membership.all_projects = False
    membership.projects.append(ProjectMembership(project_id=project.id, role="viewer"))
    db.session.commit()
    make_user(role=Role.owner)  # another team's
    body = shaped("MemberPage", api.get("/api/v1/members").get_json())
    rows = {m["user_id"]: m for m in body["data"]}
    assert set(rows) == {owner.id, dev.id} and body["next_cursor"] is None
    assert rows[owner.id]["role"] == "owner" and rows[owner.id]["all_projects"] is True
    assert rows[dev.id] == shaped("Member", rows[dev.id]) | {
        "role": "developer", "all_projects": False, "email": dev.email,
        "projects": [{"project_id": project.id, "role": "viewer"}],
    }  # fmt: skip
    viewer = api_for(team=team, role=Role.viewer, scopes=("read",))
    assert len(viewer.get("/api/v1/members").get_json()["data"]) == 3
    page = api.get("/api/v1/members?limit=1").get_json()
    assert len(page["data"]) == 1 and page["next_cursor"]


def test_change_a_member_s_role_and_projects(api, owner):
    team = team_of(owner)
    project = make_project(team)
    admin = make_user(team=team, role=Role.admin)
    membership = _membership(admin, team)
    path = f"/api/v1/members/{membership.id}"
    etag = api.get(path).headers["ETag"]
    response = api.patch(path, json={"role": "developer"}, headers={"If-Match": etag})
    assert response.status_code == 200, response.get_json()
    assert shaped("Member", response.get_json())["role"] == "developer"
    assert api.patch(path, json={"role": "viewer"}, headers={"If-Match": etag}).status_code == 412
    response = api.patch(path, json={"projects": [{"project_id": project.id, "role": "developer"}]})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["all_projects"] is False
    assert body["projects"] == [{"project_id": project.id, "role": "developer"}]
    response = api.patch(path, json={"all_projects": True})
    assert response.get_json()["all_projects"] is True and response.get_json()["projects"] == []
    actions = [e.action for e in db.session.query(AuditEvent).order_by(AuditEvent.id)]
    assert actions.count("member.role_changed") == 1
    assert actions.count("member.projects_changed") == 2


def test_a_demoted_member_s_keys_are_revoked(api, client, owner):
    team = team_of(owner)
    admin = make_user(team=team, role=Role.admin)
    key, _ = make_key(admin, team)
    membership = _membership(admin, team)
    assert api.patch(f"/api/v1/members/{membership.id}", json={"role": "viewer"}).status_code == 200
    db.session.expire_all()
    assert db.session.get(ApiKey, key.id).revoked_at is not None


def test_member_changes_the_domain_refuses(api, api_for, owner):
    team = team_of(owner)
    project = make_project(team)
    theirs = make_project(make_user(role=Role.owner).memberships[0].team)
    dev = make_user(team=team, role=Role.developer)
    path = f"/api/v1/members/{_membership(dev, team).id}"
    own_path = f"/api/v1/members/{_membership(owner, team).id}"
    cases = [
        ({"projects": [{"project_id": theirs.id, "role": "viewer"}]}, 422, "projects"),
        ({"projects": [{"project_id": project.id, "role": "admin"}]}, 422, "projects"),
        ({"all_projects": False, "projects": []}, 422, "projects"),
        ({"all_projects": True, "projects": [{"project_id": project.id, "role": "viewer"}]},
         422, "projects"),
        ({"role": "boss"}, 422, "role"),
        ({"nickname": "x"}, 422, "nickname"),
    ]  # fmt: skip
    for body, status, field in cases:
        response = api.patch(path, json=body)
        assert response.status_code == status, (body, response.get_json())
        assert field in error_of(response)["details"]["fields"], (body, response.get_json())

    # a body is applied whole or not at all: the role stays when the projects are refused
    def grant(project_id, role):
        return [{"project_id": project_id, "role": role}]

    for body in ({"role": "viewer", "projects": grant(theirs.id, "viewer")},
                 {"role": "viewer", "projects": grant(project.id, "developer")},
                 {"role": "owner", "projects": grant(project.id, "viewer")}):  # fmt: skip
        refused = api.patch(path, json=body)
        assert refused.status_code == 422, body
        assert "projects" in error_of(refused)["details"]["fields"], body
        db.session.expire_all()
        assert _membership(dev, team).role == "developer", body
    last_owner = api.patch(own_path, json={"role": "admin"})
    assert last_owner.status_code == 409
    admin = api_for(team=team, role=Role.admin)
    above = admin.patch(path, json={"role": "owner"})
    assert above.status_code == 403 and "above" in error_of(above)["message"]
    assert admin.patch(own_path, json={"role": "viewer"}).status_code == 403
    db.session.expire_all()
    assert _membership(dev, team).role == "developer" and _membership(dev, team).all_projects
    assert _membership(owner, team).role == "owner"


def test_remove_a_member_revokes_their_keys(api, owner):
    team = team_of(owner)
    dev = make_user(team=team, role=Role.developer)
    key, _ = make_key(dev, team)
    membership_id = _membership(dev, team).id
    assert api.delete(f"/api/v1/members/{membership_id}").status_code == 204
    assert db.session.get(Membership, membership_id) is None
    assert db.session.get(ApiKey, key.id).revoked_at is not None
    assert api.delete(f"/api/v1/members/{membership_id}").status_code == 404
    yourself = api.delete(f"/api/v1/members/{_membership(owner, team).id}")
    assert yourself.status_code == 422


def test_another_team_s_member_is_404_and_scope_and_role_gate_changes(api, api_for, owner):
    team = team_of(owner)
    stranger = api_for()
    theirs = _membership(stranger.user, stranger.team)
    path = f"/api/v1/members/{theirs.id}"
    assert api.get(path).status_code == 404
    assert api.patch(path, json={"role": "viewer"}).status_code == 404
    assert api.delete(path).status_code == 404
    dev = make_user(team=team, role=Role.developer)
    mine = f"/api/v1/members/{_membership(dev, team).id}"
    writer = api_for(team=team, scopes=("write",))  # member.manage is in admin only
    developer = api_for(team=team, role=Role.developer)
    for client in (writer, developer):
        assert client.patch(mine, json={}).status_code == 403
        assert client.delete(mine).status_code == 403
        assert client.post("/api/v1/invitations", json={}).status_code == 403
    db.session.expire_all()
    assert theirs.role == "owner" and _membership(dev, team).role == "developer"


# ---- invitations --------------------------------------------------------------------


def test_invite_by_link_answers_the_link_once(api, owner):
    team = team_of(owner)
    project = make_project(team)
    response = api.post("/api/v1/invitations", json={
        "role": "developer", "all_projects": False,
        "projects": [{"project_id": project.id, "role": "viewer"}]})  # fmt: skip
    assert response.status_code == 201, response.get_json()
    body = shaped("InvitationCreated", response.get_json())
    assert body["email"] is None and body["mail"] is None and body["invited_by_id"] == owner.id
    assert body["projects"] == [{"project_id": project.id, "role": "viewer"}]
    token = body["link"].rsplit("/", 1)[1]
    assert invitations.check(token).id == body["id"]
    listed = api.get("/api/v1/invitations")
    assert [i["id"] for i in shaped("InvitationPage", listed.get_json())["data"]] == [body["id"]]
    assert token not in listed.get_data(as_text=True)


def test_invite_by_email_without_smtp_says_not_configured(api, owner):
    response = api.post("/api/v1/invitations", json={"email": "New@Example.com", "role": "viewer"})
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["email"] == "new@example.com" and body["mail"] == "not configured"
    assert body["link"].startswith("http") and "/invitations/" in body["link"]
    event = db.session.query(AuditEvent).filter_by(action="invitation.created").one()
    assert event.details["api_key_id"]


def test_invitations_the_domain_refuses(api, api_for, owner):
    team = team_of(owner)
    member = make_user(team=team, role=Role.viewer)
    cases = [
        ({"email": "no-at-sign"}, 422, "email"),
        ({"email": member.email}, 422, "email"),
        ({"all_projects": False}, 422, "projects"),
        ({"role": "emperor"}, 422, "role"),
        ({"email": "x" * 250 + "@a.io"}, 422, "email"),
        ({"email": "a\x00@example.com"}, 422, "email"),
    ]
    for body, status, field in cases:
        response = api.post("/api/v1/invitations", json=body)
        assert response.status_code == status, (body, response.get_json())
        assert field in error_of(response)["details"]["fields"], body
    admin = api_for(team=team, role=Role.admin)
    response = admin.post("/api/v1/invitations", json={"role": "owner"})
    assert response.status_code == 403
    assert db.session.query(Invitation).count() == 0


def test_revoke_an_invitation(api, api_for, owner):
    made = api.post("/api/v1/invitations", json={"role": "viewer"}).get_json()
    path = f"/api/v1/invitations/{made['id']}"
    stranger = api_for()
    assert stranger.delete(path).status_code == 404
    assert api.delete(path).status_code == 204
    assert db.session.get(Invitation, made["id"]).revoked_at is not None
    again = api.delete(path)
    assert again.status_code == 409 and error_of(again)["code"] == "conflict"
    assert api.get("/api/v1/invitations").get_json()["data"] == []


def test_invitations_page_newest_first(api):
    made = [api.post("/api/v1/invitations", json={"role": "viewer"}).get_json()["id"]
            for _ in range(3)]  # fmt: skip
    first = api.get("/api/v1/invitations?limit=2").get_json()
    assert [i["id"] for i in first["data"]] == made[:0:-1]
    rest = api.get(f"/api/v1/invitations?limit=2&cursor={first['next_cursor']}").get_json()
    assert [i["id"] for i in rest["data"]] == made[:1] and rest["next_cursor"] is None


def test_the_first_gate_question_is_the_declared_action(api, owner, monkeypatch):
    """Members, invitations, channels, audit: each handler asks its operation's action first."""
    from app import access
    from app.web.api import spec

    team = team_of(owner)
    dev = _membership(make_user(team=team, role=Role.developer), team)
    invitation = api.post("/api/v1/invitations", json={"role": "viewer"}).get_json()
    channel = api.post("/api/v1/notification-channels", json={
        "name": "mail", "kind": "email", "smtp_host": "smtp.example.com",
        "sender": "a@example.com", "to": "b@example.com"}).get_json()  # fmt: skip
    asked, real = [], access.decide

    def spy(user, action, resource):
        asked.append(action)
        return real(user, action, resource)

    monkeypatch.setattr(access, "decide", spy)
    calls = [
        ("get", "/api/v1/members", "members_list"),
        ("patch", f"/api/v1/members/{dev.id}", "member_update"),
        ("delete", f"/api/v1/members/{dev.id}", "member_remove"),
        ("get", "/api/v1/invitations", "invitations_list"),
        ("post", "/api/v1/invitations", "invitation_create"),
        ("delete", f"/api/v1/invitations/{invitation['id']}", "invitation_revoke"),
        ("get", "/api/v1/notification-channels", "channels_list"),
        ("post", "/api/v1/notification-channels", "channel_create"),
        ("patch", f"/api/v1/notification-channels/{channel['id']}", "channel_update"),
        ("delete", f"/api/v1/notification-channels/{channel['id']}", "channel_delete"),
        ("get", "/api/v1/audit-events", "audit_events_list"),
    ]
    for method, path, endpoint in calls:
        asked.clear()
        getattr(api, method)(path, **({"json": {}} if method in ("post", "patch") else {}))
        assert asked and asked[0] == spec.OPERATIONS[f"api.{endpoint}"].action, (path, asked)


def test_a_retried_invitation_makes_one_and_never_keeps_or_repeats_its_link(api):
    import base64
    import json

    from app.extensions import redis

    headers = {"Idempotency-Key": "invite-once"}
    body = {"email": "retry@example.com", "role": "viewer"}
    first = api.post("/api/v1/invitations", json=body, headers=headers)
    assert first.status_code == 201, first.get_json()
    link = first.get_json()["link"]
    again = api.post("/api/v1/invitations", json=body, headers=headers)
    assert again.status_code == 409 and again.get_json()["error"]["code"] == "shown_once"
    assert again.get_json()["error"]["details"]["id"] == first.get_json()["id"]
    assert link not in again.get_data(as_text=True)
    assert db.session.query(Invitation).filter_by(email="retry@example.com").count() == 1
    stored = [json.loads(redis.client.get(k)) for k in redis.client.keys("slipway:idem:*")]
    token = link.rsplit("/", 1)[-1]
    assert stored and all(token.encode() not in base64.b64decode(s["body"]) for s in stored)
