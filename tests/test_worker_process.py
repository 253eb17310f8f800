"""``python worker.py``: one process serves every queue and runs the scheduler (issue 12).

Real worker processes on the test database and Redis; jobs are standard-library
functions (``os.getpid`` says which process ran them, ``time.sleep`` keeps a lane busy).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer
from rq.worker import Worker

from app import jobs, lanes, scheduler
from app.extensions import queue, redis
from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[1]


def _wait(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def _job(job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis.client, serializer=JSONSerializer)


class WorkerProcess:
    """``worker.py`` with no arguments; its output goes to ``log``."""

    def __init__(self, base_config: dict, data_dir: Path):
        env = os.environ | {
            "SLIPWAY_DATABASE_URL": base_config["SQLALCHEMY_DATABASE_URI"],
            "SLIPWAY_REDIS_URL": base_config["REDIS_URL"],
            "SLIPWAY_DATA_DIR": str(data_dir),
            "SLIPWAY_SECRET_KEY": "worker-test",
            "SLIPWAY_ENCRYPTION_KEYS": TEST_KEY,
        }
        # The worker adopts the engine's unlabelled objects as it starts: under a claim of
        # its own, so that it never takes them from the installation sharing the engine.
        boot = (
            "import sys, worker; from app.runtime import installation; "
            f"installation.CLAIM_VOLUME = 'slipway-test-claim-{uuid.uuid4().hex}'; "
            "sys.argv = ['worker.py']; worker.main()"
        )
        data_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = data_dir / "worker.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", boot], cwd=ROOT, env=env, start_new_session=True,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        _wait(lambda: len(self.workers()) == len(lanes.LANES), what="the lanes to register")

    def workers(self) -> list[Worker]:
        every = Worker.all(connection=redis.client, serializer=JSONSerializer)
        return [w for w in every if w.pid == self.proc.pid]

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def start_worker(app, base_config, tmp_path):
    started: list[WorkerProcess] = []

    def start() -> WorkerProcess:
        started.append(WorkerProcess(base_config, tmp_path / f"w{len(started)}"))
        return started[-1]

    yield start
    for process in started:
        process.stop()


def test_one_process_serves_every_queue_while_a_deploy_runs(start_worker):
    worker = start_worker()
    # Every queue has its lane in this one process (a lane may hold a spare thread more
    # for a moment, when a scheduled job just ran in it: count queues, not threads).
    assert {w.queue_names()[0] for w in worker.workers()} == {s.queue for s in lanes.LANES}
    long = queue("deploy").enqueue("time.sleep", 6, job_id="a-long-deploy")
    _wait(lambda: _job(long.id).get_status() == "started", what="the deploy job to start")
    began = time.monotonic()
    quick = {name: queue(name).enqueue("os.getpid", job_id=f"pid-{name}")
             for name in ("backup", "notify", "default", "deploy")}  # fmt: skip
    for name, job in quick.items():
        _wait(lambda job=job: _job(job.id).get_status() == "finished", timeout=5, what=name)
        # The same process ran it: a thread, not a forked work horse.
        assert _job(job.id).return_value() == worker.proc.pid
    assert time.monotonic() - began < 3
    assert _job(long.id).get_status() == "started"  # all of it while the deploy still ran
    # The deploy lane grew a thread for the second deploy job; it shrinks back when idle.
    _wait(lambda: _job(long.id).get_status() == "finished", what="the long job")
    _wait(lambda: len(worker.workers()) == len(lanes.LANES), what="the surplus thread to end")


def test_the_scheduler_runs_in_one_worker_and_a_second_takes_over(start_worker):
    first = start_worker()
    _wait(lambda: redis.client.get(scheduler.LEADER_KEY) is not None, what="a leader")
    _wait(lambda: "is the leader" in first.output(), what="the first worker to lead")
    lease = redis.client.get(scheduler.LEADER_KEY)
    second = start_worker()
    # Its lanes listen before the jobs go in (on a loaded machine its start-up takes
    # seconds, and the first worker alone would finish them all meanwhile).
    _wait(lambda: any("default" in w.queue_names() for w in second.workers()),
          what="the second worker's default lane")  # fmt: skip
    # The second process shares the queues: jobs spread over both.
    # More sleeping jobs than one worker's default lane has threads (4): while they
    # sleep, the pid jobs behind them can only be taken by the other worker.
    spread = [queue("default").enqueue("time.sleep", 3) for _ in range(8)]
    pids = [queue("default").enqueue("os.getpid") for _ in range(12)]
    for job in spread + pids:
        _wait(lambda job=job: _job(job.id).get_status() == "finished", what="the spread jobs")
    assert {_job(j.id).return_value() for j in pids} <= {first.proc.pid, second.proc.pid}
    assert len({_job(j.id).return_value() for j in pids}) == 2
    # It ran no scheduler of its own, and the lease is the first one's.
    time.sleep(1)
    assert "is the leader" not in second.output()
    assert redis.client.get(scheduler.LEADER_KEY) == lease
    # The scheduler enqueues (metric sampling every 15 s) and a lane runs what it enqueued.
    _wait(lambda: any(j.startswith("sched-sample_metrics-") for j in _ran("default")),
          timeout=25, what="a scheduled job to run")  # fmt: skip
    first.stop()  # a warm stop gives the lease back: the second leads at its next try
    _wait(lambda: "is the leader" in second.output(), timeout=15, what="the second to lead")


def _ran(name: str) -> list[str]:
    q = queue(name)
    return q.finished_job_registry.get_job_ids() + q.failed_job_registry.get_job_ids()


def test_sigterm_is_a_warm_shutdown_and_a_second_signal_stops_at_once(start_worker):
    worker = start_worker()
    job = queue("backup").enqueue("time.sleep", 3, job_id="finishes-first")
    _wait(lambda: _job(job.id).get_status() == "started", what="the job to start")
    os.kill(worker.proc.pid, signal.SIGTERM)
    time.sleep(1)
    assert worker.proc.poll() is None  # still running its job
    queue("default").enqueue("os.getpid", job_id="after-the-signal")
    assert worker.proc.wait(10) == 0
    assert _job(job.id).get_status() == "finished"
    assert _job("after-the-signal").get_status() == "queued"  # left for the next worker
    assert worker.workers() == []  # every lane registered its death

    again = start_worker()
    job = queue("backup").enqueue("time.sleep", 30, job_id="cut-short")
    _wait(lambda: _job(job.id).get_status() == "started", what="the second job to start")
    os.kill(again.proc.pid, signal.SIGTERM)
    time.sleep(0.5)
    os.kill(again.proc.pid, signal.SIGTERM)
    began = time.monotonic()
    assert again.proc.wait(5) != 0
    assert time.monotonic() - began < 3
    assert _job(job.id).get_status() == "started"  # never finished


def test_a_long_job_in_a_lane_is_never_called_abandoned(app):
    """A 6 h backup: RQ's registry cleanup (run by any worker every 10 minutes) must not
    move it to the failed registry while it runs, even hours into it."""
    jobs.bind(app)
    stop = threading.Event()
    serving = threading.Thread(target=_serve_in_thread, args=(app, stop), daemon=True)
    serving.start()
    try:
        job = queue("backup").enqueue("time.sleep", 3, job_id="six-hours", job_timeout=6 * 3600)
        _wait(lambda: _job(job.id).get_status() == "started", what="the backup to start")
        registry = StartedJobRegistry(queue=queue("backup"))
        registry.cleanup(timestamp=time.time() + 5 * 3600)  # as if five hours later
        assert _job(job.id).get_status() == "started"
        assert job.id in registry.get_job_ids()
        _wait(lambda: _job(job.id).get_status() == "finished", what="the backup to finish")
    finally:
        stop.set()
        serving.join(15)
    assert not serving.is_alive()


def _serve_in_thread(app, stop):
    import worker

    worker.serve_all(app, stop)


def test_a_deployment_is_handed_to_the_pipeline_at_once(start_worker):
    """Enqueue → pipeline started (the row leaves ``queued``), measured over ten deploys of
    an app whose clone is refused at once (nothing listens on its port)."""
    import socket
    import statistics

    from app.deploys import control
    from app.extensions import db
    from app.models import Deployment
    from tests.factories import make_app, make_project, make_team

    with socket.create_server(("127.0.0.1", 0)) as s:
        closed = s.getsockname()[1]
    app_row = make_app(make_project(make_team()), git_url=f"http://127.0.0.1:{closed}/r.git")
    db.session.commit()
    start_worker()
    took = []
    for _ in range(10):
        deployment = control.start_deploy(app_row, trigger="manual")
        began = time.monotonic()
        while True:
            db.session.expire_all()
            row = db.session.get(Deployment, deployment.id)
            if row.status != "queued":
                break
            assert time.monotonic() - began < 5, "never picked up"
            time.sleep(0.002)
        took.append(time.monotonic() - began)
        while not row.is_final:  # the clone fails; the next deploy then starts afresh
            assert time.monotonic() - began < 20, "the deploy never ended"
            time.sleep(0.05)
            db.session.expire_all()
            row = db.session.get(Deployment, deployment.id)
    print(f"hand-off: median {statistics.median(took) * 1000:.0f} ms, "
          f"max {max(took) * 1000:.0f} ms over {len(took)}")  # fmt: skip
    assert max(took) < 1.0
