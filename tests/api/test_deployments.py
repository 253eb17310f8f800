"""/api/v1 deployments: list, deploy, read (and ?wait=), cancel, roll back, the stored log.

These run without a worker: a deploy queues its row (the pipeline's own tests, and
tests/api/test_deploy_pipeline.py, run it). Where a test needs a deployment in a given
state it writes the row, as the pipeline would, and publishes the change.
"""

from __future__ import annotations

import threading
import time

from sqlalchemy import func, select

from app.deploys import control, livestatus
from app.deploys.buildlog import BuildLog
from app.extensions import db, redis
from app.models import Deployment, Role
from app.models.base import utcnow
from tests.api.conftest import error_of
from tests.factories import make_app, make_project, make_team, team_of

BASE = "/api/v1"


def _app_of(user, **fields):
    return make_app(make_project(team_of(user)), **fields)


def _row(app_row, status="running", **fields) -> Deployment:
    dep = Deployment(application_id=app_row.id, status=status, trigger="manual", **fields)
    if status not in ("queued", "building", "deploying"):
        dep.finished_at = utcnow()
    db.session.add(dep)
    db.session.commit()
    return dep


def _count(app_id: int) -> int:
    db.session.expire_all()
    return db.session.scalar(
        select(func.count(Deployment.id)).where(Deployment.application_id == app_id)
    )


def _finish_later(dep_id: int, app, status="failed", after=0.4) -> threading.Thread:
    """Another process (the worker) ends the deployment while a request waits."""

    def end() -> None:
        time.sleep(after)
        with app.app_context():
            dep = db.session.get(Deployment, dep_id)
            dep.mark_failed("the build failed") if status == "failed" else None
            if status != "failed":
                dep.status, dep.finished_at = status, utcnow()
            db.session.commit()
            livestatus.publish(dep)
            db.session.remove()

    thread = threading.Thread(target=end)
    thread.start()
    return thread


# ---- list -----------------------------------------------------------------------


def test_list_is_newest_first_paginated_and_filtered(api, owner):
    app_row = _app_of(owner)
    ids = [_row(app_row, status).id for status in ("replaced", "failed", "running")]
    first = api.get(f"{BASE}/apps/{app_row.id}/deployments?limit=2")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert [d["id"] for d in body["data"]] == [ids[2], ids[1]] and body["next_cursor"]
    item = body["data"][0]
    assert item["url"] == f"/api/v1/deployments/{ids[2]}" and item["final"] is True
    assert item["app_id"] == app_row.id and item["trigger"] == "manual"
    rest = api.get(f"{BASE}/apps/{app_row.id}/deployments?limit=2&cursor={body['next_cursor']}")
    assert [d["id"] for d in rest.get_json()["data"]] == [ids[0]]
    assert rest.get_json()["next_cursor"] is None
    failed = api.get(f"{BASE}/apps/{app_row.id}/deployments?status=failed").get_json()
    assert [d["id"] for d in failed["data"]] == [ids[1]]
    bad = api.get(f"{BASE}/apps/{app_row.id}/deployments?status=bogus")
    assert bad.status_code == 422 and "status" in error_of(bad)["details"]["fields"]


def test_another_team_s_deployments_are_404(api):
    stranger = make_app(make_project(make_team()))
    dep = _row(stranger)
    for path in (f"/apps/{stranger.id}/deployments", f"/deployments/{dep.id}",
                 f"/deployments/{dep.id}/log", f"/deployments/{dep.id}/logs"):  # fmt: skip
        assert api.get(BASE + path).status_code == 404, path
    for path in (f"/apps/{stranger.id}/deployments", f"/deployments/{dep.id}/cancel",
                 f"/deployments/{dep.id}/rollback"):  # fmt: skip
        assert api.post(BASE + path, json={}).status_code == 404, path
    assert _count(stranger.id) == 1


# ---- create ---------------------------------------------------------------------


def test_deploy_queues_a_deployment_with_trigger_api_and_its_location(api, owner):
    app_row = _app_of(owner)
    response = api.post(f"{BASE}/apps/{app_row.id}/deployments", json={})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/deployments/{body['id']}"
    assert body["status"] == "queued" and body["trigger"] == "api" and body["final"] is False
    dep = db.session.get(Deployment, body["id"])
    assert dep.trigger == "api" and dep.triggered_by_id == owner.id and dep.git_ref is None
    read = api.get(response.headers["Location"])
    assert read.status_code == 200 and read.get_json() == body and read.headers["ETag"]


