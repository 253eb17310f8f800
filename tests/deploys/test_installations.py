"""Two installations on one engine, with the same app and deployment ids, never act on
each other's containers and images: not the reaper, not image pruning, not app deletion."""

from __future__ import annotations

import random
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import docker
import pytest
from flask import Flask
from flask_migrate import upgrade
from sqlalchemy import select

from app import create_app, jobs
from app.extensions import db
from app.models import Deployment, Installation
from app.models.base import utcnow
from app.runtime import containers, installation
from tests import lab
from tests.factories import make_app, make_project, make_team, make_user

DOCKERFILE = f'FROM {lab.BASE_IMAGE}\nCMD ["/bin/busybox", "httpd", "-f", "-p", "8000"]\n'


@dataclass
class Side:
    """One installation: its own database, the shared engine and Traefik."""

    app: Flask
    id: str

    @contextmanager
    def active(self):
        jobs.bind(self.app)
        with self.app.app_context():
            yield


@pytest.fixture
def two(infra, tmp_path):
    """Installations A and B; in each, app ``app_id`` with deployments ``dep`` and ``dep + 1``,
    one image per deployment, and a running container of ``dep`` (status building, old)."""
    app_id, dep = random.randrange(10**6, 10**9), random.randrange(10**6, 10**9)
    (tmp_path / "Dockerfile").write_text(DOCKERFILE)
    sides = []
    for name in ("a", "b"):
        uri = f"sqlite:///{tmp_path}/{name}.db"
        flask_app = create_app(infra["config"] | {"SQLALCHEMY_DATABASE_URI": uri})
        with flask_app.app_context():
            upgrade()
            make_user()
            make_app(make_project(make_team()), id=app_id)
            old = utcnow() - timedelta(minutes=5)
            for deployment_id in (dep, dep + 1):
                db.session.add(
                    Deployment(id=deployment_id, application_id=app_id, status="building",
                               created_at=old)
                )  # fmt: skip
            db.session.commit()
            for deployment_id in (dep, dep + 1):
                labels = {containers.LABEL_APP: str(app_id),
                          containers.LABEL_DEPLOYMENT: str(deployment_id)}  # fmt: skip
                containers.build_image(
                    tmp_path, tmp_path / "Dockerfile", containers.image_tag(app_id, deployment_id),
                    labels, on_line=lambda line: None, should_stop=lambda: False,
                )  # fmt: skip
            _start(app_id, dep)
            side = Side(flask_app, db.session.scalar(select(Installation.installation_id)))
        sides.append(side)
    yield sides, app_id, dep
    engine = docker.from_env()
    for container in engine.containers.list(all=True, filters={"label": f"slipway.app={app_id}"}):
        container.remove(force=True)
    for image in engine.images.list(filters={"label": f"slipway.app={app_id}"}):
        engine.images.remove(image.id, force=True)
    for side in sides:
        for network in engine.networks.list(filters={"label": f"slipway.installation={side.id}"}):
            network.remove()
    engine.close()
    for side in sides:
        with side.app.app_context():
            db.engine.dispose()


def _start(app_id: int, dep: int) -> None:
    containers.start_replicas(
        app_id=app_id, project_id=1, deployment_id=dep, image=containers.image_tag(app_id, dep),
        env={}, count=1, cpu_limit=None, memory_limit_mb=None,
    )  # fmt: skip


def _objects(side: Side, app_id: int) -> tuple[list, list]:
    """(container names, image tags) of the app that carry ``side``'s label."""
    engine = docker.from_env()
    labels = [f"slipway.app={app_id}", f"slipway.installation={side.id}"]
    found = engine.containers.list(all=True, filters={"label": labels})
    images = engine.images.list(filters={"label": labels})
    engine.close()
    return sorted(c.name for c in found), sorted(t for i in images for t in i.tags)


def test_each_installation_acts_only_on_its_own_objects(two):
    (a, b), app_id, dep = two
    assert a.id != b.id
    b_before = _objects(b, app_id)
    assert len(b_before[0]) == 1 and len(b_before[1]) == 2

    with a.active():  # A's reaper: A's deployment lost its worker
        assert jobs.reap_lost_deployments() == 2
    assert _objects(a, app_id)[0] == []
    assert _objects(b, app_id) == b_before

    with a.active():  # A's retention keeps its newest image only
        kept = containers.image_tag(app_id, dep + 1)
        assert containers.prune_images(app_id, keep_tags={kept}) == [
            containers.image_tag(app_id, dep)
        ]
        _start(app_id, dep + 1)
    assert _objects(a, app_id)[1] == [kept]
    assert _objects(b, app_id) == b_before
    a_now = _objects(a, app_id)

    with b.active():  # B deletes its app: its containers and images go
        assert jobs.remove_app_resources(app_id) == 1
    assert _objects(b, app_id) == ([], [])
    assert _objects(a, app_id) == a_now


def test_unlabelled_objects_belong_to_the_installation_that_adopts_them(two, monkeypatch):
    """Made before installation ids: everyone's until claimed, then the claimant's alone."""
    (a, b), app_id, _ = two
    monkeypatch.setattr(installation, "CLAIM_VOLUME", f"slipway-test-claim-{uuid.uuid4().hex}")
    engine = docker.from_env()
    legacy_dep = random.randrange(10**6, 10**9)
    old = engine.containers.run(
        lab.BASE_IMAGE, ["/bin/busybox", "sleep", "300"], detach=True,
        labels={"slipway.app": str(app_id), "slipway.deployment": str(legacy_dep)},
    )  # fmt: skip
    try:
        for side in (a, b):  # nobody claimed them: both see them, as before ids existed
            with side.app.app_context():
                assert old.id in containers.containers_of(deployment_id=legacy_dep)

        a.app.config["ADOPT_UNLABELLED"] = True
        jobs.bind(a.app)  # A's worker starts: it adopts them
        with b.app.app_context():
            assert containers.adopt_unlabelled() == 0  # B's start comes second
            assert containers.containers_of(deployment_id=legacy_dep) == []
            containers.stop_and_remove([old.id], timeout=0)
        old.reload()
        assert old.status == "running"
        with a.app.app_context():
            assert containers.containers_of(deployment_id=legacy_dep) == [old.id]
            containers.stop_and_remove([old.id], timeout=0)
        with pytest.raises(docker.errors.NotFound):
            old.reload()
    finally:
        try:
            old.remove(force=True)
        except docker.errors.NotFound:
            pass
        try:
            engine.volumes.get(installation.CLAIM_VOLUME).remove()
        except docker.errors.NotFound:
            pass
        engine.close()
