"""Rules every socket obeys: a per-user cap, closing on lost access, team-scoped status."""

from __future__ import annotations

import time

from sqlalchemy import delete

from app.deploys import livestatus
from app.extensions import db, redis
from app.live.sockets import SLOTS_KEY
from app.models import Deployment, Membership, ProjectMembership, Role, Team, User
from tests.conftest import csrf_token
from tests.factories import make_app, make_project, make_team, make_user
from tests.livekit import close, receive


def _team_with_deployment(label: str) -> tuple[User, int]:
    team = make_team(f"{label}-team")
    user = make_user(team, Role.developer, email=f"{label}@example.com")
    application = make_app(make_project(team))
    dep = Deployment(application_id=application.id, status="queued")
    db.session.add(dep)
    db.session.commit()
    return user, dep.id


def _publish(dep_id: int, status: str) -> None:
    dep = db.session.get(Deployment, dep_id)
    dep.status = status
    db.session.commit()
    livestatus.publish(dep)
    db.session.remove()


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_user_over_the_socket_cap_is_refused_with_a_reason(app, live_server):
    app.config["WS_MAX_PER_USER"] = 2
    user = make_user()
    session = live_server.login(user.email)
    slots = SLOTS_KEY.format(user.id)
    db.session.close()
    first = live_server.connect("/ws/status", session)
    second = live_server.connect("/ws/status", session)
    try:
        # A socket takes its slot in its handler, just after the handshake: wait
        # until both count, or the third could overtake the second.
        assert _wait(lambda: redis.client.zcard(slots) == 2)
        third = live_server.connect("/ws/status", session)
        got = receive(third, timeout=5)
        assert got.frames == []
        assert got.close_code == 4429
        assert "Too many" in got.close_message
        assert first.connected and second.connected
        close(second)
        assert _wait(lambda: redis.client.zcard(slots) == 1)  # the server freed its slot
        fourth = live_server.connect("/ws/status", session)
        assert receive(fourth, timeout=1.5).close_code is None  # stays open
        close(fourth)
    finally:
        close(first)
        close(second)


def test_every_logged_in_page_has_the_region_a_refused_socket_fills(logged_in):
    """live.js says "Live updates paused" there (an aria-live region; not role=status, which
    belongs to the flash messages) when a socket gets 4429."""
    client, user = logged_in
    application = make_app(make_project(user.memberships[0].team))
    for url in ("/", f"/apps/{application.id}", f"/apps/{application.id}/logs"):
        page = client.get(url).get_data(as_text=True)
        assert '<p id="live-notice" class="live-notice" aria-live="polite"></p>' in page, url
    client.post("/logout", data={"csrf_token": csrf_token(client, "/")})
    assert 'id="live-notice"' not in client.get("/login").get_data(as_text=True)


def test_a_socket_closes_when_its_user_leaves_the_team(app, live_server):
    user, dep_id = _team_with_deployment("leaver")
    email, user_id = user.email, user.id
    db.session.close()
    ws = live_server.connect(f"/ws/deployments/{dep_id}/log", live_server.login(email))
    first = receive(ws, timeout=5, until=lambda frames: frames)
    assert first.of("status")
    db.session.execute(delete(Membership).where(Membership.user_id == user_id))
    db.session.commit()
    db.session.remove()
    got = receive(ws, timeout=5)
    assert got.close_code == 4403
    assert got.frames == []


def test_a_socket_closes_when_the_user_logs_out_everywhere(app, live_server):
    user = make_user()
    email, user_id = user.email, user.id
    db.session.close()
    ws = live_server.connect("/ws/status", live_server.login(email))
    time.sleep(0.3)
    db.session.get(User, user_id).session_version += 1
    db.session.commit()
    db.session.remove()
    assert receive(ws, timeout=5).close_code == 4403


