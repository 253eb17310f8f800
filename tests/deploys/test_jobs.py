"""Jobs run from ids through RQ's JSON serializer; lost deployments are reaped."""

import json
import zlib
from datetime import timedelta

from rq import SimpleWorker
from rq.serializers import JSONSerializer

from app import jobs
from app.extensions import db, queue, redis
from app.models import Deployment
from app.models.base import utcnow
from tests.factories import make_app, make_project, make_team


def _deployment(app_row, status, age_seconds, rq_job_id=None):
    deployment = Deployment(
        application_id=app_row.id,
        status=status,
        rq_job_id=rq_job_id,
        created_at=utcnow() - timedelta(seconds=age_seconds),
    )
    db.session.add(deployment)
    db.session.commit()
    return deployment.id


def test_reaper_fails_deployments_whose_job_is_gone(app):
    app_row = make_app(make_project(make_team()))
    lost = _deployment(app_row, "building", 300, rq_job_id="job-that-died-with-its-worker")
    young = _deployment(app_row, "queued", 5, rq_job_id="just-enqueued")
    waiting_job = queue("deploy").enqueue("app.jobs.reap_lost_deployments")
    waiting = _deployment(app_row, "queued", 300, rq_job_id=waiting_job.id)
    done = _deployment(app_row, "running", 300)
    jobs.bind(app)

    assert jobs.reap_lost_deployments() == 1

    db.session.expire_all()
    statuses = {d: db.session.get(Deployment, d) for d in (lost, young, waiting, done)}
    assert statuses[lost].status == "failed"
    assert "worker lost" in statuses[lost].error
    assert statuses[lost].finished_at is not None
    assert statuses[young].status == "queued"
    assert statuses[waiting].status == "queued"
    assert statuses[done].status == "running"


def test_worker_runs_jobs_with_the_json_serializer(app):
    app_row = make_app(make_project(make_team()))
    lost = _deployment(app_row, "deploying", 300, rq_job_id="gone")
    jobs.bind(app)
    job = queue("default").enqueue(jobs.reap_lost_deployments)
    # The payload in Redis is JSON, not a pickle.
    raw = zlib.decompress(redis.client.hget(f"rq:job:{job.id}", "data"))
    assert json.loads(raw)[0] == "app.jobs.reap_lost_deployments"

    worker = SimpleWorker([queue("default")], connection=redis.client, serializer=JSONSerializer)
    assert worker.work(burst=True)
    job.refresh()
    assert job.get_status() == "finished" and job.return_value() == 1
    db.session.expire_all()
    assert db.session.get(Deployment, lost).status == "failed"


def test_worker_log_hides_routine_scheduled_jobs_but_not_failures_or_deploys():
    import logging

    import worker

    def record(level: int, message: str) -> logging.LogRecord:
        return logging.LogRecord("rq.worker", level, __file__, 1, message, None, None)

    assert not worker.quiet_routine_jobs(record(logging.INFO, "default: Job OK (sched-x-1)"))
    assert not worker.quiet_routine_jobs(
        record(logging.INFO, "Successfully completed app.jobs.sample_metrics() job in 0:00:01")
    )
    assert worker.quiet_routine_jobs(record(logging.INFO, "deploy: app.jobs.run_deployment(7)"))
    assert worker.quiet_routine_jobs(record(logging.ERROR, "app.jobs.sample_metrics() failed"))
