"""The gate (app.access): one role × action table, project-limited memberships."""

from __future__ import annotations

import pytest

from app import access
from app.access import Action, Decision, Scope
from app.extensions import db
from app.models import BackupDestination, Membership, ProjectMembership, Role
from tests.factories import make_app, make_project, make_team, make_user, team_of


@pytest.fixture
def world(app):
    owner = make_user(role=Role.owner)
    team = team_of(owner)
    shop, other = make_project(team, "shop"), make_project(team, "other")
    return team, shop, other, make_app(shop, "web"), make_app(other, "api")


def _member(team, role, projects=None):
    user = make_user(make_team(), Role.owner)  # a team of their own too
    membership = Membership(team_id=team.id, user_id=user.id, role=role.value,
                            all_projects=projects is None)  # fmt: skip
    db.session.add(membership)
    db.session.flush()
    for project, project_role in (projects or {}).items():
        db.session.add(ProjectMembership(membership_id=membership.id, project_id=project.id,
                                         role=project_role.value))  # fmt: skip
    db.session.commit()
    return user


@pytest.mark.parametrize("role", list(access.ROLES))
@pytest.mark.parametrize("action", list(Action))
def test_a_full_membership_follows_the_table(world, role, action):
    team, shop, _other, web, _api = world
    user = _member(team, role)
    resource = web if access.TABLE[action].scope is Scope.PROJECT else team
    assert access.can(user, action, resource) is role.allows(access.TABLE[action].role)


def test_a_limited_viewer_sees_its_project_only(world):
    team, shop, other, web, api = world
    user = _member(team, Role.viewer, {shop: Role.viewer})
    assert access.can(user, Action.APP_READ, web)
    assert not access.can(user, Action.APP_DEPLOY, web)
    assert access.decide(user, Action.APP_READ, api) is Decision.HIDDEN
    assert access.decide(user, Action.PROJECT_READ, other) is Decision.HIDDEN
    assert access.can(user, Action.TEAM_READ, team)
    assert access.can(user, Action.MEMBER_READ, team)
    for action in (Action.BACKUP_READ, Action.NOTIFICATION_READ, Action.PROJECT_CREATE,
                   Action.AUDIT_READ):  # fmt: skip
        assert access.decide(user, action, team) is Decision.FORBIDDEN, action
    assert access.visible_project_ids(user, team.id) == {shop.id}


def test_a_limited_developer_cannot_delete_its_project_or_touch_another(world):
    team, shop, other, web, api = world
    user = _member(team, Role.developer, {shop: Role.developer})
    assert access.can(user, Action.APP_DEPLOY, web)
    assert access.decide(user, Action.PROJECT_DELETE, shop) is Decision.FORBIDDEN
    assert access.decide(user, Action.APP_DELETE, web) is Decision.FORBIDDEN
    assert access.decide(user, Action.APP_DEPLOY, api) is Decision.HIDDEN


def test_per_project_roles_differ(world):
    team, shop, other, web, api = world
    user = _member(team, Role.admin, {shop: Role.admin, other: Role.viewer})
    assert access.can(user, Action.APP_DELETE, web)
    assert not access.can(user, Action.APP_UPDATE, api)
    assert access.can(user, Action.APP_READ, api)


def test_team_objects_and_strangers(world):
    team, shop, _other, web, _api = world
    destination = BackupDestination(team_id=team.id, name="d", endpoint_url="http://s3",
                                    region="r", bucket="b", prefix="p", access_key_id="k",
                                    secret_access_key="s")  # fmt: skip
    stranger = make_user(make_team(), Role.owner)
    assert access.decide(stranger, Action.APP_READ, web) is Decision.HIDDEN
    assert access.decide(stranger, Action.BACKUP_READ, destination) is Decision.HIDDEN
    admin = _member(team, Role.admin)
    assert access.can(admin, Action.BACKUP_MANAGE, destination)
    assert access.decide(None, Action.APP_READ, web) is Decision.HIDDEN


def test_the_table_rows_match_the_table():
    rows = access.table_rows()
    assert [name for name, *_ in rows] == [a.value for a in access.TABLE]
    viewer_may = {name for name, _label, _scope, allowed in rows if allowed[0]}
    assert "app.read" in viewer_may and "app.deploy" not in viewer_may
    assert all(allowed[3] for *_rest, allowed in rows)  # an owner may do everything


def test_the_architecture_document_prints_the_same_table():
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ARCHITECTURE.md").read_text()
    lines = [
        f"| `{name}` | {label} | {scope.value} | "
        + " | ".join("✓" if allowed else "–" for allowed in row)
        + " |"
        for name, label, scope, row in access.table_rows()
    ]
    assert "\n".join(lines) in doc
