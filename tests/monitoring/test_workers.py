"""The Workers page against a real worker process (worker.py) on the test Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer
from rq.worker import Worker
from sqlalchemy import select

from app import config as config_module
from app.extensions import db, queue, redis
from app.models import AuditEvent, Role
from app.monitoring import workers
from tests.conftest import TEST_KEY, csrf_token
from tests.factories import make_team, make_user


def _wait(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def worker_process(app, base_config, tmp_path):
    """``python worker.py --queues …``: one RQ worker on every queue, in that order (with no
    ``--queues`` the process runs a worker per lane thread); stopped warmly afterwards."""
    env = os.environ | {
        "SLIPWAY_DATABASE_URL": base_config["SQLALCHEMY_DATABASE_URI"],
        "SLIPWAY_REDIS_URL": base_config["REDIS_URL"],
        "SLIPWAY_DATA_DIR": str(tmp_path),
        "SLIPWAY_SECRET_KEY": "worker-test",
        "SLIPWAY_ENCRYPTION_KEYS": TEST_KEY,
        "SLIPWAY_ADOPT_UNLABELLED": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "worker.py", "--queues", "deploy,backup,notify,default"],
        cwd=config_module.ROOT, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        _wait(lambda: Worker.count(connection=redis.client) == 1, what="the worker to register")
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _login(auth, role):
    """Log in as the installation's owner (Role.owner: the first account, as setup makes it)
    or as a team member with ``role`` in an installation someone else owns."""
    if role != Role.owner:
        make_user(make_team())  # the installation's owner
    user = make_user(make_team(), role=role)
    assert auth.login(user).status_code == 303
    return user


def _failed_ids(name="default"):
    return FailedJobRegistry(queue=queue(name)).get_job_ids()


def test_workers_page_shows_a_real_worker_its_job_queues_and_failures(
    client, auth, worker_process, tmp_path
):
    _login(auth, Role.owner)
    missing = tmp_path / "made-on-retry"
    # fails: the directory does not exist yet
    failing = queue("default").enqueue("os.rmdir", str(missing), job_id="rmdir-once")
    _wait(lambda: failing.id in _failed_ids(), what="the job to fail")
    busy = queue("default").enqueue("time.sleep", 8, job_id="sleeper")
    _wait(lambda: workers.workers()[0].current_job_id == busy.id, what="the worker to be busy")
    # Queued only once the worker is busy: idle, it would take the deploy queue's job first.
    queue("deploy").enqueue("time.sleep", 0, job_id="waits-behind")

    html = client.get("/workers").get_data(as_text=True)
    (info,) = workers.workers()
    assert info.name in html and "busy" in html
    assert "sleeper" in html and "time.sleep" in html
    assert info.last_heartbeat is not None and " s ago" in html
    assert "deploy, backup, notify, default" in html  # the worker's queues, in its order
    assert "rmdir-once" in html and "os.rmdir" in html
    assert "FileNotFoundError" in html
    deploy_row = [q for q in workers.queues() if q.name == "deploy"][0]
    assert deploy_row.queued == 1
    default_row = [q for q in workers.queues() if q.name == "default"][0]
    assert default_row.failed == 1 and default_row.started == 1

    # retry after the cause is fixed: the worker runs it again, and it succeeds
    missing.mkdir()
    token = csrf_token(client, "/workers")
    response = client.post("/workers/failed/rmdir-once/retry", data={"csrf_token": token})
    assert response.status_code == 303
    job = Job.fetch("rmdir-once", connection=redis.client, serializer=JSONSerializer)
    _wait(lambda: job.get_status() == "finished", what="the retried job to finish")
    assert not missing.exists()
    assert "rmdir-once" not in _failed_ids()
    event = db.session.scalar(select(AuditEvent).where(AuditEvent.action == "job.retried"))
    assert event.details["job_id"] == "rmdir-once" and event.details["function"] == "os.rmdir"


def _fail_a_job(job_id="broken", arg="postgresql://admin:hunter2@db/x password=hunter2"):
    """A failed job in the registry without a worker: its payload holds a 'secret'."""
    job = queue("default").enqueue("json.loads", arg, job_id=job_id)
    queue("default").remove(job)
    job.set_status("failed")
    registry = FailedJobRegistry(queue=queue("default"))
    error = f"Traceback...\nValueError: bad input {arg}"
    registry.add(job, ttl=600, exc_string=error)
    Result.create_failure(job, 600, exc_string=error)  # as a worker records it
    return job


def test_failed_jobs_show_no_arguments_and_mask_credentials(client, auth):
    user = _login(auth, Role.admin)
    user.installation_admin = True  # named by the owner
    db.session.commit()
    _fail_a_job()
    html = client.get("/workers").get_data(as_text=True)
    assert "broken" in html and "json.loads" in html and "ValueError: bad input" in html
    assert "hunter2" not in html
    assert "No worker is running" in html


@pytest.mark.parametrize("role", [Role.admin, Role.developer, Role.viewer])
def test_workers_page_and_retry_are_not_for_team_members(client, auth, role):
    """Only the installation's owner and the admins the owner named; a team's admin is not
    one (tests/security/test_installation_pages.py covers named admins and team owners)."""
    _login(auth, role)
    _fail_a_job()
    assert client.get("/workers").status_code == 403
    token = csrf_token(client, "/")
    assert (
        client.post("/workers/failed/broken/retry", data={"csrf_token": token}).status_code == 403
    )
    assert "broken" in _failed_ids()
    assert "Workers</a>" not in client.get("/").get_data(as_text=True)


def test_retry_needs_a_csrf_token_and_a_failed_job(client, auth):
    _login(auth, Role.owner)
    _fail_a_job()
    queue("default").enqueue("time.sleep", 0, job_id="not-failed")
    assert client.post("/workers/failed/broken/retry").status_code == 400
    assert "broken" in _failed_ids()
    token = csrf_token(client, "/workers")
    for job_id in ("not-failed", "no-such-job", "bad%20id", "..%2F..%2Fx"):
        response = client.post(f"/workers/failed/{job_id}/retry", data={"csrf_token": token})
        assert response.status_code == 404, job_id
    assert queue("default").count == 1  # the failed one was not requeued
    assert db.session.scalar(select(AuditEvent).where(AuditEvent.action == "job.retried")) is None
    assert (
        client.post("/workers/failed/broken/retry", data={"csrf_token": token}).status_code == 303
    )
    assert "broken" not in _failed_ids() and queue("default").count == 2


def test_error_summary_is_one_line_masked_and_short():
    text = "Traceback (most recent call last):\n  File x\nOperationalError: https://u:p@h/ key=abc"
    assert workers.error_summary(text) == "OperationalError: https://***@h/ key=***"
    assert len(workers.error_summary("E: " + "x" * 500)) == workers.SUMMARY_LENGTH
    assert workers.error_summary(None) == "no error recorded"
