"""SECURITY.md cases 7 and 9, generated: every ``url_map`` rule × every role (and
project-limited memberships) × the member's own team and a foreign one.

1. Each rule asks the gate (``app.access.authorize``) for one action, and which one is
   pinned in :data:`ACTIONS`: a new route, or a route that starts asking for another
   action, fails here until the table below says so (a reviewed change).
2. For every persona, each rule whose action the persona may not take answers 403
   (or 404 where the object must stay unconfirmed), and the database is unchanged; each
   allowed page (GET) opens without the gate refusing anything.
3. Another team's objects are 404 for every persona, and nothing changes.

The expected decision is computed here from the persona and ``access.TABLE`` — not by
asking the gate — so a gate that drifted from its table fails too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from flask import abort

from app import access
from app.access import Action, Decision
from app.extensions import db
from app.models import Membership, ProjectMembership, Role
from tests.conftest import Auth, csrf_token
from tests.factories import make_project, make_user
from tests.security.test_team_isolation import INSTALLATION_WIDE, app_form

A = Action
# endpoint -> the action its view asks the gate for first.
ACTIONS: dict[str, Action] = {
    "apps.delete_get": A.APP_DELETE, "apps.delete_post": A.APP_DELETE,
    "apps.edit_get": A.APP_UPDATE, "apps.edit_post": A.APP_UPDATE,
    "apps.env_add": A.APP_UPDATE, "apps.env_delete": A.APP_UPDATE,
    "apps.health_get": A.APP_READ, "apps.new_get": A.APP_CREATE, "apps.new_post": A.APP_CREATE,
    "apps.show": A.APP_READ, "apps.validate_field": A.APP_CREATE,
    "audit.export": A.AUDIT_READ, "audit.index": A.AUDIT_READ,
    "backups.destination_delete_get": A.BACKUP_MANAGE,
    "backups.destination_delete_post": A.BACKUP_MANAGE,
    "backups.destination_edit_get": A.BACKUP_MANAGE,
    "backups.destination_edit_post": A.BACKUP_MANAGE,
    "backups.destination_new_get": A.BACKUP_MANAGE,
    "backups.destination_new_post": A.BACKUP_MANAGE,
    "backups.destination_test_post": A.BACKUP_MANAGE, "backups.download": A.BACKUP_MANAGE,
    "backups.index": A.BACKUP_READ, "backups.policy_delete_get": A.BACKUP_MANAGE,
    "backups.policy_delete_post": A.BACKUP_MANAGE, "backups.policy_drill_post": A.BACKUP_MANAGE,
    "backups.policy_edit_get": A.BACKUP_MANAGE, "backups.policy_edit_post": A.BACKUP_MANAGE,
    "backups.policy_new_get": A.BACKUP_MANAGE, "backups.policy_new_post": A.BACKUP_MANAGE,
    "backups.policy_run_post": A.BACKUP_MANAGE, "backups.restore_get": A.BACKUP_RESTORE,
    "backups.restore_post": A.BACKUP_RESTORE, "backups.restore_show": A.BACKUP_READ,
    "dashboard.index": A.TEAM_READ,
    "databases.delete_get": A.DATABASE_DELETE, "databases.delete_post": A.DATABASE_DELETE,
    "databases.link_post": A.APP_UPDATE, "databases.logs": A.DATABASE_READ,
    "databases.metrics_page": A.DATABASE_READ, "databases.new_get": A.DATABASE_MANAGE,
    "databases.logs_download": A.DATABASE_READ, "databases.metrics_series": A.DATABASE_READ,
    "databases.new_post": A.DATABASE_MANAGE, "databases.restart_post": A.DATABASE_MANAGE,
    "databases.rotate_post": A.DATABASE_ROTATE, "databases.show": A.DATABASE_READ,
    "databases.start_post": A.DATABASE_MANAGE, "databases.stop_post": A.DATABASE_MANAGE,
    "databases.unlink_post": A.APP_UPDATE, "databases.public_post": A.DATABASE_EXPOSE,
    "deployments.apply": A.APP_DEPLOY, "deployments.cancel": A.APP_DEPLOY,
    "deployments.deploy": A.APP_DEPLOY, "deployments.index": A.APP_READ,
    "deployments.log": A.APP_READ, "deployments.log_download": A.APP_READ,
    "deployments.restart": A.APP_DEPLOY, "deployments.rollback": A.APP_DEPLOY,
    "deployments.rollback_get": A.APP_DEPLOY, "deployments.show": A.APP_READ,
    "domains.add": A.APP_UPDATE, "domains.certificate_get": A.APP_UPDATE,
    "domains.certificate_post": A.APP_UPDATE, "domains.edit_get": A.APP_UPDATE,
    "domains.edit_post": A.APP_UPDATE, "domains.index": A.APP_READ,
    "domains.remove_get": A.APP_UPDATE, "domains.remove_post": A.APP_UPDATE,
    "domains.retry": A.APP_UPDATE,
    # A member's own API keys for the current team: any member may make one (the gate
    # never lets a key exceed its member's role); another user's key is a 404.
    "keys.create_post": A.TEAM_READ, "keys.index": A.TEAM_READ,
    "keys.revoke_get": A.TEAM_READ, "keys.revoke_post": A.TEAM_READ,
    "live.logs": A.APP_READ, "live.logs_download": A.APP_READ,
    "members.edit_get": A.MEMBER_MANAGE, "members.index": A.MEMBER_READ,
    "members.invite_post": A.MEMBER_MANAGE, "members.leave_get": A.MEMBER_READ,
    "members.leave_post": A.MEMBER_READ, "members.projects_post": A.MEMBER_MANAGE,
    "members.remove_get": A.MEMBER_MANAGE, "members.remove_post": A.MEMBER_MANAGE,
    "members.revoke_post": A.MEMBER_MANAGE, "members.role_post": A.MEMBER_MANAGE,
    "members.transfer_get": A.MEMBER_MANAGE, "members.transfer_post": A.MEMBER_MANAGE,
    "metrics.app_page": A.APP_READ, "metrics.app_series": A.APP_READ,
    "notifications.create_post": A.NOTIFICATION_MANAGE,
    "notifications.delete_get": A.NOTIFICATION_MANAGE,
    "notifications.delete_post": A.NOTIFICATION_MANAGE,
    "notifications.edit_get": A.NOTIFICATION_MANAGE,
    "notifications.edit_post": A.NOTIFICATION_MANAGE, "notifications.index": A.NOTIFICATION_READ,
    "notifications.signing_secret_post": A.NOTIFICATION_MANAGE,
    "notifications.test_post": A.NOTIFICATION_MANAGE,
    "projects.delete_get": A.PROJECT_DELETE, "projects.delete_post": A.PROJECT_DELETE,
    "projects.edit_get": A.PROJECT_UPDATE, "projects.edit_post": A.PROJECT_UPDATE,
    "projects.new_get": A.PROJECT_CREATE, "projects.new_post": A.PROJECT_CREATE,
    "projects.show": A.PROJECT_READ,
    "repos.clear_token": A.APP_UPDATE, "repos.deliveries": A.APP_READ,
    "repos.forget_host_key": A.APP_UPDATE, "repos.generate_key": A.APP_UPDATE,
    "repos.reveal_secret": A.APP_SECRETS, "repos.rotate_secret": A.APP_UPDATE,
    "repos.save_settings": A.APP_UPDATE, "repos.set_token": A.APP_UPDATE,
    "repos.show": A.APP_UPDATE,
    "teams.delete_get": A.TEAM_DELETE, "teams.delete_post": A.TEAM_DELETE,
    "teams.settings_get": A.TEAM_MANAGE, "teams.settings_post": A.TEAM_MANAGE,
    "teams.switch": A.TEAM_READ,
    # An app's Volumes tab (app/web/volumes.py).
    "volumes.index": A.APP_READ, "volumes.add": A.VOLUME_MANAGE, "volumes.mode": A.VOLUME_MANAGE,
    "volumes.detach_get": A.VOLUME_MANAGE, "volumes.detach_post": A.VOLUME_MANAGE,
    "volumes.reattach": A.VOLUME_MANAGE, "volumes.purge_get": A.VOLUME_PURGE,
    "volumes.purge_post": A.VOLUME_PURGE,
}  # fmt: skip

# Rules that are not a team's: public pages, the user's own account and team list, and
# the installation-wide pages (their own check: tests/security/test_installation_pages.py).
NOT_A_TEAMS = {
    "static", "health.healthz", "prometheus.scrape", "auth.forgot_get", "auth.forgot_post",
    "auth.login_get", "auth.login_post", "auth.logout_post", "auth.reset_get", "auth.reset_post",
    "auth.setup_get", "auth.setup_post", "invitations.show_get", "invitations.accept_post",
    "settings.account_get", "settings.password_post",
    "settings.sessions_revoke_post", "teams.index", "teams.create",
    "installation.admins_get", "installation.admins_post", "metrics.server_page",
    "metrics.server_series", "workers.index", "workers.retry",
    # Single sign-on: the sign-in itself (public) and the installation owner's settings
    # (tests/accounts/test_sso.py, tests/security/test_roles.py).
    "sso.login", "sso.callback", "sso.settings_get", "sso.password_login_post", "sso.new_get",
    "sso.new_post", "sso.edit_get", "sso.edit_post", "sso.delete_get", "sso.delete_post",
    # Two-factor login and the check again: the user's own (tests/accounts/test_twofactor.py).
    "auth.reauth_get", "auth.reauth_post", "twofactor.login_get", "twofactor.login_post",
    "twofactor.enrol_get", "twofactor.enrol_post", "twofactor.regenerate_get",
    "twofactor.regenerate_post", "twofactor.disable_get", "twofactor.disable_post",
}  # fmt: skip
# The API has its own matrix, keys × scopes × roles (tests/api/test_api_security.py).
NOT_A_TEAMS_BLUEPRINTS = {"webhooks", "wellknown", "api", "api_docs"}


@dataclass(frozen=True)
class Persona:
    name: str
    role: Role
    projects: str | None = None  # None: every project; "own": the world's; "other": another

    def expected(self, action: Action, team_id: int, project_id: int | None, world) -> Decision:
        """What the table says, worked out without the gate."""
        if team_id != world.team.id:
            return Decision.HIDDEN
        rule = access.TABLE[action]
        if self.projects is None:
            role = self.role
        elif project_id is not None:
            if self.projects != "own" or project_id != world.project.id:
                return Decision.HIDDEN
            role = self.role
        elif action in (Action.TEAM_READ, Action.MEMBER_READ):
            role = self.role
        else:
            return Decision.FORBIDDEN
        return Decision.ALLOWED if role.rank >= rule.role.rank else Decision.FORBIDDEN


PERSONAS = [
    Persona("viewer", Role.viewer),
    Persona("developer", Role.developer),
    Persona("admin", Role.admin),
    Persona("owner", Role.owner),
    Persona("limited-developer", Role.developer, "own"),
    Persona("limited-admin-elsewhere", Role.admin, "other"),
]


@dataclass
class Recorder:
    """Wraps ``access.authorize``: what each request asked, and what the gate decided."""

    probe: bool = False
    calls: list[tuple[Action, tuple[int, int | None], Decision]] = field(default_factory=list)

    def install(self, monkeypatch):
        real = access.authorize

        def recording(action, resource):
            decision = access.decide(access.current_user, action, resource)
            self.calls.append((Action(action), access._scope_of(resource), decision))
            if self.probe:
                abort(418)  # learnt what it asks: stop before the view does anything
            return real(action, resource)

        monkeypatch.setattr(access, "authorize", recording)
        return self


def _is_team_rule(endpoint: str) -> bool:
    return endpoint not in NOT_A_TEAMS and endpoint.split(".")[0] not in NOT_A_TEAMS_BLUEPRINTS


def _log_in(client, world, persona: Persona):
    user = make_user(role=Role.owner)  # a team of their own too, like most users
    membership = Membership(team_id=world.team.id, user_id=user.id, role=persona.role.value,
                            all_projects=persona.projects is None)  # fmt: skip
    db.session.add(membership)
    db.session.flush()
    if persona.projects is not None:
        project = world.project if persona.projects == "own" else make_project(world.team)
        db.session.add(ProjectMembership(membership_id=membership.id, project_id=project.id,
                                         role=persona.role.value))  # fmt: skip
    user.current_team_id = world.team.id
    db.session.commit()
    assert Auth(client).login(user).status_code == 303


def _send(client, method, url, token, env_id):
    data = app_form(token, env_id) if method == "POST" else None
    return client.open(url, method=method, data=data)


def test_every_team_rule_asks_the_gate_for_its_pinned_action(app, client, team_a, routes,
                                                            monkeypatch):  # fmt: skip
    recorder = Recorder(probe=True).install(monkeypatch)
    _log_in(client, team_a, Persona("owner", Role.owner))
    token, env_id = csrf_token(client, "/"), team_a.project.environments[0].id
    asked = {}
    for endpoint, method, url in routes(app, team_a):
        if not _is_team_rule(endpoint):
            continue
        recorder.calls.clear()
        _send(client, method, url, token, env_id)
        assert recorder.calls, f"{endpoint} never asks access.authorize"
        asked[endpoint] = recorder.calls[0][0]
    assert asked == ACTIONS


@pytest.mark.parametrize("persona", PERSONAS, ids=lambda p: p.name)
def test_each_persona_gets_what_the_table_allows_and_refusals_change_nothing(
    app, client, team_a, team_b, routes, db_state, monkeypatch, persona
):
    _log_in(client, team_a, persona)
    token, env_id = csrf_token(client, "/"), team_a.project.environments[0].id
    probe = Recorder(probe=True).install(monkeypatch)
    plan = []
    for endpoint, method, url in routes(app, team_a):
        if not _is_team_rule(endpoint):
            continue
        probe.calls.clear()
        _send(client, method, url, token, env_id)
        action, (team_id, project_id), _ = probe.calls[0]
        plan.append((endpoint, method, url, persona.expected(action, team_id, project_id, team_a)))
    monkeypatch.undo()
    recorder = Recorder().install(monkeypatch)
    before = db_state()
    refused = 0
    for endpoint, method, url, expected in plan:
        if expected is Decision.ALLOWED and method != "GET":
            continue  # allowed writes are the feature tests' business
        recorder.calls.clear()
        response = _send(client, method, url, token, env_id)
        where = (persona.name, endpoint, method, url, response.status_code)
        if expected is Decision.ALLOWED:
            assert response.status_code not in (401, 403), where
            assert all(d is Decision.ALLOWED for _, _, d in recorder.calls), where
        else:
            refused += 1
            assert response.status_code == (404 if expected is Decision.HIDDEN else 403), where
    assert db_state() == before, persona.name
    if persona.role is not Role.owner or persona.projects:
        assert refused, "this persona was refused nothing: the matrix tested nothing"


@pytest.mark.parametrize("persona", PERSONAS, ids=lambda p: p.name)
def test_another_teams_objects_are_404_for_every_persona(
    app, client, team_a, team_b, routes, db_state, persona
):
    _log_in(client, team_a, persona)
    token, env_id = csrf_token(client, "/"), team_b.project.environments[0].id
    before = db_state()
    requests = [r for r in routes(app, team_b, objects_only=True) if _is_team_rule(r[0])]
    assert len(requests) >= 40
    for endpoint, method, url in requests:
        response = _send(client, method, url, token, env_id)
        expected = 403 if endpoint in INSTALLATION_WIDE else 404
        assert response.status_code == expected, (persona.name, method, url)
    assert db_state() == before
