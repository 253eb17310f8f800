"""SECURITY.md cases 7 and 8: another team's objects are invisible and untouchable,
and form fields naming an owner are checked against the user's team.

A member of team A (an owner there, the strongest role) aims every route at
team B's ids. The routes come from ``app.url_map``; the payloads are valid, so
a missing team check would show up as a changed database.
"""

from __future__ import annotations

import pytest
import redis as redis_lib
from sqlalchemy import select

from app.extensions import db
from app.models import Application, Environment, Project, Role
from tests.conftest import csrf_token
from tests.factories import make_project

VALID_FORM = {
    "name": "taken-over",
    "description": "written by team A",
    "source_type": "git",
    "git_url": "https://git.example.com/a/b.git",
    "git_branch": "main",
    "build_context": ".",
    "dockerfile_path": "Dockerfile",
    "container_port": "8000",
    "replicas": "1",
    "health_check_path": "/",
    "env_text": "INJECTED=1",
    "key": "INJECTED",
    "value": "1",
}


def app_form(token: str, environment_id: int, **changes) -> dict:
    return {**VALID_FORM, "csrf_token": token, "environment_id": str(environment_id), **changes}


# Not a team's object: the retry names an RQ job, and the whole endpoint is for the
# installation's owner and named admins (403 for anyone else, before any lookup;
# tests/security/test_installation_pages.py).
# Single sign-on's providers are the installation's too (its owner configures them).
INSTALLATION_WIDE = {
    "workers.retry",
    "sso.edit_get",
    "sso.edit_post",
    "sso.delete_get",
    "sso.delete_post",
}
# A member's own objects, not the team's: the world's API key is its owner's, so another
# member of the team gets 404 for it too (tests/accounts/test_api_keys_page.py).
USERS_OWN = {"keys.revoke_get", "keys.revoke_post"}


def _victim_strings(world) -> list[str]:
    return [
        world.project.name,
        world.application.name,
        world.application.description,
        "bravo-plain-value",
        "bravo-secret-value",
        world.secret_var.secret_value,
        world.team.name,
        world.deployment.commit_message,
        "bravo-backup-bytes",
        "bravo-s3-secret",
        "bravo-db-password",
        "bravo-hook-token",
        "bravo-bucket",
        "bravo drill log",
        "bravo-policy",
        "bravo-shop.example.com",
        world.database.name,
        "bravo-database-password",
    ]


def _queued_jobs(flask_app) -> list[bytes]:
    return redis_lib.Redis.from_url(flask_app.config["REDIS_URL"]).keys("rq:*")


@pytest.mark.parametrize(
    "headers",
    [{}, {"HX-Request": "true"}, {"Accept": "application/json"}],
    ids=["html", "htmx", "json"],
)
def test_every_route_answers_404_for_another_teams_objects_and_changes_nothing(
    app, client, member, team_a, team_b, db_state, routes, headers
):
    member(Role.owner)
    token = csrf_token(client, "/")
    env_id = team_b.project.environments[0].id
    before = db_state()
    # /api/v1 takes keys, never the session: its isolation matrix is
    # tests/api/test_api_security.py (a key of team A on team B's ids).
    requests = [r for r in routes(app, team_b, objects_only=True) if not r[0].startswith("api.")]
    assert len(requests) >= 10
    for endpoint, method, url in requests:
        data = app_form(token, env_id) if method == "POST" else None
        response = client.open(url, method=method, data=data, headers=headers)
        expected = 403 if endpoint in INSTALLATION_WIDE else 404
        assert response.status_code == expected, (method, url, response.status_code)
        body = response.get_data(as_text=True)
        for secret in _victim_strings(team_b):
            assert secret not in body, (method, url, secret)
    assert db_state() == before
    assert _queued_jobs(app) == []


def test_the_same_routes_work_on_the_members_own_objects(
    app, client, member, team_a, team_b, routes
):
    """The control for the test above: the ids are right, only the team is wrong."""
    member(Role.owner)
    for endpoint, method, url in routes(app, team_a, objects_only=True):
        if endpoint in USERS_OWN or endpoint.startswith("api."):
            continue
        if method == "GET" and endpoint not in INSTALLATION_WIDE:
            assert client.get(url).status_code == 200, url


def _main(response) -> str:
    """The page's own content (the layout around it has a Docker-status banner)."""
    body = response.get_data(as_text=True)
    return body[body.index("<main>") : body.index("</main>")]


def test_a_foreign_id_and_a_missing_id_get_the_same_404(app, client, member, team_a, team_b):
    """The 404 does not confirm that another team's object exists."""
    member(Role.owner)
    missing = 10_000_000
    for template in ("/projects/{}", "/apps/{}", "/apps/{}/edit", "/projects/{}/edit"):
        ids = (
            (team_b.project.id, missing)
            if "projects" in template
            else (
                team_b.application.id,
                missing,
            )
        )
        foreign, absent = (client.get(template.format(i)) for i in ids)
        assert foreign.status_code == absent.status_code == 404
        assert _main(foreign) == _main(absent)


