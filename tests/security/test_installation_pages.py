"""Issue 17, item 11: the installation-wide pages are for the installation's owner and the
admins the owner names, never for a team's admin or owner.

``/server``, ``/server/metrics.json`` and ``/workers`` (with its retry) show every team's
jobs, errors and host figures. Team A's owner ran setup (the first account), so they own
the installation; team B's admin and owner are only a team's. Failed jobs are real RQ jobs
in the test Redis's failed registry.
"""

from __future__ import annotations

import pytest
from rq.registry import FailedJobRegistry
from rq.results import Result
from sqlalchemy import select

from app.extensions import db, queue
from app.models import AuditEvent, Role, User
from tests.conftest import Auth, csrf_token
from tests.factories import make_user

JSON = {"Accept": "application/json"}
PAGES = ("/server", "/server/metrics.json", "/workers")


def _fail_a_job(job_id: str = "other-teams-job"):
    """A failed job of some team's deploy, as a worker leaves it in the registry."""
    job = queue("default").enqueue("json.loads", "x", job_id=job_id)
    queue("default").remove(job)
    job.set_status("failed")
    error = "Traceback...\nValueError: bravo-team-private-error"
    FailedJobRegistry(queue=queue("default")).add(job, ttl=600, exc_string=error)
    Result.create_failure(job, 600, exc_string=error)
    return job


def _failed_ids() -> list[str]:
    return FailedJobRegistry(queue=queue("default")).get_job_ids()


def _login(new_client, user):
    client = new_client()
    assert Auth(client).login(user).status_code == 303
    return client


def _nav(client) -> str:
    return client.get("/").get_data(as_text=True)


def _assert_shut_out(client, db_state):
    """Every installation page and action is a 403 with no data, and nothing changes."""
    before = db_state()
    for url in PAGES:
        response = client.get(url)
        assert response.status_code == 403, (url, response.status_code)
        assert "bravo-team-private-error" not in response.get_data(as_text=True), url
    json_answer = client.get("/server/metrics.json", headers=JSON)
    assert json_answer.status_code == 403
    assert json_answer.json["error"]["code"] == "forbidden"
    token = csrf_token(client, "/")
    retry = client.post("/workers/failed/other-teams-job/retry", data={"csrf_token": token})
    assert retry.status_code == 403
    assert "other-teams-job" in _failed_ids() and queue("default").count == 0
    nav = _nav(client)
    assert 'href="/server"' not in nav and 'href="/workers"' not in nav
    assert db_state() == before


def _assert_let_in(client):
    for url in PAGES:
        assert client.get(url).status_code == 200, url
    assert "bravo-team-private-error" in client.get("/workers").get_data(as_text=True)
    nav = _nav(client)
    assert 'href="/server"' in nav and 'href="/workers"' in nav


def _name(owner_client, user, change: str):
    token = csrf_token(owner_client, "/server/admins")
    return owner_client.post(
        "/server/admins", data={"csrf_token": token, "user_id": str(user.id), "change": change}
    )


@pytest.mark.parametrize("role", [Role.admin, Role.owner])
def test_a_teams_admin_or_owner_gets_403_on_installation_pages_and_no_nav_link(
    app, new_client, team_a, team_b, db_state, role
):
    _fail_a_job()
    user = team_b.user if role == Role.owner else make_user(team_b.team, Role.admin)
    client = _login(new_client, user)
    _assert_shut_out(client, db_state)
    # Nor may they name anyone, themselves included.
    before = db_state()
    assert client.get("/server/admins").status_code == 403
    assert _name(client, user, "name").status_code == 403
    assert db_state() == before


def test_the_installation_owner_opens_every_installation_page(app, new_client, team_a, team_b):
    _fail_a_job()
    client = _login(new_client, team_a.user)
    _assert_let_in(client)
    page = client.get("/server/admins")
    assert page.status_code == 200
    assert team_b.user.email in page.get_data(as_text=True)
    token = csrf_token(client, "/workers")
    retry = client.post("/workers/failed/other-teams-job/retry", data={"csrf_token": token})
    assert retry.status_code == 303 and "other-teams-job" not in _failed_ids()


def test_a_named_admin_gets_in_and_is_out_again_at_once_when_the_naming_is_taken_back(
    app, new_client, team_a, team_b, db_state
):
    _fail_a_job()
    owner = _login(new_client, team_a.user)
    admin_b = make_user(team_b.team, Role.admin)
    # Logged in before the naming: the same open session gains and loses access.
    client = _login(new_client, admin_b)
    _assert_shut_out(client, db_state)

    assert _name(owner, admin_b, "name").status_code == 303
    _assert_let_in(client)
    assert client.get("/server/admins").status_code == 403  # naming stays with the owner
    named = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "installation.admin_named")
    )
    assert (named.user_id, named.target_id, named.team_id) == (team_a.user.id, admin_b.id, None)

    assert _name(owner, admin_b, "remove").status_code == 303
    _assert_shut_out(client, db_state)
    removed = db.session.scalar(
        select(AuditEvent).where(AuditEvent.action == "installation.admin_removed")
    )
    assert (removed.user_id, removed.target_id) == (team_a.user.id, admin_b.id)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"user_id": "999999", "change": "name"}, "There is no such user."),
        ({"user_id": "not-a-number", "change": "name"}, "Not a valid integer value."),
        ({"change": "name"}, "Choose a user."),
        ({"user_id": "OTHER", "change": "promote"}, "Not a valid choice."),
        ({"user_id": "OWNER", "change": "remove"}, "always an installation admin"),
    ],
    ids=["unknown-user", "not-an-id", "no-user", "bad-change", "owner-removes-self"],
)
def test_a_bad_naming_is_a_422_with_its_message_and_changes_nothing(
    app, new_client, team_a, team_b, db_state, fields, message
):
    owner = _login(new_client, team_a.user)
    ids = {"OWNER": str(team_a.user.id), "OTHER": str(team_b.user.id)}
    data = {key: ids.get(value, value) for key, value in fields.items()}
    token = csrf_token(owner, "/server/admins")
    before = db_state()
    response = owner.post("/server/admins", data={"csrf_token": token, **data})
    assert response.status_code == 422
    assert message in response.get_data(as_text=True)
    assert db_state() == before
    db.session.expire_all()
    assert db.session.get(User, team_b.user.id).installation_admin is False
    assert owner.get("/server/admins").status_code == 200  # the owner is still the owner
