"""One scheduler leads (a Redis lease); another takes over when it stops; jobs enqueue once."""

import threading
import time

import pytest
import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer

from app import jobs, scheduler
from app.extensions import queue, redis


@pytest.fixture
def fast_lease(monkeypatch):
    monkeypatch.setattr(scheduler, "LEASE_SECONDS", 2)
    monkeypatch.setattr(scheduler, "RENEW_EVERY", 0.2)


def test_only_one_identity_holds_the_lease(app):
    assert scheduler.acquire("a")
    assert not scheduler.acquire("b")
    assert scheduler.renew("a")
    assert not scheduler.renew("b")
    redis.client.delete(scheduler.LEADER_KEY)
    assert scheduler.acquire("b")


def _leader() -> str | None:
    value = redis.client.get(scheduler.LEADER_KEY)
    return value.decode() if value else None


def _wait_for(predicate, timeout=8.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def test_second_scheduler_waits_then_takes_over(app, fast_lease, monkeypatch):
    started: list[str] = []
    monkeypatch.setattr(scheduler, "build", _recording_build(started))
    stops = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=scheduler.run, args=(app, stop)) for stop in stops]
    threads[0].start()
    assert _wait_for(lambda: len(started) == 1)
    first = _leader()
    threads[1].start()
    time.sleep(1.0)
    assert len(started) == 1 and _leader() == first  # the second one waits

    stops[0].set()
    threads[0].join(timeout=5)
    assert _wait_for(lambda: len(started) == 2)
    assert _leader() not in (None, first)
    stops[1].set()
    threads[1].join(timeout=5)
    assert _leader() is None  # a leader that stops releases the lease


def test_a_dead_leader_is_replaced_when_its_lease_expires(app, fast_lease, monkeypatch):
    started: list[str] = []
    monkeypatch.setattr(scheduler, "build", _recording_build(started))
    redis.client.set(scheduler.LEADER_KEY, "crashed-process", ex=1)  # never renewed
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(app, stop))
    thread.start()
    try:
        assert _wait_for(lambda: len(started) == 1, timeout=5)
    finally:
        stop.set()
        thread.join(timeout=5)


def _recording_build(started, stopped=None):
    class Idle:
        def start(self):
            started.append("started")

        def shutdown(self, wait=False):
            if stopped is not None:
                stopped.append("stopped")

    return lambda app: Idle()


def test_a_redis_error_costs_the_lead_not_the_scheduler(app, fast_lease, monkeypatch):
    """Redis restarting: acquire and renew raise once each; the loop logs, steps down, retries."""
    started, stopped = [], []
    monkeypatch.setattr(scheduler, "build", _recording_build(started, stopped))
    failures = {"acquire": 1, "renew": 1}

    def flaky(name, real):
        def call(identity):
            if failures[name]:
                failures[name] -= 1
                raise redis_lib.exceptions.ConnectionError("Redis is loading the dataset")
            return real(identity)

        return call

    monkeypatch.setattr(scheduler, "acquire", flaky("acquire", scheduler.acquire))
    monkeypatch.setattr(scheduler, "renew", flaky("renew", scheduler.renew))
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run, args=(app, stop))
    thread.start()
    try:
        assert _wait_for(lambda: len(started) == 1)  # acquire failed once, then it led
        assert _wait_for(lambda: len(stopped) == 1)  # renew failed: the APScheduler stopped
        assert _wait_for(lambda: len(started) == 2)  # and it leads again once the lease is free
        assert thread.is_alive() and failures == {"acquire": 0, "renew": 0}
    finally:
        stop.set()
        thread.join(timeout=5)
    assert not thread.is_alive() and _leader() is None


def test_enqueue_once_per_time_slot(app):
    first = scheduler.enqueue_once(jobs.reap_lost_deployments, 3600)
    second = scheduler.enqueue_once(jobs.reap_lost_deployments, 3600)
    assert first is not None and second is None
    assert queue("default").count == 1
    job = Job.fetch(first, connection=redis.client, serializer=JSONSerializer)
    assert job.func_name == "app.jobs.reap_lost_deployments"


def test_scheduler_jobs_are_built_from_the_registry(app):
    built = scheduler.build(app)
    assert {job.id for job in built.get_jobs()} == {
        "reaper",
        "metrics",
        "policies",
        "drills",
        "certificates",
        "audit-retention",
        "volume-purge",
    }