def test_deleting_another_apps_env_var_through_ones_own_app_is_404(
    app, client, member, team_a, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    for var in (team_b.plain_var, team_b.secret_var):
        url = f"/apps/{team_a.application.id}/env/{var.id}/delete"
        for headers in ({}, {"HX-Request": "true"}):
            response = client.post(url, data={"csrf_token": token}, headers=headers)
            assert response.status_code == 404
            assert "bravo" not in response.get_data(as_text=True)
    assert db_state() == before


def test_deleting_ones_own_env_var_through_another_teams_app_is_404(
    app, client, member, team_a, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    url = f"/apps/{team_b.application.id}/env/{team_a.plain_var.id}/delete"
    assert client.post(url, data={"csrf_token": token}).status_code == 404
    assert db_state() == before


def test_the_dashboard_lists_only_the_members_teams(app, client, member, team_a, team_b):
    member(Role.viewer)
    body = client.get("/").get_data(as_text=True)
    assert team_a.project.name in body and team_a.application.name in body
    for secret in _victim_strings(team_b):
        assert secret not in body


# ---- case 8: fields naming an owner ---------------------------------------------


def _app_count() -> int:
    return len(db.session.scalars(select(Application.id)).all())


def test_new_app_with_another_teams_environment_is_refused(
    app, client, member, team_a, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(token, team_b.project.environments[0].id),
    )
    assert response.status_code == 422
    assert "bravo" not in response.get_data(as_text=True)
    assert db_state() == before


def test_new_app_with_another_projects_environment_of_the_same_team_is_refused(
    app, client, member, team_a, db_state
):
    other = make_project(team_a.team, name="alpha-other")
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(token, other.environments[0].id),
    )
    assert response.status_code == 422
    assert db_state() == before


def test_editing_an_app_onto_another_teams_environment_is_refused(
    app, client, member, team_a, team_b, db_state
):
    member(Role.owner)
    token = csrf_token(client, "/")
    before = db_state()
    response = client.post(
        f"/apps/{team_a.application.id}/edit",
        data=app_form(token, team_b.project.environments[0].id, name=team_a.application.name),
    )
    assert response.status_code == 422
    assert db_state() == before


def test_the_app_form_accepts_the_projects_own_environment(app, client, member, team_a):
    """The control for the tests above."""
    member(Role.owner)
    token = csrf_token(client, "/")
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(token, team_a.project.environments[0].id),
    )
    assert response.status_code == 303
    created = db.session.scalar(select(Application).where(Application.name == "taken-over"))
    assert created.environment_id == team_a.project.environments[0].id


def test_owner_ids_smuggled_into_the_app_form_are_ignored(app, client, member, team_a, team_b):
    member(Role.owner)
    token = csrf_token(client, "/")
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data=app_form(
            token,
            team_a.project.environments[0].id,
            project_id=str(team_b.project.id),
            team_id=str(team_b.team.id),
            id=str(team_b.application.id),
        ),
    )
    assert response.status_code == 303
    db.session.expire_all()
    created = db.session.scalar(select(Application).where(Application.name == "taken-over"))
    assert created.project_id == team_a.project.id
    assert created.id != team_b.application.id
    victim = db.session.get(Application, team_b.application.id)
    assert victim.name == "bravo-web" and victim.project_id == team_b.project.id
    assert [e.key for e in victim.env_vars] == ["API_TOKEN", "PLAIN_SETTING"]


def test_a_team_id_smuggled_into_the_project_form_is_ignored(app, client, member, team_a, team_b):
    member(Role.owner)
    token = csrf_token(client, "/")
    response = client.post(
        "/projects/new",
        data={"csrf_token": token, "name": "smuggled", "team_id": str(team_b.team.id)},
    )
    assert response.status_code == 303
    created = db.session.scalar(select(Project).where(Project.name == "smuggled"))
    assert created.team_id == team_a.team.id
    environments = db.session.scalars(
        select(Environment).where(Environment.project_id == created.id)
    ).all()
    assert [e.name for e in environments] == ["production"]


def test_the_two_factor_pages_act_on_the_logged_in_user_only(
    app, client, member, team_a, team_b, db_state
):
    """No user id in the routes, and one smuggled into the forms is ignored: team B's
    owner keeps two-factor login and their recovery codes."""
    import pyotp

    from app.accounts import twofactor

    victim = team_b.user
    secret = twofactor.pending_secret(victim, create=True)
    twofactor.confirm_enrolment(victim, pyotp.TOTP(secret).now())
    member(Role.owner)
    token = csrf_token(client, "/")
    before = {k: v for k, v in db_state().items() if k in ("users", "recovery_codes")}
    smuggled = {"csrf_token": token, "user_id": str(victim.id), "id": str(victim.id),
                "code": "000000"}  # fmt: skip
    for url in ("/account/two-factor/disable", "/account/two-factor/recovery-codes",
                "/account/two-factor"):  # fmt: skip
        client.post(url, data=smuggled)
    after = {k: v for k, v in db_state().items() if k in ("users", "recovery_codes")}
    victim_rows = lambda state: [r for r in state["users"] if r[0] == victim.id]  # noqa: E731
    assert victim_rows(after) == victim_rows(before) and victim_rows(before)
    assert len([r for r in after["recovery_codes"] if r[1] == victim.id]) == 10
    assert [r for r in after["recovery_codes"] if r[1] == victim.id] == [
        r for r in before["recovery_codes"] if r[1] == victim.id
    ]
