"""Deployments in parallel (issue 12 item 2): the worker's lanes on the real engine.

The worker's lanes run in a thread of the test (``worker.serve_all``, as ``worker.py``
runs them), on the test app; each deployment is enqueued as a button press would.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select, update

import worker
from app import jobs
from app.deploys import control, slots
from app.extensions import db, redis
from app.models import Deployment, DeploymentLogLine
from app.models.base import utcnow
from tests import lab
from tests.deploys.conftest import _log, _through_traefik, _web_app
from tests.factories import make_user


@pytest.fixture
def lanes(app):
    """The worker's lanes (without the scheduler's periodic jobs), stopped after the test."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve_all, args=(app, stop),
                              kwargs={"schedule": False}, daemon=True)  # fmt: skip
    thread.start()
    deadline = time.monotonic() + 10
    while not redis.client.keys("rq:worker:*.deploy-*"):
        assert time.monotonic() < deadline, "the lanes did not start"
        time.sleep(0.05)
    yield
    # Leave nothing running: cancel what still builds, then a warm stop.
    for row in db.session.scalars(select(Deployment).where(Deployment.status == "building")):
        control.cancel(row)
    stop.set()
    thread.join(60)
    assert not thread.is_alive()


def _row(deployment_id: int) -> Deployment:
    db.session.expire_all()
    return db.session.get(Deployment, deployment_id)


def _wait(deployment_id: int, predicate, timeout: float = 60, what: str = "") -> Deployment:
    deadline = time.monotonic() + timeout
    while True:
        row = _row(deployment_id)
        if predicate(row):
            return row
        assert time.monotonic() < deadline, f"#{deployment_id} {what}: {row.status} {row.error}"
        time.sleep(0.05)


def _final(deployment_id: int, timeout: float = 90) -> Deployment:
    return _wait(deployment_id, lambda r: r.is_final, timeout, "never finished")


def _slow(version: str, seconds: int) -> dict[str, str]:
    # The timestamp keeps the layer out of the build cache.
    return lab.web_files(version, extra_run=f"/bin/busybox sleep {seconds} && echo {time.time()}")


def _build_span(deployment_id: int) -> tuple[float, float]:
    """When the build step began and when its image was recorded (log line times)."""
    lines = db.session.execute(
        select(DeploymentLogLine.ts, DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == deployment_id)
        .order_by(DeploymentLogLine.seq)
    ).all()
    began = next(ts for ts, text in lines if text == "── build")
    built = next(ts for ts, text in lines if text.startswith("image "))
    return began.timestamp(), built.timestamp()


def test_two_apps_build_at_once_each_with_its_own_log(app, infra, lanes, tmp_path):
    repos = [lab.Repo(infra["git"], f"par{n}-{time.time_ns()}", tmp_path) for n in range(2)]
    rows = []
    for n, repo in enumerate(repos):
        repo.commit(_slow(f"parallel-{n}", 6), f"parallel build {n}")
        rows.append(_web_app(repo))
    began = time.monotonic()
    deployments = [control.start_deploy(r, trigger="manual").id for r in rows]
    finished = [_final(d) for d in deployments]
    took = time.monotonic() - began
    assert [f.status for f in finished] == ["running", "running"], [f.error for f in finished]
    spans = [_build_span(d) for d in deployments]
    assert spans[0][0] < spans[1][1] and spans[1][0] < spans[0][1]  # the builds overlapped
    assert took < 2 * 6 + 10  # not one after the other
    for n, (d, app_row) in enumerate(zip(deployments, rows, strict=True)):
        log = _log(d)
        assert f"parallel build {n}" in log and f"parallel build {1 - n}" not in log
        assert _through_traefik(infra, app_row).text == f"hello from parallel-{n}\n"


def test_a_rollback_during_another_apps_long_build_finishes_at_once(app, infra, lanes, tmp_path):
    served = lab.Repo(infra["git"], f"rb-{time.time_ns()}", tmp_path)
    served.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(served)
    first = _final(control.start_deploy(app_row, trigger="manual").id)
    served.commit(lab.web_files("v2"), "v2")
    assert _final(control.start_deploy(app_row, trigger="manual").id).status == "running"
    slow_repo = lab.Repo(infra["git"], f"slow-{time.time_ns()}", tmp_path)
    slow_repo.commit(_slow("slow", 60), "a 60 s build")
    slow = control.start_deploy(_web_app(slow_repo), trigger="manual")
    _wait(slow.id, lambda r: r.step == "build", what="never built")

    began = time.monotonic()
    back = control.rollback(_row(first.id))
    picked_up = _wait(back.id, lambda r: r.status != "queued", 5, "still queued")
    handed_off = time.monotonic() - began
    back = _final(back.id, timeout=10)
    took = time.monotonic() - began
    assert back.status == "running", back.error
    assert took < 5, took
    assert picked_up.status in ("deploying", "running")
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert _row(slow.id).status == "building"  # all of it while the other app built
    print(f"rollback: picked up {handed_off:.3f} s after it was queued, running after {took:.2f} s")


