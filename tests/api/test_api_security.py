"""The API's security matrix, generated from ``app.url_map`` and ``spec.OPERATIONS``
(SECURITY.md cases 7, 9 and 10 for ``/api/v1``; tests/security/test_matrix.py is the
dashboard's).

a. Every ``/api/v1`` rule is a declared operation, and its handler's FIRST gate call
   (``access.authorize``) asks the operation's declared action, before it parses the
   body (the probe sends ``{}``).
b. Every operation × every scope × every role (and a project-limited developer): the
   expected decision is worked out here from ``access.TABLE`` and ``apikeys.SCOPES``,
   not by asking the gate. Refused: 403, or 404 where the object must stay unconfirmed,
   and the whole database unchanged, nothing queued. Allowed reads answer without 401/403.
c. A key of team A on team B's object ids: 404, nothing changed. A key limited to
   project P on another project's objects: 404, nothing changed.
d. No key, a revoked, an expired, a demoted or removed member's key: 401 on every
   operation, nothing changed; a key in the query string: 400; the session cookie: 401.

Operations arrive from every area; the matrix covers whatever is registered. A path
parameter it cannot fill (:data:`PARAMS`) fails loudly: add it there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import g

from app import access
from app.access import Action, Decision
from app.accounts import apikeys, members
from app.extensions import db
from app.models import ApiKey, Deployment, Domain, Membership, ProjectMembership, Role
from app.models.base import utcnow
from app.web.api import spec
from tests.api.conftest import Api, error_of
from tests.conftest import Auth, csrf_token
from tests.factories import make_app, make_database, make_project, make_user
from tests.security.conftest import TeamWorld
from tests.security.test_matrix import Recorder
from tests.security.test_team_isolation import _queued_jobs

# Path parameter -> the world's object it names. Every name the contract uses is here,
# whether or not its routes exist yet.
PARAMS: dict[str, Callable[[TeamWorld], int | str]] = {
    "project_id": lambda w: w.project.id,
    "app_id": lambda w: w.application.id,
    "application_id": lambda w: w.application.id,
    "deployment_id": lambda w: w.deployment.id,
    "domain_id": lambda w: w.domain.id,
    "var_id": lambda w: w.plain_var.id,
    "key": lambda w: w.plain_var.key,  # an env var's key (/apps/<app_id>/env/<key>)
    "destination_id": lambda w: w.backup_objects["destination"].id,
    "policy_id": lambda w: w.backup_objects["policy"].id,
    "backup_id": lambda w: w.backup_objects["backup"].id,
    "restore_id": lambda w: w.backup_objects["restore"].id,
    "channel_id": lambda w: w.backup_objects["channel"].id,
    "membership_id": lambda w: w.membership.id,
    "member_id": lambda w: w.membership.id,
    "invitation_id": lambda w: w.invitation.id,
    "key_id": lambda w: w.key_id,
    "database_id": lambda w: w.database.id,
    "link_id": lambda w: w.link.id,
}
# The parameters that name something inside a project (a project-limited key's reach).
PROJECT_PARAMS = {"project_id", "app_id", "application_id", "deployment_id", "domain_id",
                  "var_id", "key", "database_id", "link_id"}  # fmt: skip
SCOPE_NAMES = list(apikeys.SCOPES)
WRITES = ("POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Call:
    endpoint: str
    method: str
    url: str
    op: spec.Operation
    args: frozenset[str]


def _operations(flask_app, world: TeamWorld, overrides: dict | None = None) -> list[Call]:
    """Every registered API operation, its path filled with ``world``'s objects."""
    adapter = flask_app.url_map.bind("localhost")
    found = []
    for rule in flask_app.url_map.iter_rules():
        if not rule.endpoint.startswith("api."):
            continue
        op = spec.OPERATIONS.get(rule.endpoint)
        assert op is not None, f"{rule.rule} ({rule.endpoint}) is not a declared operation"
        missing = set(rule.arguments) - set(PARAMS) - set(overrides or {})
        if missing:
            pytest.fail(f"{rule.rule}: no world object for {sorted(missing)}: add it to PARAMS")
        values = {name: PARAMS[name](world) for name in rule.arguments} | {
            name: value for name, value in (overrides or {}).items() if name in rule.arguments
        }
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            url = adapter.build(rule.endpoint, values, method=method)
            found.append(Call(rule.endpoint, method, url, op, frozenset(rule.arguments)))
    assert found, "no API operation registered"
    return found


