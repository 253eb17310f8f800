"""/api/v1 deployments through the real pipeline: git server, Docker, Traefik
(tests/deploys/conftest.py). The test runs the worker's job itself, as those tests do,
while the API request waits or streams in another thread."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import func, select

from app import jobs
from app.extensions import db
from app.models import Application, Deployment, DeploymentLogLine
from tests import lab
from tests.api.conftest import Api, make_key
from tests.api.sse import open_stream, parse
from tests.deploys import conftest as deploy_fixtures
from tests.deploys.conftest import _through_traefik, _web_app
from tests.factories import make_user
from tests.livekit import serving

pytestmark = pytest.mark.once
# The real pipeline's fixtures (git server, Docker, Traefik), under their own names.
infra, app, repo = deploy_fixtures.infra, deploy_fixtures.app, deploy_fixtures.repo
BASE = "/api/v1"


def _api_of(client, app_row) -> Api:
    user = make_user(team=app_row.project.team)
    _, token = make_key(user, app_row.project.team)
    return Api(client, token)


def _newest_id(app_id: int, after: int | None, answer: dict, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and "response" not in answer:
        newest = db.session.scalar(
            select(func.max(Deployment.id)).where(Deployment.application_id == app_id)
        )
        db.session.remove()  # no transaction left open while the request writes
        if newest is not None and newest != after:
            return newest
        time.sleep(0.05)
    found = answer.get("response")
    raise AssertionError(f"the API made no deployment: {found and found.get_json()}")


def _deploy_and_wait(api: Api, app_row, after: int | None = None):
    """POST ?wait= in a thread; run the job here (the worker); the answer after it."""
    answer: dict = {}

    def post() -> None:
        answer["response"] = api.post(f"{BASE}/apps/{app_row.id}/deployments?wait=120", json={})

    thread = threading.Thread(target=post)
    app_id = app_row.id
    db.session.remove()
    thread.start()
    dep_id = _newest_id(app_id, after, answer)
    jobs.run_deployment(dep_id)
    thread.join(30)
    db.session.remove()
    return dep_id, answer["response"]


def test_deploy_with_wait_answers_running_then_failed_for_a_broken_build(
    app,
    infra,
    client,
    repo,
):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    api = _api_of(client, app_row)
    app_id = app_row.id
    dep_id, response = _deploy_and_wait(api, app_row)
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["id"] == dep_id and body["status"] == "running" and body["final"] is True
    assert body["trigger"] == "api" and body["commit_sha"] and body["image"]
    assert response.headers["Location"] == f"/api/v1/deployments/{dep_id}"
    assert "hello from v1" in _through_traefik(infra, db.session.get(Application, app_id)).text

    repo.commit(lab.web_files("v2", extra_run="/bin/busybox false"), "broken build")
    broken_id, response = _deploy_and_wait(api, db.session.get(Application, app_id), dep_id)
    body = response.get_json()
    assert response.status_code == 200 and body["id"] == broken_id
    assert body["status"] == "failed" and body["final"] and body["error"]
    assert api.get(f"{BASE}/deployments/{dep_id}").get_json()["status"] == "running"
    # cancelling either (final) is a conflict
    assert api.post(f"{BASE}/deployments/{broken_id}/cancel").status_code == 409


def test_rollback_deploys_the_earlier_image_again(app, infra, client, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    app_id = app_row.id
    api = _api_of(client, app_row)
    v1, _ = _deploy_and_wait(api, app_row)
    repo.commit(lab.web_files("v2"), "v2")
    v2, response = _deploy_and_wait(api, db.session.get(Application, app_id), v1)
    assert response.get_json()["status"] == "running"
    response = api.post(f"{BASE}/deployments/{v1}/rollback", json={})
    assert response.status_code == 202, response.get_json()
    new = response.get_json()
    assert new["id"] not in (v1, v2) and new["rollback_of_id"] == v1
    assert response.headers["Location"] == f"/api/v1/deployments/{new['id']}"
    jobs.run_deployment(new["id"])
    db.session.remove()
    done = api.get(f"{BASE}/deployments/{new['id']}?wait=30").get_json()
    assert done["status"] == "running"
    assert "hello from v1" in _through_traefik(infra, db.session.get(Application, app_id)).text


def test_a_streamed_build_log_is_the_stored_one_and_resumes_exactly(
    app,
    client,
    repo,
):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    api = _api_of(client, app_row)
    created = api.post(f"{BASE}/apps/{app_row.id}/deployments", json={}).get_json()
    dep_id = created["id"]
    db.session.remove()
    with serving(app) as server:
        stream = open_stream(f"{server.url}{BASE}/deployments/{dep_id}/logs?follow=1", api.token,
                             timeout=120)  # fmt: skip
        reader = threading.Thread(target=stream.until, args=(lambda e: e.name == "end",))
        reader.start()
        jobs.run_deployment(dep_id)
        reader.join(60)
        stream.close()
    db.session.remove()
    stored = db.session.execute(
        select(DeploymentLogLine.seq, DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == dep_id)
        .order_by(DeploymentLogLine.seq)
    ).all()
    assert len(stored) > 10
    streamed = [(line["n"], line["text"]) for line in stream.lines()]
    assert streamed == [tuple(row) for row in stored]  # no line lost, none twice, in order
    assert stream.events[-1].name == "end"
    assert stream.events[-1].data == {"status": "running", "error": None}
    middle = stored[len(stored) // 2][0]
    resumed = api.get(f"{BASE}/deployments/{dep_id}/logs",
                      headers={"Last-Event-ID": str(middle)})  # fmt: skip
    events = parse(resumed.get_data(as_text=True))
    assert [e.data["n"] for e in events if e.name == "line"] == [
        row[0] for row in stored if row[0] > middle
    ]
    assert events[-1].name == "end"
    as_json = api.get(f"{BASE}/deployments/{dep_id}/log").get_json()
    assert [(line["n"], line["text"]) for line in as_json["lines"]] == streamed
