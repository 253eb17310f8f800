"""Issue 14 item 3: the members page. Nobody grants a role above their own or touches a
member above them; the last owner stays; removing, demoting or narrowing ends the
member's sessions; every change is audited with its team."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from app import audit
from app.accounts import members
from app.extensions import db
from app.models import AuditEvent, Membership, ProjectMembership, Role, User
from app.models.base import utcnow
from tests.conftest import Auth, RequestScopedClient, csrf_token
from tests.factories import make_project, make_team, make_user


@pytest.fixture
def db_state(app):
    """Every row of every table, read on a fresh connection (to prove nothing changed)."""

    def snapshot() -> dict[str, list[tuple]]:
        db.session.commit()
        with db.engine.connect() as conn:
            return {
                table.name: [tuple(row) for row in conn.execute(select(table))]
                for table in db.metadata.sorted_tables
            }

    return snapshot


def _client(app):
    app.test_client_class = RequestScopedClient
    return app.test_client()


def _membership(user, team) -> Membership:
    db.session.expire_all()
    return db.session.scalar(
        select(Membership).where(Membership.user_id == user.id, Membership.team_id == team.id)
    )


def _events(action) -> list[AuditEvent]:
    db.session.expire_all()
    query = select(AuditEvent).where(AuditEvent.action == action.value)
    return list(db.session.scalars(query.order_by(AuditEvent.id)))


@pytest.fixture
def world(app):
    """A team with an owner, an admin, a developer and a viewer; the owner logged in on
    one client and each other member on a client of their own."""
    team = make_team("acme")
    people = {role: make_user(team, role, email=f"{role.value}@acme.test") for role in Role}
    clients = {}
    for role, user in people.items():
        client = _client(app)
        assert Auth(client).login(user).status_code == 303
        clients[role] = client
    return team, people, clients


def _post(client, url, **data):
    return client.post(url, data={"csrf_token": csrf_token(client, "/"), **data})


def _logged_out(client) -> bool:
    response = client.get("/team/members/")
    return response.status_code == 302 and "/login" in response.headers["Location"]


def test_the_page_lists_members_roles_projects_two_factor_and_the_role_table(app, world):
    team, people, clients = world
    shop = make_project(team, name="shop")
    viewer = _membership(people[Role.viewer], team)
    viewer.all_projects = False
    viewer.projects.append(ProjectMembership(project_id=shop.id, role="viewer"))
    people[Role.admin].totp_enabled_at = utcnow()
    db.session.commit()
    body = clients[Role.viewer].get("/team/members/").get_data(as_text=True)
    for user in people.values():
        assert user.email in body
    assert "shop (viewer)" in body and "All projects" in body
    assert ">on<" in body and ">off<" in body
    assert "Invite, change roles and project access, remove members" in body  # the table
    assert "/team/members/invitations" not in body  # a viewer gets no invite form
    owner_page = clients[Role.owner].get("/team/members/").get_data(as_text=True)
    assert 'action="/team/members/invitations"' in owner_page


def test_an_admin_raises_a_member_up_to_their_own_role_and_no_higher(app, world):
    team, people, clients = world
    dev = _membership(people[Role.developer], team)
    refused = _post(clients[Role.admin], f"/team/members/{dev.id}/role", role="owner")
    assert refused.status_code == 403
    assert _membership(people[Role.developer], team).role == "developer"
    ok = _post(clients[Role.admin], f"/team/members/{dev.id}/role", role="admin")
    assert ok.status_code == 303
    assert _membership(people[Role.developer], team).role == "admin"
    (event,) = _events(audit.Action.MEMBER_ROLE_CHANGED)
    assert event.team_id == team.id and event.user_id == people[Role.admin].id
    assert event.details["from"] == "developer" and event.details["to"] == "admin"
    assert not _logged_out(clients[Role.developer])  # raised: the session goes on


def test_an_admin_cannot_change_or_remove_an_owner(app, world, db_state):
    team, people, clients = world
    owner = _membership(people[Role.owner], team)
    admin = clients[Role.admin]
    before = db_state()
    assert _post(admin, f"/team/members/{owner.id}/role", role="viewer").status_code == 403
    assert _post(admin, f"/team/members/{owner.id}/remove").status_code == 403
    assert _post(admin, f"/team/members/{owner.id}/projects", access="all").status_code == 403
    assert _post(admin, f"/team/members/{owner.id}/transfer").status_code == 403
    assert db_state() == before


@pytest.mark.parametrize("role", [Role.viewer, Role.developer])
def test_below_admin_nobody_changes_members(app, world, db_state, role):
    team, people, clients = world
    target = _membership(people[Role.viewer], team)
    before = db_state()
    for url, data in (
        (f"/team/members/{target.id}/role", {"role": "developer"}),
        (f"/team/members/{target.id}/remove", {}),
        (f"/team/members/{target.id}/projects", {"access": "all"}),
        (f"/team/members/{target.id}/transfer", {}),
    ):
        assert _post(clients[role], url, **data).status_code == 403, url
    assert clients[role].get(f"/team/members/{target.id}/edit").status_code == 403
    assert db_state() == before


def test_nobody_raises_their_own_role(app, world, db_state):
    team, people, clients = world
    me = _membership(people[Role.admin], team)
    before = db_state()
    assert (
        _post(clients[Role.admin], f"/team/members/{me.id}/role", role="owner").status_code == 403
    )
    assert db_state() == before


def test_the_last_owner_can_neither_leave_nor_be_demoted_nor_removed(app, world, db_state):
    team, people, clients = world
    owner_user = people[Role.owner]
    owner = _membership(owner_user, team)
    client = clients[Role.owner]
    before = db_state()
    demote = _post(client, f"/team/members/{owner.id}/role", role="admin")
    assert demote.status_code == 409 and "transfer ownership" in demote.get_data(as_text=True)
    assert _post(client, "/team/members/leave").status_code == 409
    with pytest.raises(members.MemberChangeRefused):
        members.remove(db.session.get(User, owner_user.id), owner)
    assert db_state() == before


def test_transfer_ownership_then_the_former_owner_may_leave(app, world):
    team, people, clients = world
    dev_user = people[Role.developer]
    dev = _membership(dev_user, team)
    dev.all_projects = False
    db.session.commit()
    assert clients[Role.owner].get(f"/team/members/{dev.id}/transfer").status_code == 200
    assert _post(clients[Role.owner], f"/team/members/{dev.id}/transfer").status_code == 303
    new_owner = _membership(dev_user, team)
    assert new_owner.role == "owner" and new_owner.all_projects
    assert _membership(people[Role.owner], team).role == "admin"
    (event,) = _events(audit.Action.OWNERSHIP_TRANSFERRED)
    assert event.team_id == team.id and event.details["to_user_id"] == dev_user.id
    # The new owner is now the last one; the former owner, an admin, may leave.
    people[Role.owner].current_team_id = team.id
    db.session.commit()
    assert _post(clients[Role.owner], "/team/members/leave").status_code == 303
    assert _membership(people[Role.owner], team) is None
    assert db.session.get(User, people[Role.owner].id).current_team_id is None
    (left,) = _events(audit.Action.MEMBER_LEFT)
    assert left.team_id == team.id


def test_removing_a_member_ends_their_sessions_and_clears_their_current_team(app, world):
    team, people, clients = world
    dev_user = people[Role.developer]
    dev_user.current_team_id = team.id
    db.session.commit()
    dev = _membership(dev_user, team)
    page = clients[Role.admin].get(f"/team/members/{dev.id}/remove").get_data(as_text=True)
    assert "Remove member" in page  # the shared confirm page
    assert not _logged_out(clients[Role.developer])
    assert _post(clients[Role.admin], f"/team/members/{dev.id}/remove").status_code == 303
    assert _membership(dev_user, team) is None
    assert db.session.get(User, dev_user.id).current_team_id is None
    assert _logged_out(clients[Role.developer])
    (event,) = _events(audit.Action.MEMBER_REMOVED)
    assert event.team_id == team.id and event.target_id == dev_user.id
    assert not _logged_out(clients[Role.viewer])  # nobody else's


def test_a_demoted_member_is_logged_out(app, world):
    team, people, clients = world
    admin = _membership(people[Role.admin], team)
    assert (
        _post(clients[Role.owner], f"/team/members/{admin.id}/role", role="viewer").status_code
        == 303
    )
    assert _logged_out(clients[Role.admin])
    assert _membership(people[Role.admin], team).role == "viewer"


def test_project_access_narrowed_ends_sessions_and_roles_stay_below_the_membership(app, world):
    team, people, clients = world
    shop, other = make_project(team, name="shop"), make_project(team, name="other")
    dev = _membership(people[Role.developer], team)
    url = f"/team/members/{dev.id}/projects"
    above = _post(clients[Role.owner], url, access="some", **{f"project_{shop.id}": "admin"})
    assert above.status_code == 422 and _membership(people[Role.developer], team).all_projects
    foreign = make_project(make_team(), name="foreign")
    stray = _post(clients[Role.owner], url, access="some", **{f"project_{foreign.id}": "viewer"})
    assert stray.status_code == 422
    assert not _logged_out(clients[Role.developer])
    ok = _post(clients[Role.owner], url, access="some", **{f"project_{shop.id}": "developer"})
    assert ok.status_code == 303
    limited = _membership(people[Role.developer], team)
    assert not limited.all_projects
    assert [(p.project_id, p.role) for p in limited.projects] == [(shop.id, "developer")]
    assert _logged_out(clients[Role.developer])
    (event,) = _events(audit.Action.MEMBER_PROJECTS_CHANGED)
    assert event.team_id == team.id and event.details["from"] == "all"
    assert event.details["to"] == {str(shop.id): "developer"}
    assert other.id not in {p.project_id for p in limited.projects}


def test_widening_project_access_keeps_the_session(app, world):
    team, people, clients = world
    shop = make_project(team, name="shop")
    dev = _membership(people[Role.developer], team)
    members.set_projects(db.session.get(User, people[Role.owner].id), dev, False,
                         [(shop.id, "viewer")])  # fmt: skip
    client = _client(app)
    assert Auth(client).login(people[Role.developer]).status_code == 303
    assert (
        _post(clients[Role.owner], f"/team/members/{dev.id}/projects", access="all").status_code
        == 303
    )
    assert _membership(people[Role.developer], team).all_projects
    assert not _logged_out(client)


def test_demotion_brings_project_roles_down_to_the_new_role(app, world):
    team, people, clients = world
    shop = make_project(team, name="shop")
    admin_user = people[Role.admin]
    admin = _membership(admin_user, team)
    owner = db.session.get(User, people[Role.owner].id)
    members.set_projects(owner, admin, False, [(shop.id, "admin")])
    members.change_role(owner, _membership(admin_user, team), "viewer")
    demoted = _membership(admin_user, team)
    assert demoted.role == "viewer" and [p.role for p in demoted.projects] == ["viewer"]


def test_another_teams_members_are_404_and_untouched(app, world, db_state):
    team, people, clients = world
    other_team = make_team("bravo")
    victim = make_user(other_team, Role.developer, email="victim@bravo.test")
    make_user(other_team, Role.owner, email="boss@bravo.test")
    victim_m = _membership(victim, other_team)
    before = db_state()
    client = clients[Role.owner]
    for url in (f"/team/members/{victim_m.id}/edit", f"/team/members/{victim_m.id}/remove",
                f"/team/members/{victim_m.id}/transfer"):  # fmt: skip
        assert client.get(url).status_code == 404, url
    for url, data in (
        (f"/team/members/{victim_m.id}/role", {"role": "viewer"}),
        (f"/team/members/{victim_m.id}/remove", {}),
        (f"/team/members/{victim_m.id}/projects", {"access": "all"}),
        (f"/team/members/{victim_m.id}/transfer", {}),
    ):
        assert _post(client, url, **data).status_code == 404, url
    assert "victim@bravo.test" not in client.get("/team/members/").get_data(as_text=True)
    assert db_state() == before