def test_deploy_takes_a_ref_or_no_body_at_all(api, owner):
    app_row = _app_of(owner)
    response = api.post(f"{BASE}/apps/{app_row.id}/deployments", json={"ref": "release/2"})
    assert response.status_code == 202 and response.get_json()["git_ref"] == "release/2"
    bare = api.client.post(f"{BASE}/apps/{app_row.id}/deployments",
                           headers={"Authorization": f"Bearer {api.token}"})  # fmt: skip
    assert bare.status_code == 202, bare.get_json()


def test_deploy_refuses_bad_input_and_changes_nothing(api, owner):
    app_row = _app_of(owner)
    image_app = _app_of(owner, source_type="image", image="nginx:1", git_url=None)
    for app_id, payload, field in (
        (app_row.id, {"ref": "-rf"}, "ref"), (app_row.id, {"ref": "a..b"}, "ref"),
        (app_row.id, {"ref": "x" * 300}, "ref"), (app_row.id, {"branch": "main"}, "branch"),
        (image_app.id, {"ref": "main"}, "ref"),
    ):  # fmt: skip
        response = api.post(f"{BASE}/apps/{app_id}/deployments", json=payload)
        assert response.status_code == 422, (payload, response.get_json())
        assert field in error_of(response)["details"]["fields"], payload
    bad_wait = api.post(f"{BASE}/apps/{app_row.id}/deployments?wait=-1", json={})
    assert bad_wait.status_code == 422 and "wait" in error_of(bad_wait)["details"]["fields"]
    assert _count(app_row.id) == 0 and _count(image_app.id) == 0


def test_a_read_scope_or_a_viewer_cannot_deploy_cancel_or_roll_back(api_for, owner):
    reader = api_for(scopes=["read"])
    viewer = api_for(role=Role.viewer, team=reader.team)
    app_row = make_app(make_project(reader.team))
    dep = _row(app_row, "running", image_tag="img:1")
    queued = _row(app_row, "queued")
    for client in (reader, viewer):
        assert client.get(f"{BASE}/apps/{app_row.id}/deployments").status_code == 200
        for path in (f"/apps/{app_row.id}/deployments", f"/deployments/{dep.id}/rollback",
                     f"/deployments/{queued.id}/cancel"):  # fmt: skip
            response = client.post(BASE + path, json={})
            assert response.status_code == 403, (path, response.get_json())
    assert _count(app_row.id) == 2
    assert db.session.get(Deployment, queued.id).status == "queued"
    deployer = api_for(scopes=["deploy"], team=reader.team)
    assert deployer.post(f"{BASE}/apps/{app_row.id}/deployments", json={}).status_code == 202


# ---- Idempotency-Key --------------------------------------------------------------


def test_the_same_deploy_sent_twice_with_a_key_deploys_once(api, owner):
    app_row = _app_of(owner)
    path, key = f"{BASE}/apps/{app_row.id}/deployments", {"Idempotency-Key": "deploy-42"}
    first = api.post(path, json={}, headers=key)
    again = api.post(path, json={}, headers=key)
    assert first.status_code == again.status_code == 202
    assert first.get_json()["id"] == again.get_json()["id"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["Location"] == first.headers["Location"]
    assert _count(app_row.id) == 1
    other = api.post(path, json={"ref": "dev"}, headers=key)
    assert other.status_code == 422 and error_of(other)["code"] == "idempotency_key_reused"
    assert _count(app_row.id) == 1


def test_concurrent_deploys_with_one_key_deploy_once(app, api, owner):
    app_row = _app_of(owner)
    path = f"{BASE}/apps/{app_row.id}/deployments"
    db.session.remove()
    answers: list = [None] * 6
    start = threading.Barrier(len(answers))

    def send(i: int) -> None:
        start.wait()
        answers[i] = api.post(path, json={}, headers={"Idempotency-Key": "ci-build-7"})

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(answers))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert [a.status_code for a in answers] == [202] * len(answers)
    assert len({a.get_json()["id"] for a in answers}) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 5
    assert _count(app_row.id) == 1


