"""The scheduler builds cron jobs from the policies, follows their changes, and
enqueues each time slot once, however many schedulers fire it."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from rq.job import Job

from app import jobs, scheduler
from app.backups import runs
from app.extensions import db, queue, redis
from app.models import Backup
from tests.factories import make_destination, make_policy, make_team

UTC = ZoneInfo("UTC")


def _policy(moto, bucket, url=None, **fields):
    team = make_team()
    return make_policy(team, make_destination(team, moto.url, bucket), url, **fields)


def test_the_slot_is_the_latest_cron_time_within_the_grace_period(app):
    from apscheduler.triggers.cron import CronTrigger

    trigger = CronTrigger.from_crontab("0 2 * * *", timezone=UTC)
    at = datetime(2026, 11, 24, 2, 30, tzinfo=UTC)
    assert scheduler.last_fire_time(trigger, at) == datetime(2026, 11, 24, 2, 0, tzinfo=UTC)
    assert scheduler.last_fire_time(trigger, at + timedelta(hours=2)) is None  # past grace
    assert scheduler.slot_of(datetime(2026, 11, 24, 2, 0, tzinfo=UTC)) == "20261124T0200Z"


def test_firing_a_slot_twice_enqueues_it_once(app, moto, bucket):
    policy = _policy(moto, bucket)
    at = datetime(2026, 11, 24, 2, 0, 5, tzinfo=UTC)
    first = scheduler.fire_policy(policy.id, "0 2 * * *", UTC, now=at)
    second = scheduler.fire_policy(policy.id, "0 2 * * *", UTC, now=at + timedelta(seconds=30))
    assert first == f"backup-{policy.id}-20261124T0200Z" and second is None
    assert queue("backup").job_ids == [first]
    job = Job.fetch(first, connection=redis.client, serializer=queue("backup").serializer)
    assert job.func_name == "app.jobs.scheduled_backup"
    assert job.args == [policy.id, "20261124T0200Z"]


def test_racing_schedulers_enqueue_a_slot_once(app, moto, bucket):
    """Sixteen threads fire the same slot at the same instant: one job, queued once.

    (A check-then-enqueue lets two of them see no job and both push its id.)
    """
    policy_id = _policy(moto, bucket).id  # ORM objects stay in this thread
    at = datetime(2026, 11, 24, 2, 0, 5, tzinfo=UTC)
    barrier = threading.Barrier(16)
    results: list = []

    def fire():
        with app.app_context():
            barrier.wait()
            results.append(scheduler.fire_policy(policy_id, "0 2 * * *", UTC, now=at))

    threads = [threading.Thread(target=fire) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    expected = f"backup-{policy_id}-20261124T0200Z"
    assert sorted(results, key=str) == [None] * 15 + [expected]
    assert queue("backup").job_ids == [expected]


def test_a_failed_enqueue_gives_its_claim_back(app, monkeypatch):
    """If Redis refuses the enqueue, the next firing of the same slot may try again."""
    from rq import Queue

    calls = []

    def refuse(self, *args, **kwargs):
        calls.append(kwargs["job_id"])
        raise ConnectionError("redis went away")

    monkeypatch.setattr(Queue, "enqueue", refuse)
    with pytest.raises(ConnectionError):
        scheduler.enqueue_once(jobs.reap_lost_deployments, 3600)
    monkeypatch.undo()
    job_id = scheduler.enqueue_once(jobs.reap_lost_deployments, 3600)
    assert job_id == calls[0] and queue("default").job_ids == [job_id]


def test_a_slot_backs_up_once_even_if_its_job_runs_twice(app, moto, bucket, source_db):
    policy = _policy(moto, bucket, source_db(rows=10).url)
    jobs.bind(app)
    assert jobs.scheduled_backup(policy.id, "20261124T0200Z") == "succeeded"
    assert jobs.scheduled_backup(policy.id, "20261124T0200Z") == "skipped"
    rows = db.session.query(Backup).all()
    assert [(b.slot, b.trigger, b.status) for b in rows] == [
        ("20261124T0200Z", "schedule", "succeeded")
    ]


def test_policy_changes_apply_without_a_restart(app, moto, bucket):
    policy = _policy(moto, bucket, cron="0 2 * * *")
    built = scheduler.build(app)
    memo: dict = {}
    scheduler.sync_policies(app, built, memo)
    job = built.get_job(f"policy-{policy.id}")
    assert "hour='2'" in str(job.trigger)

    policy.cron = "30 3 * * 1"
    db.session.commit()
    scheduler.sync_policies(app, built, memo)
    job = built.get_job(f"policy-{policy.id}")
    assert "hour='3'" in str(job.trigger) and "minute='30'" in str(job.trigger)

    other = _policy(moto, bucket)
    policy.enabled = False
    db.session.commit()
    scheduler.sync_policies(app, built, memo)
    ids = {j.id for j in built.get_jobs() if j.id.startswith("policy-")}
    assert ids == {f"policy-{other.id}"}


def _wait(predicate, timeout=10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def test_a_missed_run_runs_once_even_with_two_schedulers_firing(app, moto, bucket):
    """Every minute is a slot; the current one was "missed" when the schedulers start.

    Two schedulers are started at once (as if the lease had been lost for a moment):
    the slot is still enqueued exactly once. A minute that begins while the test runs
    is a slot of its own, and it too is enqueued once.
    """
    policy = _policy(moto, bucket, cron="* * * * *")
    app.config["TIMEZONE"] = "UTC"
    first, second = scheduler.build(app), scheduler.build(app)
    started = datetime.now(UTC)
    first.start()
    second.start()
    try:
        assert _wait(lambda: len(queue("backup").job_ids) >= 1)
        time.sleep(1.0)
    finally:
        first.shutdown(wait=False)
        second.shutdown(wait=False)
    ended = datetime.now(UTC)
    minute = started.replace(second=0, microsecond=0)
    slots = []
    while minute <= ended:
        slots.append(f"backup-{policy.id}-{scheduler.slot_of(minute)}")
        minute += timedelta(minutes=1)
    assert sorted(queue("backup").job_ids) == slots


def test_a_slot_that_already_ran_is_not_caught_up(app, moto, bucket, source_db):
    policy = _policy(moto, bucket, source_db(rows=5).url, cron="* * * * *")
    app.config["TIMEZONE"] = "UTC"
    slot = scheduler.slot_of(datetime.now(UTC).replace(second=0, microsecond=0))
    runs.row_for_slot(policy.id, slot)
    built = scheduler.build(app)
    built.start()
    try:
        time.sleep(1.5)
    finally:
        built.shutdown(wait=False)
    assert f"backup-{policy.id}-{slot}" not in queue("backup").job_ids
