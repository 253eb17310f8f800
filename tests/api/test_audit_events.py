"""/api/v1 audit events: the audit page's filters, newest first, by cursor (issue 15)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from app import audit
from app.extensions import db
from app.models import AuditEvent, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_project, make_user, team_of

PATH = "/api/v1/audit-events"


def _event(team, action, user=None, target_type=None, target_id=None, when=None, **details):
    row = AuditEvent(team_id=team.id, user_id=user.id if user else None, action=action,
                     target_type=target_type, target_id=target_id, details=details,
                     created_at=when or datetime.now(UTC))  # fmt: skip
    db.session.add(row)
    db.session.commit()
    return row.id


def _ids(response) -> list[int]:
    assert response.status_code == 200, response.get_json()
    return [e["id"] for e in shaped("AuditEventPage", response.get_json())["data"]]


def test_events_newest_first_with_the_key_that_did_them(api, owner):
    team = team_of(owner)
    created = api.post("/api/v1/invitations", json={"role": "viewer"})
    assert created.status_code == 201
    key_id = api.get("/api/v1/me").get_json()["key"]["id"]
    body = api.get(PATH).get_json()
    first = shaped("AuditEvent", body["data"][0])
    assert first["action"] == "invitation.created" and first["api_key_id"] == key_id
    assert first["user_id"] == owner.id and first["user_email"] == owner.email
    assert first["target_type"] == "invitation" and first["details"]["role"] == "viewer"
    older = _event(team, "project.created")
    assert _ids(api.get(PATH))[0] == older  # newest first
    assert api.get(PATH).get_json()["data"][0]["api_key_id"] is None


def test_secret_looking_details_are_not_shown(api, owner):
    _event(team_of(owner), "git_token.set", token="tok-canary", name="visible")
    text = api.get(PATH).get_data(as_text=True)
    assert "tok-canary" not in text and "visible" in text


def test_filters_as_the_audit_page(api, owner):
    team = team_of(owner)
    other = make_user(team=team, role=Role.admin)
    now = datetime.now(UTC)
    a = _event(team, "member.removed", owner, "user", other.id, now - timedelta(days=3))
    b = _event(team, "member.role_changed", other, "user", owner.id, now - timedelta(days=1))
    c = _event(team, "project.created", owner, "project", 7, now)
    assert _ids(api.get(PATH, query_string={"action": "member."})) == [b, a]
    assert _ids(api.get(PATH, query_string={"action": "project.created"})) == [c]
    assert _ids(api.get(PATH, query_string={"user_id": other.id})) == [b]
    assert _ids(api.get(PATH, query_string={"target_type": "user", "target_id": owner.id})) == [b]
    since = (now - timedelta(days=2)).isoformat()
    until = (now - timedelta(hours=1)).isoformat()
    # (the keys' own creation events are in the team's trail too: look at these three only)
    ours = {a, b, c}
    assert [i for i in _ids(api.get(PATH, query_string={"since": since})) if i in ours] == [c, b]
    window = api.get(PATH, query_string={"since": since, "until": until})
    assert [i for i in _ids(window) if i in ours] == [b]
    naive = (now - timedelta(days=2)).replace(tzinfo=None).isoformat()
    in_utc = api.get(PATH, query_string={"since": naive})  # no offset: UTC
    assert [i for i in _ids(in_utc) if i in ours] == [c, b]


def test_bad_filters_are_422(api):
    for query, field in (
        ({"action": "nope.nothing"}, "action"),
        ({"target_id": 3}, "target_id"),
        ({"target_type": "no_such_model"}, "target_type"),
        ({"target_type": "user\x00"}, "target_type"),
        ({"since": "2026-12-03", "until": "2026-12-01"}, "until"),
        ({"since": "yesterday"}, "since"),
        ({"user_id": "me"}, "user_id"),
        ({"limit": 101}, "limit"),
        ({"colour": "red"}, "colour"),
    ):
        response = api.get(PATH, query_string=query)
        assert response.status_code == 422, query
        assert field in error_of(response)["details"]["fields"], query


def test_pages_by_cursor_without_loss_or_repeat(api, owner):
    team = team_of(owner)
    made = [_event(team, "project.created", target_type="project", target_id=i)
            for i in range(7)]  # fmt: skip
    seen, cursor = [], None
    while True:
        query = {"limit": 3, "action": "project.created"} | ({"cursor": cursor} if cursor else {})
        body = api.get(PATH, query_string=query).get_json()
        seen += [e["id"] for e in body["data"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == made[::-1]
    assert api.get(PATH, query_string={"cursor": "!!"}).status_code == 422


def test_only_the_team_s_events_and_only_for_admins_with_an_admin_scope(api, api_for, owner):
    team = team_of(owner)
    stranger = api_for()
    _event(stranger.team, "project.created")
    mine = _event(team, "project.created")
    assert _ids(api.get(PATH, query_string={"action": "project.created"})) == [mine]
    assert all(e["action"] == "api_key.created" for e in api.get(PATH).get_json()["data"][1:])
    # audit.read is a read: the read scope holds it, but the role must be admin or owner
    reader = api_for(team=team, role=Role.admin, scopes=("read",))
    assert mine in _ids(reader.get(PATH))
    developer = api_for(team=team, role=Role.developer)
    assert developer.get(PATH).status_code == 403
    project_key = api_for(team=team, projects=[make_project(team).id])  # team-wide: reads only
    assert project_key.get(PATH).status_code == 403


def test_the_action_names_are_the_audit_module_s(api, owner):
    team = team_of(owner)
    for action in (audit.Action.API_KEY_CREATED, audit.Action.TEAM_RENAMED):
        _event(team, action.value)
    assert len(_ids(api.get(PATH, query_string={"action": "api_key."}))) >= 1
    assert _ids(api.get(PATH, query_string={"action": "team.renamed"}))