# ---- ?wait= ---------------------------------------------------------------------


def test_wait_answers_as_soon_as_the_deployment_is_final(app, api, owner):
    app_row = _app_of(owner)
    created = api.post(f"{BASE}/apps/{app_row.id}/deployments", json={}).get_json()
    db.session.remove()
    ender = _finish_later(created["id"], app, "failed", after=0.5)
    began = time.monotonic()
    response = api.get(f"{BASE}/deployments/{created['id']}?wait=30")
    took = time.monotonic() - began
    ender.join()
    assert response.status_code == 200
    assert response.get_json()["status"] == "failed" and response.get_json()["final"] is True
    assert response.get_json()["error"] == "the build failed"
    assert 0.4 < took < 3, took  # woken by the status event, not by the end of the wait


def test_deploy_with_wait_ends_with_200_when_final_and_202_when_the_wait_ends(app, api, owner):
    app_row = _app_of(owner)
    path = f"{BASE}/apps/{app_row.id}/deployments"
    began = time.monotonic()
    still = api.post(path + "?wait=1", json={})
    assert still.status_code == 202 and still.get_json()["status"] == "queued"
    assert 0.9 < time.monotonic() - began < 4
    db.session.remove()
    waiter: dict = {}

    def deploy() -> None:
        waiter["answer"] = api.post(path + "?wait=30", json={})

    thread = threading.Thread(target=deploy)
    thread.start()
    deadline = time.monotonic() + 10
    newest = None
    while time.monotonic() < deadline:
        db.session.expire_all()
        newest = db.session.scalar(select(func.max(Deployment.id)).where(
            Deployment.application_id == app_row.id))  # fmt: skip
        if newest != still.get_json()["id"]:
            break
        time.sleep(0.05)
    db.session.remove()
    _finish_later(newest, app, "running", after=0.3).join()
    thread.join(10)
    answer = waiter["answer"]
    assert answer.status_code == 200 and answer.get_json()["status"] == "running"
    assert answer.headers["Location"] == f"/api/v1/deployments/{newest}"


def test_wait_is_capped_and_holds_no_database_connection(app, api, owner, monkeypatch):
    app.config["API_WAIT_MAX_SECONDS"] = 1
    app_row = _app_of(owner)
    dep_id = _row(app_row, "building").id
    db.session.remove()
    seen: list[int] = []
    real_read = livestatus.read

    def read(*args, **kwargs):
        seen.append(db.engine.pool.checkedout())
        return real_read(*args, **kwargs)

    monkeypatch.setattr(livestatus, "read", read)
    began = time.monotonic()
    response = api.get(f"{BASE}/deployments/{dep_id}?wait=600")
    assert response.status_code == 200 and response.get_json()["status"] == "building"
    assert time.monotonic() - began < 3
    assert seen and set(seen) == {0}, seen


# ---- cancel -------------------------------------------------------------------


def test_cancel_a_queued_deployment_and_a_building_one(api, owner):
    app_row = _app_of(owner)
    queued = api.post(f"{BASE}/apps/{app_row.id}/deployments", json={}).get_json()
    response = api.post(f"{BASE}/deployments/{queued['id']}/cancel")
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["status"] == "cancelled" and response.get_json()["final"]
    building = _row(app_row, "building")
    response = api.post(f"{BASE}/deployments/{building.id}/cancel", json={})
    assert response.status_code == 202 and response.get_json()["status"] == "building"
    assert redis.client.exists(control.CANCEL_KEY.format(building.id))


def test_cancel_of_a_final_or_serving_deployment_is_409_and_changes_nothing(api, owner):
    app_row = _app_of(owner)
    for status in ("running", "failed", "cancelled", "deploying"):
        dep = _row(app_row, status)
        response = api.post(f"{BASE}/deployments/{dep.id}/cancel")
        assert response.status_code == 409, (status, response.get_json())
        assert error_of(response)["code"] == "conflict"
        db.session.expire_all()
        assert db.session.get(Deployment, dep.id).status == status
        assert not redis.client.exists(control.CANCEL_KEY.format(dep.id))


# ---- rollback -----------------------------------------------------------------