def _keyed(calls: list[Call]) -> list[Call]:
    return [c for c in calls if not c.op.public]


def _send(api: Api, call: Call, **kw):
    json = {} if call.method in ("POST", "PUT", "PATCH") else None
    return api.client.open(call.url, method=call.method, json=json,
                           headers=api._headers(kw.get("headers")))  # fmt: skip


@pytest.fixture(autouse=True)
def _no_rate_limit(app):
    app.config["API_RATE_LIMIT"] = "100000 per minute"


def _member_key(world: TeamWorld, role: Role, scopes, *, limited: bool = False,
                key_projects=None, email=None) -> tuple[Membership, ApiKey, str]:  # fmt: skip
    """A new member of ``world``'s team (a team of their own too) and a key of theirs."""
    user = make_user(role=Role.owner, email=email)
    membership = Membership(team_id=world.team.id, user_id=user.id, role=role.value,
                            all_projects=not limited)  # fmt: skip
    db.session.add(membership)
    db.session.flush()
    if limited:
        db.session.add(ProjectMembership(membership_id=membership.id,
                                         project_id=world.project.id, role=role.value))  # fmt: skip
    user.current_team_id = world.team.id
    db.session.commit()
    key, token = apikeys.create(user, world.team, "matrix", list(scopes), key_projects)
    return membership, key, token


def _probe(app, client, world, monkeypatch) -> dict[tuple[str, str], tuple]:
    """(endpoint, method) -> (action, (team id, project id)) the handler asks first."""
    _, _, token = _member_key(world, Role.owner, ["admin"])
    api = Api(client, token)
    recorder = Recorder(probe=True).install(monkeypatch)
    asked = {}
    for call in _keyed(_operations(app, world)):
        if call.op.action is None:
            continue
        recorder.calls.clear()
        response = _send(api, call)
        assert recorder.calls, (
            f"{call.method} {call.url} ({call.endpoint}) never asks access.authorize before "
            f"answering {response.status_code}: authorise first, then parse"
        )
        asked[(call.endpoint, call.method)] = recorder.calls[0][:2]
    monkeypatch.undo()
    return asked


# ---- a. declared, and asking the declared action first -----------------------------


def test_every_api_rule_is_an_operation_whose_handler_asks_its_action_first(
    app, client, team_a, monkeypatch
):
    asked = _probe(app, client, team_a, monkeypatch)
    declared = {
        (c.endpoint, c.method): c.op.action
        for c in _keyed(_operations(app, team_a)) if c.op.action is not None
    }  # fmt: skip
    assert {k: action for k, (action, _) in asked.items()} == declared
    assert ("api.keys_create", "POST") in declared  # the matrix saw the operations
    ids = [op.operation_id for op in spec.OPERATIONS.values()]
    assert len(ids) == len(set(ids)), "operation ids must be unique"


# ---- b. operations × scopes × roles -------------------------------------------------


@dataclass(frozen=True)
class Persona:
    name: str
    role: Role
    limited: bool = False  # a membership limited to the world's project

    def expected(self, scope: str, action: Action, team_id: int, project_id, world) -> Decision:
        """What ``access.TABLE`` and ``apikeys.SCOPES`` say, worked out without the gate."""
        if team_id != world.team.id:
            return Decision.HIDDEN
        if self.limited and project_id is not None and project_id != world.project.id:
            return Decision.HIDDEN
        if (
            self.limited
            and project_id is None
            and action not in (Action.TEAM_READ, Action.MEMBER_READ)
        ):
            return Decision.FORBIDDEN  # fmt: skip
        if self.role.rank < access.TABLE[action].role.rank:
            return Decision.FORBIDDEN
        return Decision.ALLOWED if action in apikeys.SCOPES[scope] else Decision.FORBIDDEN


PERSONAS = [
    Persona("viewer", Role.viewer),
    Persona("developer", Role.developer),
    Persona("admin", Role.admin),
    Persona("owner", Role.owner),
    Persona("limited-developer", Role.developer, limited=True),
]


