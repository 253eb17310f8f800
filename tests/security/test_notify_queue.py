"""Issue 17, item 14: a team's unreachable notification channel cannot hold up deploys.

Deliveries run on their own ``notify`` queue, served by a worker of their own (as
``make run`` starts them); an attempt never sleeps, is bounded in time, and a
failed or timed-out attempt is a new job scheduled for later. Real RQ workers
(``worker.serve``, the function ``worker.py`` runs, in child processes), real
Redis, a real loopback listener that accepts and never answers.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, Worker

from app import crypto, jobs, notify
from app.deploys import control
from app.extensions import db, queue, redis
from app.models import Deployment, NotificationChannel, NotificationEvent
from tests.factories import make_app, make_project, make_team

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {
    "OUTBOUND_ALLOWED_HOSTS": ["127.0.0.1"],
    "NOTIFY_RETRIES": 2,
    "NOTIFY_RETRY_BASE_SECONDS": 0.2,
    "NOTIFY_TIMEOUT_SECONDS": 1.0,
}


@pytest.fixture
def napp(app):
    app.config.update({k: tuple(v) if isinstance(v, list) else v for k, v in SETTINGS.items()})
    jobs.bind(app)
    return app


@pytest.fixture
def silent():
    """A loopback listener that accepts connections and never answers a byte."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    thread.join(2)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def dribbling():
    """A listener that answers one byte every 0.3 s and never finishes its status line:
    no socket operation ever times out, only the attempt's overall limit can end it."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn = server.accept()[0]
            except OSError:
                continue
            threading.Thread(target=drip, args=(conn,), daemon=True).start()

    def drip(conn):
        try:
            while not stop.wait(0.3):
                conn.sendall(b"H")
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    stop.set()
    server.close()


def _channel(team, url: str, events=("deploy.failed",)) -> NotificationChannel:
    channel = NotificationChannel(
        team_id=team.id, name=f"ch-{len(url)}-{time.monotonic_ns()}", kind="webhook",
        events=list(events), settings={},
        secret=crypto.encrypt(url, context=notify.SECRET_CONTEXT),
    )  # fmt: skip
    db.session.add(channel)
    db.session.commit()
    return channel


class WorkerProcess:
    """``worker.serve(app, queues)`` in a child process, on the test database and Redis."""

    def __init__(self, config: dict, names: list[str], log_path: Path):
        settings = {k: v for k, v in config.items() if isinstance(v, str | int | float | bool)}
        settings |= SETTINGS
        code = (
            "import json, sys\n"
            "import worker\n"
            "from app import create_app\n"
            "worker.serve(create_app(json.loads(sys.argv[1])), sys.argv[2].split(','))\n"
        )
        self.names = names
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code, json.dumps(settings), ",".join(names)],
            cwd=ROOT, start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while not any(w.queue_names() == names for w in self._workers()):
            assert self.proc.poll() is None, "the worker died at start"
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)

    def _workers(self):
        return Worker.all(connection=redis.client, serializer=JSONSerializer)

    def stop(self):
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the worker, its work horse, its scheduler
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


@pytest.fixture
def worker_process(napp, base_config, tmp_path):
    started: list[WorkerProcess] = []

    def start(names: list[str]) -> WorkerProcess:
        log_path = tmp_path / f"worker-{'-'.join(names)}.log"
        started.append(WorkerProcess(base_config, names, log_path))
        return started[-1]

    yield start
    for w in started:
        w.stop()


def _closed_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def test_a_deploy_is_picked_up_at_once_while_a_channel_hangs(napp, silent, worker_process):
    """The deploy worker of ``make run`` (deploy,default) is idle when a notification for a
    channel that never answers is enqueued; a deployment queued just after starts at once:
    the notification is not on any queue that worker serves."""
    team = make_team()
    _channel(team, silent)
    app_row = make_app(make_project(team), "web",
                       git_url=f"http://127.0.0.1:{_closed_port()}/repo.git")  # fmt: skip
    worker_process(["deploy", "default"])
    earlier = Deployment(application_id=app_row.id, status="failed", error="earlier failure")
    db.session.add(earlier)
    db.session.commit()
    assert notify.event(team.id, NotificationEvent.deploy_failed, earlier.id) == 1
    assert queue("notify").count == 1
    assert queue("default").count == 0 and queue("deploy").count == 0
    time.sleep(1.0)  # the deploy worker would have taken a notification on its queues by now

    deployment = control.start_deploy(app_row, trigger="manual")
    queued_at = time.monotonic()
    while True:
        db.session.expire_all()
        row = db.session.get(Deployment, deployment.id)
        if row.status != "queued":
            break
        assert time.monotonic() - queued_at < 3, "the deploy waited behind a notification"
        time.sleep(0.05)
    picked_up = time.monotonic() - queued_at
    assert picked_up < 3
    deadline = time.monotonic() + 30
    while not row.is_final:  # the clone is refused at once: it fails, and tells the team
        assert time.monotonic() < deadline
        time.sleep(0.1)
        db.session.expire_all()
        row = db.session.get(Deployment, deployment.id)
    assert row.status == "failed"
    # Both notifications wait on the notify queue; the deploy worker ran none of them.
    # (The failure is notified just after the row is final: wait for it.)
    deadline = time.monotonic() + 10
    while queue("notify").count < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert queue("notify").count == 2
    for name in ("deploy", "default"):
        ran = queue(name).finished_job_registry.get_job_ids()
        ran += queue(name).failed_job_registry.get_job_ids()
        fetched = Job.fetch_many(ran, connection=redis.client, serializer=JSONSerializer)
        assert all(j.func_name != notify.JOB for j in fetched if j)


def test_the_notify_worker_retries_a_hanging_channel_without_sleeping(napp, silent, worker_process):
    """The notify worker (its RQ scheduler on): the hanging channel's attempts each end at
    the socket timeout and are rescheduled, then given up; a working channel's message
    goes out at once beside them."""
    received: list[dict] = []

    class Receiver(threading.Thread):
        def run(self):
            from http.server import BaseHTTPRequestHandler, HTTPServer

            class Handler(BaseHTTPRequestHandler):
                def do_POST(self):
                    body = self.rfile.read(int(self.headers["Content-Length"]))
                    received.append(json.loads(body))
                    self.send_response(204)
                    self.end_headers()

                def log_message(self, *args):
                    pass

            self.server = HTTPServer(("127.0.0.1", 0), Handler)
            self.ready.set()
            self.server.serve_forever()

    receiver = Receiver(daemon=True)
    receiver.ready = threading.Event()
    receiver.start()
    receiver.ready.wait(5)
    team = make_team()
    hanging = _channel(team, silent)
    _channel(team, f"http://127.0.0.1:{receiver.server.server_port}/ok")
    failed = Deployment(application_id=make_app(make_project(team)).id, status="failed", error="x")
    db.session.add(failed)
    db.session.commit()
    worker_process(["notify"])
    began = time.monotonic()
    assert notify.event(team.id, NotificationEvent.deploy_failed, failed.id) == 2
    q = queue("notify")
    outcomes: list[tuple[int, str]] = []
    while len(outcomes) < 4:  # one send, three attempts at the hanging channel
        assert time.monotonic() - began < 20, outcomes
        time.sleep(0.1)
        ids = q.finished_job_registry.get_job_ids()
        jobs_ = [j for j in Job.fetch_many(ids, connection=redis.client,
                                            serializer=JSONSerializer) if j]  # fmt: skip
        outcomes = sorted((j.args[3], j.return_value()) for j in jobs_ if j.args[0] == hanging.id)
        outcomes += [(0, "sent")] if any(j.args[0] != hanging.id for j in jobs_) else []
    receiver.server.shutdown()
    assert len(received) == 1 and received[0]["event"] == "deploy.failed"
    assert sorted(outcomes) == [(0, "retrying"), (0, "sent"), (1, "retrying"), (2, "failed")]
    # 3 attempts of ~1 s (the socket timeout) and 0.2 + 0.4 s of backoff, not minutes.
    assert time.monotonic() - began < 15
    assert q.failed_job_registry.count == 0 and q.scheduled_job_registry.count == 0


def test_an_attempt_that_never_ends_is_stopped_and_rescheduled(napp, dribbling):
    """A server that keeps every socket operation alive cannot hold a worker: the attempt
    ends at its overall limit (3 x NOTIFY_TIMEOUT_SECONDS) and the next is scheduled."""
    team = make_team()
    channel = _channel(team, dribbling)
    failed = Deployment(application_id=make_app(make_project(team)).id, status="failed", error="x")
    db.session.add(failed)
    db.session.commit()
    assert notify.event(team.id, NotificationEvent.deploy_failed, failed.id) == 1
    q = queue("notify")
    (first,) = q.get_jobs()
    assert first.timeout == 3
    began = time.monotonic()
    SimpleWorker([q], connection=redis.client, serializer=JSONSerializer).work(burst=True)
    took = time.monotonic() - began
    assert 2.5 < took < 6, took
    assert q.failed_job_registry.get_job_ids() == [first.id]
    (scheduled,) = q.scheduled_job_registry.get_job_ids()
    retry = Job.fetch(scheduled, connection=redis.client, serializer=JSONSerializer)
    assert retry.args == [channel.id, "deploy.failed", failed.id, 1]
