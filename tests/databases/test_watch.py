"""A database's row follows its container, watched rather than assumed: killed or
removed behind Slipway's back → ``failed`` with the reason within seconds; started
again by hand → ``running``; stopped by Slipway → stays ``stopped``. Real engine, the
real watcher (``app.runtime.watch``) and the lifecycle's own containers.
"""

from __future__ import annotations

import time

import docker
import pytest

from app import jobs
from app.databases import lifecycle
from app.extensions import db
from app.models import Database
from app.runtime import watch
from tests.databases.test_lifecycle import dbapp  # noqa: F401 - the fixture
from tests.factories import make_project, make_team

pytestmark = pytest.mark.once


def _row(database_id: int) -> Database:
    db.session.expire_all()
    return db.session.get(Database, database_id)


def _until(database_id: int, status: str, timeout: float = 10) -> Database:
    deadline = time.monotonic() + timeout
    while (row := _row(database_id)).status != status:
        assert time.monotonic() < deadline, f"still {row.status} ({row.error})"
        time.sleep(0.1)
    return row


def test_the_row_follows_the_container_it_is_not_assumed(dbapp):  # noqa: F811
    database = lifecycle.create(make_project(make_team(), "watched"), name="cache",
                                engine="redis", memory_limit_mb=128)  # fmt: skip
    assert jobs.database_create(database.id) == "running", _row(database.id).error
    engine = docker.from_env()
    watcher = watch.Watcher(dbapp, check=lambda *args: None, reconcile_seconds=1).start()
    try:
        assert watcher.connected.wait(10)
        container = engine.containers.get(_row(database.id).container_id)

        started = time.monotonic()
        container.kill()  # a manual kill: the restart policy leaves it down
        failed = _until(database.id, "failed")
        print(f"\nkill seen as failed in {time.monotonic() - started:.2f} s")
        assert "stopped without Slipway stopping it" in failed.error
        assert "exit code 137" in failed.error

        container.start()  # brought back by hand: the row says so
        running = _until(database.id, "running")
        assert running.error is None

        container.remove(force=True)
        gone = _until(database.id, "failed")
        assert "removed outside Slipway" in gone.error

        # Started through Slipway: a new container on the volume, running again.
        lifecycle.start(gone)
        assert jobs.database_action(database.id, "start") == "running"
        again = _until(database.id, "running")
        assert again.container_id != container.id

        # Stopped through Slipway: the watcher leaves it stopped (reconciled every 1 s).
        lifecycle.stop(again)
        assert jobs.database_action(database.id, "stop") == "stopped"
        time.sleep(2.5)
        assert _row(database.id).status == "stopped"
    finally:
        watcher.stop()
        engine.close()


def test_a_database_a_job_is_at_work_on_is_left_to_the_job(dbapp):  # noqa: F811
    database = lifecycle.create(make_project(make_team(), "busy"), name="cache",
                                engine="redis", memory_limit_mb=128)  # fmt: skip
    assert jobs.database_create(database.id) == "running", _row(database.id).error
    row = _row(database.id)
    engine = docker.from_env()
    try:
        engine.containers.get(row.container_id).kill()
        row.progress = "restarting"  # a restart job under way
        db.session.commit()
        assert lifecycle.observe(database.id) is None
        assert _row(database.id).status == "running"
        row = _row(database.id)
        row.progress = None
        db.session.commit()
        assert lifecycle.observe(database.id) == "failed"
    finally:
        engine.close()


def test_a_failed_creates_reason_is_not_overwritten(dbapp):  # noqa: F811
    database = lifecycle.create(make_project(make_team(), "nopull"), name="cache",
                                engine="redis")  # fmt: skip
    row = _row(database.id)
    row.status, row.error = "failed", "pulling redis:7 failed: manifest unknown"
    db.session.commit()
    assert lifecycle.observe(database.id) is None
    assert _row(database.id).error == "pulling redis:7 failed: manifest unknown"
