"""Deleting an app is idempotent: the ``remove-app-<id>`` job against the real engine and
Traefik, racing other removals of the same containers, run twice, and retried."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import docker
import pytest

from app import jobs
from app.deploys.reaper import CleanupIncomplete
from app.extensions import db
from tests import lab
from tests.deploys.conftest import _deploy, _through_traefik, _web_app, ours


def _deployed(repo, **fields):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, **fields)
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    return app_row


def _delete_row(app_row) -> tuple[int, str]:
    app_id, host = app_row.id, f"{app_row.name}.{app_row.project.name}.localhost"
    db.session.delete(app_row)
    db.session.commit()
    return app_id, host


def _answer_once_settled(infra, host: str) -> int:
    """The status Traefik gives the host once it has reloaded its routes (file watch)."""
    deadline = time.monotonic() + 10
    status = _through_traefik(infra, host).status_code
    while status != 404 and time.monotonic() < deadline:
        time.sleep(0.2)
        status = _through_traefik(infra, host).status_code
    return status


def test_delete_job_racing_other_removals_succeeds_and_leaves_nothing(app, infra, repo):
    """Two runs of the job at once (a retry racing the first) and a ``docker rm -f`` of
    every container: Docker answers some of them 404 or 409 "removal already in
    progress"; both runs succeed, nothing of the app is left, the host gets Traefik's
    404 (not a 502 for a route to removed containers), and a further run is a no-op."""
    app_row = _deployed(repo, replicas=2)
    client = docker.from_env()
    ids = [c.id for c in client.containers.list(filters=ours(f"slipway.app={app_row.id}"))]
    assert len(ids) == 2
    app_id, host = _delete_row(app_row)
    assert _through_traefik(infra, host).status_code == 200  # the route is still there

    start = threading.Barrier(3)
    failures: list[BaseException] = []

    def job():
        start.wait()
        try:
            jobs.remove_app_resources(app_id)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    def docker_rm_f():
        start.wait()
        time.sleep(0.3)  # let the jobs list the containers first
        for cid in ids:
            try:
                client.api.remove_container(cid, force=True)
            except docker.errors.APIError:
                pass  # gone, or being removed by a job: what racing means

    threads = [threading.Thread(target=f) for f in (job, job, docker_rm_f)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert not client.containers.list(all=True, filters=ours(f"slipway.app={app_id}"))
    assert not client.images.list(filters=ours(f"slipway.app={app_id}"))
    client.close()
    assert not Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_id}.yml").exists()
    assert _answer_once_settled(infra, host) == 404
    assert jobs.remove_app_resources(app_id) == 0  # again: nothing to do, no error


def test_delete_job_fails_while_something_is_left_and_its_retry_finishes(app, infra, repo):
    """An image of the app still used by a container Slipway did not start (someone ran
    it by hand) cannot be removed: the job removes the route and the containers, then
    fails saying what is left; once that container is gone, a retry removes the image."""
    app_row = _deployed(repo)
    client = docker.from_env()
    (image,) = client.images.list(filters=ours(f"slipway.app={app_row.id}"))
    # The image's labels would make the container look like one of the app's: not this one.
    not_ours = {"slipway.app": "by-hand", "slipway.installation": "by-hand"}
    by_hand = client.containers.create(image.id, command=["true"], labels=not_ours)
    try:
        app_id, host = _delete_row(app_row)
        with pytest.raises(CleanupIncomplete, match="1 images"):
            jobs.remove_app_resources(app_id)
        assert not Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_id}.yml").exists()
        assert not client.containers.list(all=True, filters=ours(f"slipway.app={app_id}"))
        assert _answer_once_settled(infra, host) == 404
    finally:
        by_hand.remove(force=True)
    assert jobs.remove_app_resources(app_id) == 0
    assert not client.images.list(filters=ours(f"slipway.app={app_id}"))
    client.close()