def test_a_third_build_waits_for_a_slot_and_says_so(app, infra, lanes, tmp_path, client, auth):
    assert app.config["BUILD_CONCURRENCY"] == 2
    rows, ids = [], []
    for n in range(3):
        repo = lab.Repo(infra["git"], f"slot{n}-{time.time_ns()}", tmp_path)
        repo.commit(_slow(f"slot-{n}", 60), f"slot build {n}")
        rows.append(_web_app(repo))
    for n, row in enumerate(rows):
        ids.append(control.start_deploy(row, trigger="manual").id)
        if n < 2:
            _wait(ids[n], lambda r: r.step == "build", what="never built")
    time.sleep(1.5)  # the third has long been taken by a lane thread: it waits for a slot
    third = _row(ids[2])
    assert third.status == "queued"
    assert third.waiting_for == "waiting for a build slot: 2 builds ahead of it (2 at a time)"
    assert redis.client.zrange(slots.WAITERS, 0, -1) == [str(ids[2]).encode()]
    owner = make_user(rows[2].project.team)
    assert auth.login(owner).status_code == 303
    page = client.get(f"/deployments/{ids[2]}").get_data(as_text=True)
    assert "waiting for a build slot: 2 builds ahead of it" in page
    listing = client.get(f"/apps/{rows[2].id}").get_data(as_text=True)
    assert "waiting for a build slot: 2 builds ahead of it" in listing
    # Waiting for its slot, it is alive for the reaper, however long it has been queued.
    db.session.execute(update(Deployment).where(Deployment.id == ids[2])
                       .values(created_at=utcnow() - timedelta(minutes=5)))  # fmt: skip
    db.session.commit()
    assert jobs.reap_lost_deployments() == 0
    # One build ends (cancelled): the third takes its slot at once.
    control.cancel(_row(ids[0]))
    _wait(ids[2], lambda r: r.status == "building", 15, "did not take the free slot")
    assert _row(ids[2]).waiting_for is None


def test_a_second_deployment_of_an_app_waits_for_the_first(app, infra, lanes, repo):
    repo.commit(_slow("first", 60), "slow first")
    app_row = _web_app(repo)
    first = control.start_deploy(app_row, trigger="manual")
    _wait(first.id, lambda r: r.step == "build", what="never built")
    second = control.start_deploy(app_row, trigger="manual")
    time.sleep(1.0)
    row = _row(second.id)
    assert row.status == "queued"
    assert row.waiting_for == (
        f"waiting for the previous deployment of this app (#{first.id}) to finish"
    )
    control.cancel(_row(first.id))
    _wait(second.id, lambda r: r.status == "building", 15, "did not start after the first")


def test_a_killed_worker_leaves_failed_rows_for_a_build_and_the_deployment_behind_it(
    app, infra, repo
):
    """``worker.py`` killed while one deployment builds and the app's next one waits for
    it (queued, its job started): the reaper marks both failed, saying why."""
    import os
    import signal
    import subprocess
    import sys
    import uuid

    from rq.job import Job
    from rq.serializers import JSONSerializer

    from tests.deploys.test_deploys import _worker_env

    repo.commit(_slow("doomed", 60), "slow build")
    app_row = _web_app(repo)
    boot = (
        "import sys, worker; from app.runtime import installation; "
        f"installation.CLAIM_VOLUME = 'slipway-test-claim-{uuid.uuid4().hex}'; "
        "sys.argv = ['worker.py']; worker.main()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", boot], env=_worker_env(infra["config"]), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        building = control.start_deploy(app_row, trigger="manual")
        _wait(building.id, lambda r: r.step == "build", what="never built")
        behind = control.start_deploy(app_row, trigger="manual")
        job = Job.fetch(behind.rq_job_id, connection=redis.client, serializer=JSONSerializer)
        deadline = time.monotonic() + 10
        while job.get_status(refresh=True) != "started":
            assert time.monotonic() < deadline, "the waiting deployment's job never started"
            time.sleep(0.1)
        assert _row(behind.id).status == "queued"
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        db.session.execute(update(Deployment).where(Deployment.id.in_([building.id, behind.id]))
                           .values(created_at=utcnow() - timedelta(minutes=5)))  # fmt: skip
        db.session.commit()
        killed_at = time.monotonic()
        reaped = 0
        while reaped < 2 and time.monotonic() - killed_at < 40:
            reaped += jobs.reap_lost_deployments()
            time.sleep(1)
        for deployment_id in (building.id, behind.id):
            row = _row(deployment_id)
            assert row.status == "failed" and "worker lost" in row.error, row.status
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