@pytest.mark.parametrize("scope", SCOPE_NAMES)
@pytest.mark.parametrize("persona", PERSONAS, ids=lambda p: p.name)
def test_each_role_and_scope_gets_what_the_tables_allow_and_refusals_change_nothing(
    app, client, team_a, team_b, db_state, monkeypatch, persona, scope
):
    asked = _probe(app, client, team_a, monkeypatch)
    _, _, token = _member_key(team_a, persona.role, [scope], limited=persona.limited)
    api = Api(client, token)
    me = api.get("/api/v1/me").get_json()  # also notes the key's first use
    assert (me["team"]["role"], me["key"]["scopes"]) == (persona.role.value, [scope])
    recorder = Recorder().install(monkeypatch)
    before = db_state()
    checked = refused = 0
    for call in _keyed(_operations(app, team_a)):
        if call.op.action is None:
            continue
        action, (team_id, project_id) = asked[(call.endpoint, call.method)]
        expected = persona.expected(scope, action, team_id, project_id, team_a)
        if expected is Decision.ALLOWED and call.method != "GET":
            continue  # allowed writes are the feature tests' business
        recorder.calls.clear()
        response = _send(api, call)
        where = (persona.name, scope, call.method, call.url, response.status_code)
        checked += 1
        if expected is Decision.ALLOWED:
            assert response.status_code not in (401, 403), where
            assert all(d is Decision.ALLOWED for _, _, d in recorder.calls), where
        else:
            refused += 1
            assert response.status_code == (404 if expected is Decision.HIDDEN else 403), where
            error_of(response)
    assert checked
    beyond_reading = [a for a, _ in asked.values() if a not in apikeys.SCOPES["read"]]
    if beyond_reading and (persona.role is Role.viewer or scope == "read"):
        assert refused, "nothing refused to a reader: the matrix tested nothing"
    assert db_state() == before, (persona.name, scope)
    assert _queued_jobs(app) == []


# ---- c. other teams' and other projects' objects -------------------------------------


@pytest.mark.parametrize("scope", SCOPE_NAMES)
def test_a_key_on_another_teams_objects_gets_404_and_changes_nothing(
    app, client, team_a, team_b, db_state, monkeypatch, scope
):
    """404 for every id of team B. A handler that refuses the action on the key's own team
    before it looks the id up (the scope lacks it) may answer 403: then every id gets the
    same 403, so nothing about team B is confirmed either (checked with a missing id)."""
    asked = _probe(app, client, team_a, monkeypatch)
    _, _, token = _member_key(team_a, Role.owner, [scope])
    api = Api(client, token)
    api.get("/api/v1/me")
    owner = Persona("owner", Role.owner)
    missing = {name: 10_000_000 for name in PARAMS} | {"key": "NO_SUCH_KEY"}
    absent = {(c.endpoint, c.method): c for c in _operations(app, team_b, missing)}
    before = db_state()
    objects = [c for c in _keyed(_operations(app, team_b)) if c.args]
    assert objects, "no API operation on an object"
    for call in objects:
        response = _send(api, call)
        where = (scope, call.method, call.url, response.status_code)
        expected = {404}
        if call.op.action is not None:
            action, (_, project_id) = asked[(call.endpoint, call.method)]
            if (
                project_id is None
                and owner.expected(scope, action, team_a.team.id, None, team_a)
                is Decision.FORBIDDEN
            ):
                expected.add(403)
        assert response.status_code in expected, where
        if response.status_code == 403:
            twin = _send(api, absent[(call.endpoint, call.method)])
            assert twin.status_code == 403, (where, "a missing id answers", twin.status_code)
        body = response.get_data(as_text=True)
        for secret in ("bravo-secret-value", "bravo-plain-value", "bravo commit message"):
            assert secret not in body, (call.url, secret)
    assert db_state() == before
    assert _queued_jobs(app) == []


def _other_project(world: TeamWorld) -> dict:
    """Another project of ``world``'s team, with an app, a variable, a deployment, a
    domain, a database and a link: path values for the project parameters."""
    from app.databases import links
    from app.projects import envvars

    project = make_project(world.team, "alpha-elsewhere")
    application = make_app(project, name="elsewhere-web")
    var = envvars.set_var(application, "ELSEWHERE_SETTING", "elsewhere-value", secret=False)
    deployment = Deployment(application_id=application.id, status="failed", trigger="manual")
    domain = Domain(application_id=application.id, team_id=world.team.id,
                    host="elsewhere.example.com")  # fmt: skip
    db.session.add_all([deployment, domain])
    db.session.commit()
    database = make_database(project, name="elsewhere-db")
    link = links.link(application, database)
    db.session.commit()
    return {"project_id": project.id, "app_id": application.id,
            "application_id": application.id, "deployment_id": deployment.id,
            "domain_id": domain.id, "var_id": var.id, "key": var.key,
            "database_id": database.id, "link_id": link.id}  # fmt: skip


