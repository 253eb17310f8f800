"""Every line a build prints is stored once, in order (bench/logs.py's build_lines_lost)."""

from __future__ import annotations

import random
import time

import docker
from sqlalchemy import select

from app.deploys.buildlog import BuildLog
from app.extensions import db
from app.models import Deployment, DeploymentLogLine
from app.runtime import containers
from tests import lab
from tests.factories import make_app, make_project, make_team

LINES = 20000
PAD = "x" * 60


def test_a_chatty_build_loses_and_splits_no_line(app, tmp_path):
    lab.ensure_base_image()
    application = make_app(make_project(make_team()))
    dep = Deployment(application_id=application.id, status="building")
    db.session.add(dep)
    db.session.commit()
    (tmp_path / "Dockerfile").write_text(
        f"FROM {lab.BASE_IMAGE}\n"
        f'RUN i=0; while [ $i -lt {LINES} ]; do i=$((i+1)); echo "build-line-$i {PAD}"; done; '
        f"echo {time.time()}\n"  # never a cached layer
    )
    fake_app_id = random.randrange(10**9, 2 * 10**9)  # no one else's image carries it
    tag = containers.image_tag(fake_app_id, dep.id)
    log = BuildLog(dep.id)
    try:
        containers.build_image(
            tmp_path, tmp_path / "Dockerfile", tag, {containers.LABEL_APP: str(fake_app_id)},
            on_line=log.line, should_stop=lambda: False,
        )  # fmt: skip
        log.flush()
    finally:
        client = docker.from_env()
        for image in client.images.list(filters={"label": f"slipway.app={fake_app_id}"}):
            client.images.remove(image.id, force=True)
        client.close()
    texts = db.session.scalars(
        select(DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == dep.id)
        .order_by(DeploymentLogLine.seq)
    ).all()
    printed = [t.removesuffix(f" {PAD}") for t in texts if t.startswith("build-line-")]
    assert printed == [f"build-line-{i}" for i in range(1, LINES + 1)]


def test_a_long_build_line_is_cut_like_a_runtime_line_after_redacting(app):
    """One cut length and marker (live.logformat) for build and runtime logs."""
    from app.live import logformat

    application = make_app(make_project(make_team()))
    dep = Deployment(application_id=application.id, status="building")
    db.session.add(dep)
    db.session.commit()
    secret = "s3cr3t-value"
    log = BuildLog(dep.id, secrets=[secret])
    long_line = "y" * (logformat.MAX_LINE - 5) + secret
    log.line(long_line)
    log.flush()
    text = db.session.scalar(
        select(DeploymentLogLine.text).where(DeploymentLogLine.deployment_id == dep.id)
    )
    assert text == logformat.cut(long_line.replace(secret, "••••••"))
    assert text.endswith(logformat.CUT_MARK) and "s3cr" not in text