def test_status_socket_forwards_only_the_users_teams_and_misses_nothing_since_render(
    app, live_server
):
    mine_user, mine = _team_with_deployment("mine")
    _theirs_user, theirs = _team_with_deployment("theirs")
    email = mine_user.email
    db.session.close()
    since = livestatus.last_id()  # what the page rendered with
    _publish(mine, "building")  # between render and connect
    _publish(theirs, "building")
    ws = live_server.connect(f"/ws/status?since={since}", live_server.login(email))
    try:
        got = receive(ws, timeout=3, until=lambda frames: frames)
        _publish(theirs, "running")
        _publish(mine, "running")
        later = receive(ws, timeout=3, until=lambda frames: frames)
    finally:
        close(ws)
    changes = [c for f in got.frames + later.frames for c in f["changes"]]
    assert [(c["deployment_id"], c["status"]) for c in changes] == [
        (mine, "building"),
        (mine, "running"),
    ]
    assert all("team_id" not in c for c in changes)


def test_a_redis_failure_closes_the_socket_with_a_retry_code(app, live_server, monkeypatch):
    from redis.exceptions import ConnectionError as RedisDown

    user = make_user()
    email = user.email
    db.session.close()

    def down(*_args, **_kwargs):
        raise RedisDown("gone")

    monkeypatch.setattr(livestatus, "read", down)
    ws = live_server.connect("/ws/status", live_server.login(email))
    got = receive(ws, timeout=5)
    assert got.close_code == 1011 and got.frames == []


def test_status_socket_of_a_project_limited_member_forwards_only_its_projects(app, live_server):
    owner, seen = _team_with_deployment("limited")
    team_id = owner.memberships[0].team_id
    hidden_app = make_app(make_project(db.session.get(Team, team_id), "hidden"))
    hidden = Deployment(application_id=hidden_app.id, status="queued")
    db.session.add(hidden)
    db.session.flush()
    hidden_id, shop_id = hidden.id, db.session.get(Deployment, seen).application.project_id
    member = make_user(make_team(), Role.owner, email="limited-member@example.com")
    membership = Membership(team_id=team_id, user_id=member.id, role="viewer", all_projects=False)
    db.session.add(membership)
    db.session.flush()
    db.session.add(ProjectMembership(membership_id=membership.id, project_id=shop_id,
                                     role="viewer"))  # fmt: skip
    member.current_team_id = team_id
    db.session.commit()
    db.session.close()
    ws = live_server.connect("/ws/status", live_server.login("limited-member@example.com"))
    try:
        time.sleep(0.3)
        _publish(hidden_id, "building")
        _publish(seen, "building")
        got = receive(ws, timeout=3, until=lambda frames: frames)
    finally:
        close(ws)
    changes = [c for f in got.frames for c in f["changes"]]
    assert [(c["deployment_id"], c["status"]) for c in changes] == [(seen, "building")]
    assert all("project_id" not in c for c in changes)


def test_removed_and_demoted_members_sockets_close(app, live_server):
    """Issue 14: members.remove and a lowered role (app.accounts.members) end the member's
    sessions, and their open sockets close at the next check; an untouched member's stays."""
    from app.accounts import members

    team = make_team("crew")
    owner = make_user(team, Role.owner, email="boss@example.com")
    removed = make_user(team, Role.developer, email="removed@example.com")
    demoted = make_user(team, Role.admin, email="demoted@example.com")
    kept = make_user(team, Role.developer, email="kept@example.com")
    ids = {u.email: u.id for u in (owner, removed, demoted, kept)}
    team_id = team.id
    db.session.close()
    emails = ("removed@example.com", "demoted@example.com", "kept@example.com")
    sockets = {e: live_server.connect("/ws/status", live_server.login(e)) for e in emails}
    try:
        time.sleep(0.3)
        actor = db.session.get(User, ids["boss@example.com"])
        by_user = {m.user_id: m for m in db.session.query(Membership).filter_by(team_id=team_id)}
        members.remove(actor, by_user[ids["removed@example.com"]])
        members.change_role(actor, by_user[ids["demoted@example.com"]], "viewer")
        db.session.remove()
        assert receive(sockets["removed@example.com"], timeout=5).close_code == 4403
        assert receive(sockets["demoted@example.com"], timeout=5).close_code == 4403
        assert receive(sockets["kept@example.com"], timeout=1.5).close_code is None
    finally:
        for ws in sockets.values():
            close(ws)