@pytest.mark.parametrize("scope", SCOPE_NAMES)
def test_a_project_limited_key_on_another_projects_objects_gets_404(
    app, client, team_a, db_state, scope
):
    elsewhere = _other_project(team_a)
    _, _, token = _member_key(team_a, Role.owner, [scope], key_projects=[team_a.project.id])
    api = Api(client, token)
    api.get("/api/v1/me")
    before = db_state()
    calls = [c for c in _keyed(_operations(app, team_a, elsewhere)) if c.args & PROJECT_PARAMS]
    for call in calls:
        response = _send(api, call)
        assert response.status_code == 404, (scope, call.method, call.url, response.status_code)
        assert "elsewhere-value" not in response.get_data(as_text=True)
    assert db_state() == before
    assert _queued_jobs(app) == []


# ---- d. no credential, or a dead one -------------------------------------------------


def _dead_keys(world: TeamWorld) -> dict[str, str]:
    """Tokens that must all be 401: no key at all, revoked, expired, of a demoted member
    (revoked by the demotion), of a removed member (membership gone, key row left)."""
    _, revoked, revoked_token = _member_key(world, Role.admin, ["admin"])
    apikeys.revoke(revoked.user, revoked)
    _, expired, expired_token = _member_key(world, Role.admin, ["admin"])
    expired.expires_at = utcnow() - timedelta(seconds=1)
    demoted, _, demoted_token = _member_key(world, Role.admin, ["admin"])
    members.change_role(world.user, demoted, Role.developer)
    removed, _, removed_token = _member_key(world, Role.admin, ["admin"])
    db.session.delete(removed)  # straight from the table: the key row stays, unrevoked
    db.session.commit()
    secret = world.key_token.split("_", 2)[2]
    return {
        "revoked": revoked_token, "expired": expired_token, "demoted": demoted_token,
        "removed": removed_token, "forged secret": world.key_token[:-4] + "AAAA",
        "secret of another id": f"slw_{world.key_id + 1000}_{secret}",
    }  # fmt: skip


def test_no_key_or_a_dead_key_is_401_on_every_operation_and_changes_nothing(
    app, client, team_a, db_state
):
    tokens = _dead_keys(team_a)
    calls = _keyed(_operations(app, team_a))
    before = db_state()
    for call in calls:
        response = client.open(call.url, method=call.method, json={} if call.method in
                               ("POST", "PUT", "PATCH") else None)  # fmt: skip
        assert response.status_code == 401, ("anonymous", call.method, call.url)
        assert error_of(response)["code"] == "unauthenticated"
        for name, token in tokens.items():
            response = _send(Api(client, token), call)
            assert response.status_code == 401, (name, call.method, call.url)
            assert error_of(response)["code"] == "invalid_key"
    assert db_state() == before
    assert _queued_jobs(app) == []


def test_a_key_in_the_query_string_is_400_on_every_operation(app, client, team_a, db_state):
    api = Api(client, team_a.key_token)
    api.get("/api/v1/me")
    before = db_state()
    for call in _keyed(_operations(app, team_a)):
        joiner = "&" if "?" in call.url else "?"
        for name in ("api_key", "token", "access_token"):
            url = f"{call.url}{joiner}{name}={team_a.key_token}"
            for headers in ({}, api._headers(None)):
                response = client.open(url, method=call.method, headers=headers,
                                       json={} if call.method in WRITES[:3] else None)  # fmt: skip
                assert response.status_code == 400, (call.method, url, headers)
                assert error_of(response)["code"] == "key_in_query"
    assert db_state() == before