def test_rollback_creates_a_new_deployment_of_that_image(api, owner):
    app_row = _app_of(owner)
    old = _row(app_row, "replaced", image_tag="slipway/app:1", image_id="sha256:1",
               env_ciphertext=None, settings='{"replicas": 1}')  # fmt: skip
    _row(app_row, "running", image_tag="slipway/app:2")
    response = api.post(f"{BASE}/deployments/{old.id}/rollback", json={"keep_env": True})
    assert response.status_code == 202, response.get_json()
    body = response.get_json()
    assert response.headers["Location"] == f"/api/v1/deployments/{body['id']}"
    assert body["id"] != old.id and body["rollback_of_id"] == old.id
    assert body["trigger"] == "rollback" and body["image"] == "slipway/app:1"
    assert db.session.get(Deployment, body["id"]).env_source == "kept"
    assert _count(app_row.id) == 3


def test_rollback_refuses_a_deployment_that_never_served_and_bad_bodies(api, owner):
    app_row = _app_of(owner)
    failed = _row(app_row, "failed")
    response = api.post(f"{BASE}/deployments/{failed.id}/rollback", json={})
    assert response.status_code == 409 and error_of(response)["code"] == "conflict"
    good = _row(app_row, "replaced", image_tag="img:1")
    for payload in ({"keep_env": "maybe"}, {"env": True}):
        response = api.post(f"{BASE}/deployments/{good.id}/rollback", json=payload)
        assert response.status_code == 422, payload
    assert _count(app_row.id) == 2


# ---- stored log ---------------------------------------------------------------


def test_the_stored_build_log_as_json_in_pages(api, owner):
    app_row = _app_of(owner)
    dep = _row(app_row, "failed")
    log = BuildLog(dep.id)
    for i in range(1, 8):
        log.line(f"step {i}")
    log.info("failed: exit 1")
    log.close()
    body = api.get(f"{BASE}/deployments/{dep.id}/log").get_json()
    assert [line["n"] for line in body["lines"]] == list(range(1, 9))
    assert body["lines"][0]["text"] == "step 1" and body["lines"][-1]["stream"] == "slipway"
    assert body["truncated"] is False and body["next_after"] is None and body["final"] is True
    first = api.get(f"{BASE}/deployments/{dep.id}/log?limit=3").get_json()
    assert [line["n"] for line in first["lines"]] == [1, 2, 3] and first["next_after"] == 3
    rest = api.get(f"{BASE}/deployments/{dep.id}/log?after=3&limit=100").get_json()
    assert [line["n"] for line in rest["lines"]] == list(range(4, 9))
    assert api.get(f"{BASE}/deployments/{dep.id}/log?limit=0").status_code == 422


# ---- the document ---------------------------------------------------------------


def test_the_answers_are_exactly_what_the_openapi_schemas_say(api, owner):
    from app.web.api import schemas

    app_row = _app_of(owner)
    dep = _row(app_row, "failed", commit_sha="abc", error="exit 1")
    log = BuildLog(dep.id)
    log.info("failed")
    log.close()
    one = api.get(f"{BASE}/deployments/{dep.id}").get_json()
    assert set(one) == set(schemas.Deployment.model_fields)
    schemas.Deployment.model_validate(one, strict=False)
    listing = api.get(f"{BASE}/apps/{app_row.id}/deployments").get_json()
    schemas.DeploymentPage.model_validate(listing)
    log = api.get(f"{BASE}/deployments/{dep.id}/log").get_json()
    assert set(log) == set(schemas.BuildLog.model_fields)
    assert set(log["lines"][0]) == set(schemas.BuildLogLine.model_fields)
    document = api.get(f"{BASE}/openapi.json").get_json()
    operations = {op["operationId"] for path in document["paths"].values()
                  for op in path.values()}  # fmt: skip
    assert {"listDeployments", "createDeployment", "getDeployment", "cancelDeployment",
            "rollbackDeployment", "getDeploymentLog", "streamDeploymentLogs",
            "streamAppLogs"} <= operations  # fmt: skip
    stream = document["paths"]["/api/v1/deployments/{deployment_id}/logs"]["get"]
    assert "text/event-stream" in stream["responses"]["200"]["content"]