def test_the_session_cookie_alone_is_401_on_every_operation(app, client, team_a, db_state):
    assert Auth(client).login(team_a.user).status_code == 303
    token = csrf_token(client, "/")
    before = db_state()
    for call in _keyed(_operations(app, team_a)):
        headers = {"X-CSRFToken": token, "HX-Request": "true"}
        response = client.open(call.url, method=call.method, headers=headers,
                               json={} if call.method in WRITES[:3] else None)  # fmt: skip
        assert response.status_code == 401, (call.method, call.url, response.status_code)
    assert db_state() == before


# ---- SECURITY.md case 10 ------------------------------------------------------------


def _all_text(state: dict) -> str:
    return repr(state)


def test_security_case_10_keys_are_hashed_shown_once_scoped_expiring_revocable_not_in_urls(
    app, client, team_a, db_state
):
    """Case 10, end to end: a key made through the API is stored as a hash only (its
    secret appears nowhere in the database or Redis), shown once (the 201 answer; not in
    the list, not on the page, not on a retry), scoped (read / deploy / admin bound what
    the gate allows), expiring, revocable, and refused in the query string."""
    from app.extensions import redis

    owner_api = Api(client, team_a.key_token)
    made = owner_api.post("/api/v1/keys", {"name": "case-10", "scopes": ["read"]},
                          headers={"Idempotency-Key": "case-10"})  # fmt: skip
    assert made.status_code == 201, made.get_json()
    token = made.get_json()["token"]
    key_id, secret = apikeys.parse(token)
    # stored hashed: the row has SHA-256(secret); the secret is nowhere at rest
    row = db.session.get(ApiKey, key_id)
    assert row.secret_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in _all_text(db_state())
    assert all(secret.encode() not in (redis.client.get(k) or b"")
               for k in redis.client.keys("*") if redis.client.type(k) == b"string")  # fmt: skip
    # shown once: not listed, not on the page, not replayed to a retry
    assert secret not in owner_api.get("/api/v1/keys").get_data(as_text=True)
    retry = owner_api.post("/api/v1/keys", {"name": "case-10", "scopes": ["read"]},
                           headers={"Idempotency-Key": "case-10"})  # fmt: skip
    assert retry.status_code == 409 and secret not in retry.get_data(as_text=True)
    browser = app.test_client()
    assert Auth(browser).login(team_a.user).status_code == 303
    assert secret not in browser.get("/account/api-keys/").get_data(as_text=True)
    # scoped: each scope bounds what the gate lets the key do, whatever the owner's role
    for scope, allowed in (
        ("read", {Action.APP_READ}),
        ("deploy", {Action.APP_READ, Action.APP_DEPLOY}),
        ("admin", {Action.APP_READ, Action.APP_DEPLOY, Action.APP_DELETE,
                   Action.MEMBER_MANAGE}),
    ):  # fmt: skip
        key, _ = apikeys.create(team_a.user, team_a.team, scope, [scope])
        with app.test_request_context("/api/v1/me"):
            g._login_user = team_a.user
            apikeys.use(key)
            for action in (Action.APP_READ, Action.APP_DEPLOY, Action.APP_DELETE,
                           Action.MEMBER_MANAGE):  # fmt: skip
                target = team_a.team if action is Action.MEMBER_MANAGE else team_a.application
                assert access.can(team_a.user, action, target) is (action in allowed), (
                    scope, action)  # fmt: skip
    read_api = Api(client, token)
    assert read_api.get("/api/v1/me").status_code == 200
    escalate = read_api.post("/api/v1/keys", {"name": "more", "scopes": ["admin"]})
    assert escalate.status_code == 403 and error_of(escalate)["code"] == "key_exceeded"
    # refused in the query string, even valid and with the header too
    assert client.get(f"/api/v1/me?api_key={token}").status_code == 400
    assert read_api.get(f"/api/v1/keys?token={token}").status_code == 400
    # expiring
    expiring, expiring_token = apikeys.create(team_a.user, team_a.team, "soon", ["read"], None,
                                              utcnow() + timedelta(minutes=5))  # fmt: skip
    assert Api(client, expiring_token).get("/api/v1/me").status_code == 200
    expiring.expires_at = utcnow() - timedelta(seconds=1)
    db.session.commit()
    assert Api(client, expiring_token).get("/api/v1/me").status_code == 401
    # revocable
    assert owner_api.delete(f"/api/v1/keys/{key_id}").status_code == 204
    assert read_api.get("/api/v1/me").status_code == 401
