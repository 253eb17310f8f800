"""Starting deployments: supersede, cancel while queued, the web routes, hostile values."""

from __future__ import annotations

import os
import re
import uuid
from pathlib import Path

import docker
import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from app import jobs
from app.deploys import control
from app.extensions import db, queue, redis
from app.models import Deployment, Installation, Role
from app.projects import envvars
from tests import lab
from tests.conftest import csrf_token
from tests.deploys.conftest import _deploy, _through_traefik, _web_app, ours
from tests.factories import make_app, make_project, make_team, make_user, team_of


def _statuses(app_row) -> list[str]:
    return list(
        db.session.scalars(
            select(Deployment.status)
            .where(Deployment.application_id == app_row.id)
            .order_by(Deployment.id)
        )
    )


def test_newer_queued_deployment_supersedes_older_ones(app):
    app_row = make_app(make_project(make_team()))
    first = control.start_deploy(app_row, trigger="manual")
    second = control.start_deploy(app_row, trigger="api")
    third = control.start_deploy(app_row, trigger="webhook")
    assert _statuses(app_row) == ["superseded", "superseded", "queued"]
    deploy_queue = queue("deploy")
    assert deploy_queue.job_ids == [third.rq_job_id]
    job = Job.fetch(third.rq_job_id, connection=redis.client, serializer=JSONSerializer)
    assert job.args == [third.id]  # an id, nothing else, in the payload
    # A superseded job that runs anyway (already taken by a worker) does nothing.
    assert jobs.run_deployment(first.id) == "superseded"
    assert jobs.run_deployment(second.id) == "superseded"


def test_cancel_a_queued_deployment(app):
    app_row = make_app(make_project(make_team()))
    deployment = control.start_deploy(app_row, trigger="manual")
    control.cancel(deployment)
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).status == "cancelled"
    assert queue("deploy").count == 0
    assert jobs.run_deployment(deployment.id) == "cancelled"


def test_a_finished_deployment_cannot_be_cancelled(app):
    app_row = make_app(make_project(make_team()))
    deployment = Deployment(application_id=app_row.id, status="failed")
    db.session.add(deployment)
    db.session.commit()
    with pytest.raises(control.DeployError):
        control.cancel(deployment)


def test_rollback_needs_a_successful_deployment(app):
    app_row = make_app(make_project(make_team()))
    failed = Deployment(application_id=app_row.id, status="failed", image_tag="x")
    db.session.add(failed)
    db.session.commit()
    with pytest.raises(control.DeployError):
        control.rollback(failed)
    assert queue("deploy").count == 0


# ---- the web routes --------------------------------------------------------


def _post(client, path):
    return client.post(path, data={"csrf_token": csrf_token(client, "/")})


def test_deploy_button_queues_and_returns_at_once(logged_in):
    client, user = logged_in
    app_row = make_app(make_project(team_of(user)), "web")
    response = _post(client, f"/apps/{app_row.id}/deploy")
    assert response.status_code == 303
    deployment = db.session.scalar(select(Deployment))
    assert (deployment.status, deployment.trigger, deployment.triggered_by_id) == (
        "queued",
        "manual",
        user.id,
    )
    assert response.headers["Location"] == f"/deployments/{deployment.id}"
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    # The page follows the deployment over a websocket until it is final (tests/live).
    assert (
        "queued" in page
        and f'data-live-log="ws://localhost/ws/deployments/{deployment.id}/log"' in page
    )
    listing = client.get(f"/apps/{app_row.id}/deployments").get_data(as_text=True)
    assert f"#{deployment.id}" in listing
    fragment = client.get(f"/deployments/{deployment.id}", headers={"HX-Request": "true"})
    assert fragment.get_data(as_text=True).lstrip().startswith('<div id="deployment-status"')


def _status_text(html: str) -> str:
    part = html.split('id="deployment-status"', 1)[1].split("Build log", 1)[0]
    return " ".join(re.sub(r"<[^>]+>", " ", part).split())


def test_the_queued_message_lives_in_the_status_partial_not_a_flash(logged_in):
    """ "Deployment #N queued" is part of what live.js redraws on a status change, so it
    goes when the deployment moves on; a flash would stay on the open page."""
    client, user = logged_in
    app_row = make_app(make_project(team_of(user)), "web")
    response = _post(client, f"/apps/{app_row.id}/deploy")
    deployment = db.session.scalar(select(Deployment))
    page = client.get(response.headers["Location"]).get_data(as_text=True)
    assert 'class="flash' not in page
    assert page.count(f"Deployment #{deployment.id} queued") == 1
    assert f"Deployment #{deployment.id} queued" in _status_text(page)
    deployment.status, deployment.step = "building", "clone"
    db.session.commit()
    fragment = client.get(f"/deployments/{deployment.id}", headers={"HX-Request": "true"})
    assert f"Deployment #{deployment.id} queued" not in fragment.get_data(as_text=True)


def test_a_building_deployment_asked_to_cancel_says_cancelling_once(logged_in):
    client, user = logged_in
    app_row = make_app(make_project(team_of(user)), "web")
    deployment = Deployment(application_id=app_row.id, status="building", step="build")
    db.session.add(deployment)
    db.session.commit()
    assert _post(client, f"/deployments/{deployment.id}/cancel").status_code == 303
    try:
        page = client.get(f"/deployments/{deployment.id}").get_data(as_text=True)
        assert 'class="flash' not in page
        assert _status_text(page).count("Cancelling") == 1
        assert "Cancelling" in client.get(
            f"/deployments/{deployment.id}", headers={"HX-Request": "true"}
        ).get_data(as_text=True)
    finally:
        redis.client.delete(control.CANCEL_KEY.format(deployment.id))


def test_final_status_fragment_has_no_live_hook(logged_in):
    """Nothing polls a deployment's status; once it is final, neither the status
    fragment nor the page carries anything that would fetch or follow it again."""
    client, user = logged_in
    app_row = make_app(make_project(team_of(user)), "web")
    deployment = Deployment(application_id=app_row.id, status="failed", error="boom <b>")
    db.session.add(deployment)
    db.session.commit()
    fragment = client.get(f"/deployments/{deployment.id}", headers={"HX-Request": "true"})
    body = fragment.get_data(as_text=True)
    assert "hx-trigger" not in body and "boom &lt;b&gt;" in body
    page = client.get(f"/deployments/{deployment.id}").get_data(as_text=True)
    assert "data-live-log" not in page  # nothing left to follow


def test_cancel_and_rollback_routes(logged_in):
    client, user = logged_in
    app_row = make_app(make_project(team_of(user)), "web")
    good = Deployment(application_id=app_row.id, status="replaced", image_tag="slipway/x:d1")
    db.session.add(good)
    db.session.commit()
    queued = control.start_deploy(app_row, trigger="manual")
    assert _post(client, f"/deployments/{queued.id}/cancel").status_code == 303
    db.session.expire_all()
    assert db.session.get(Deployment, queued.id).status == "cancelled"
    response = _post(client, f"/deployments/{good.id}/rollback")
    assert response.status_code == 303
    new = db.session.scalar(select(Deployment).order_by(Deployment.id.desc()))
    assert (new.trigger, new.rollback_of_id, new.image_tag) == ("rollback", good.id, "slipway/x:d1")


def test_viewer_cannot_deploy_cancel_or_roll_back(client, auth):
    team = make_team()
    make_user(team, Role.owner)
    viewer = make_user(team, Role.viewer)
    app_row = make_app(make_project(team), "web")
    good = Deployment(application_id=app_row.id, status="running", image_tag="slipway/x:d1")
    db.session.add(good)
    db.session.commit()
    auth.login(viewer)
    assert "Deploy</button>" not in client.get(f"/apps/{app_row.id}").get_data(as_text=True)
    assert _post(client, f"/apps/{app_row.id}/deploy").status_code == 403
    assert _post(client, f"/deployments/{good.id}/rollback").status_code == 403
    assert db.session.scalar(select(func.count(Deployment.id))) == 1
    assert queue("deploy").count == 0


def test_another_teams_app_and_deployments_are_404(logged_in):
    client, _ = logged_in
    foreign = make_app(make_project(make_team()), "hidden")
    theirs = Deployment(application_id=foreign.id, status="running", image_tag="t",
                        commit_message="secret plans")  # fmt: skip
    db.session.add(theirs)
    db.session.commit()
    for path in (f"/apps/{foreign.id}/deployments", f"/deployments/{theirs.id}",
                 f"/deployments/{theirs.id}/log"):  # fmt: skip
        response = client.get(path)
        assert response.status_code == 404 and "secret plans" not in response.get_data(True)
    for path in (f"/apps/{foreign.id}/deploy", f"/deployments/{theirs.id}/rollback",
                 f"/deployments/{theirs.id}/cancel"):  # fmt: skip
        assert _post(client, path).status_code == 404
    assert db.session.scalar(select(func.count(Deployment.id))) == 1
    assert queue("deploy").count == 0


# ---- hostile values that reached the database anyway ----------------------

PWNED = Path("/tmp/slipway-pwned")


@pytest.fixture
def no_pwned():
    for suffix in ("", "-1", "-2", "-3"):
        Path(f"{PWNED}{suffix}").unlink(missing_ok=True)
    yield
    leftovers = [p for p in Path("/tmp").glob("slipway-pwned*")]
    assert leftovers == [], "a hostile value ran a command"


@pytest.mark.parametrize(
    "fields",
    [
        {"git_branch": f"--upload-pack=touch {PWNED}"},
        {"git_branch": f"main;touch {PWNED}-1"},
        {"git_url": f"ext::sh -c touch% {PWNED}-2"},
        {"git_url": f"--upload-pack=touch {PWNED}-3"},
        {"git_url": "file:///etc"},
        {"dockerfile_path": "../../../../etc/passwd"},
        {"build_context": "/"},
        {"health_check_path": "/$(touch /tmp/slipway-pwned)"},
    ],
)
def test_hostile_values_in_the_database_cannot_run_commands(app, infra, repo, no_pwned, fields):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, **fields)
    deployment = _deploy(app_row)
    assert deployment.status == "failed"
    assert deployment.error
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.app={app_row.id}"))
    client.close()


def test_hostile_app_name_in_the_database_never_reaches_the_proxy(app, infra, repo, no_pwned):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    app_row.name = "web`) || Host(`evil.example"
    app_row.address = f"{app_row.name}.{app_row.project.name}"  # the route's host comes from it
    db.session.commit()
    deployment = _deploy(app_row)
    assert deployment.status == "failed"
    route = Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_row.id}.yml")
    assert not route.exists()


def test_git_url_resolving_to_an_internal_address_is_refused_at_use(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app.config["OUTBOUND_ALLOWED_HOSTS"] = ()  # the loopback server is no longer allowed
    deployment = _deploy(_web_app(repo))
    assert deployment.status == "failed"
    assert "internal address" in deployment.error or "https://" in deployment.error


@pytest.mark.parametrize(
    ("link", "target", "field", "value"),
    [
        ("Dockerfile.evil", "/etc/passwd", "dockerfile_path", "Dockerfile.evil"),
        ("ctx", "/", "build_context", "ctx"),
        ("up", "..", "build_context", "up"),
    ],
)
def test_symlinks_cannot_leave_the_checkout(app, infra, repo, link, target, field, value):
    repo.commit(lab.web_files("v1"), "v1")
    repo.symlink(link, target, "a symlink out")
    deployment = _deploy(_web_app(repo, **{field: value}))
    assert deployment.status == "failed"
    assert "outside the repository" in deployment.error


def test_secret_never_in_job_payload_or_proxy_file(app, infra, repo):
    canary = "canary-payload-31337"
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "TOKEN", canary, secret=True)
    db.session.commit()
    deployment = control.start_deploy(app_row, trigger="manual")
    raw = b"".join(v for v in redis.client.hgetall(f"rq:job:{deployment.rq_job_id}").values())
    assert canary.encode() not in raw
    jobs.run_deployment(deployment.id)
    for path in Path(infra["config"]["PROXY_DIR"]).rglob("*"):
        if path.is_file():
            assert canary not in path.read_text(errors="replace")
    assert os.environ.get("TOKEN") != canary


def _worker_env(config: dict) -> dict:
    env = dict(os.environ)
    env.update({
        "SLIPWAY_DATABASE_URL": config["SQLALCHEMY_DATABASE_URI"],
        "SLIPWAY_REDIS_URL": config["REDIS_URL"],
        "SLIPWAY_DATA_DIR": config["DATA_DIR"],
        "SLIPWAY_SECRET_KEY": config["SECRET_KEY"],
        "SLIPWAY_ENCRYPTION_KEYS": config["ENCRYPTION_KEYS_TEXT"],
        "SLIPWAY_PROXY_DIR": config["PROXY_DIR"],
        "SLIPWAY_BUILDS_DIR": config["BUILDS_DIR"],
        "SLIPWAY_HTTP_PORT": str(config["HTTP_PORT"]),
        "SLIPWAY_HTTPS_PORT": str(config["HTTPS_PORT"]),
        "SLIPWAY_PROXY_API_PORT": str(config["PROXY_API_PORT"]),
        "SLIPWAY_GIT_ALLOWED_HOSTS": ",".join(config["GIT_ALLOWED_HOSTS"]),
        "SLIPWAY_WATCH_SECONDS": "1",
        "SLIPWAY_HEALTH_TIMEOUT_SECONDS": "120",
        "SLIPWAY_DRAIN_SECONDS": "0.5",
    })  # fmt: skip
    return env


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def test_worker_killed_mid_deploy_is_reaped_and_old_version_keeps_serving(app, infra, repo):
    import signal
    import subprocess
    import sys
    import time

    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, health_check_path="/index.html")
    assert _deploy(app_row).status == "running"
    # v2 never answers on its health path, so the run sits in the health gate.
    unhealthy = (
        f'FROM {lab.BASE_IMAGE}\nCMD ["/bin/busybox", "httpd", "-f", "-p", "8000", "-h", "/etc"]\n'
    )
    repo.commit({"Dockerfile": unhealthy}, "v2 unhealthy")

    # The worker adopts the engine's unlabelled objects as it starts: with a claim of its own
    # here, so that this test never takes them from the installation it shares the engine with.
    claim = f"slipway-test-claim-{uuid.uuid4().hex}"
    boot = (
        "import sys, worker; from app.runtime import installation; "
        f"installation.CLAIM_VOLUME = {claim!r}; "
        "sys.argv = ['worker.py', '--queues', 'deploy']; worker.main()"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", boot],
        env=_worker_env(infra["config"]), start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deployment = control.start_deploy(app_row, trigger="manual")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            db.session.expire_all()
            row = db.session.get(Deployment, deployment.id)
            if row.step == "health":
                break
            time.sleep(0.2)
        assert row.step == "health", row.status
        client = docker.from_env()
        label = ours(f"slipway.deployment={deployment.id}")
        assert client.containers.list(all=True, filters=label)  # half-started
        # The worker and its work horse (RQ puts the horse in its own session).
        for pid in [worker.pid, *_children(worker.pid)]:
            os.kill(pid, signal.SIGKILL)
        worker.wait(timeout=10)
        killed_at = time.monotonic()
        while time.monotonic() - killed_at < 60:
            if jobs.reap_lost_deployments():
                break
            time.sleep(1)
        reaped_after = time.monotonic() - killed_at
        db.session.expire_all()
        row = db.session.get(Deployment, deployment.id)
        assert row.status == "failed" and "worker lost" in row.error
        assert reaped_after < 60
        assert not client.containers.list(all=True, filters=label)  # cleaned up
        client.close()
        assert _through_traefik(infra, app_row).text == "hello from v1\n"
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
        engine = docker.from_env()
        try:
            claimed = engine.volumes.get(claim)
            claimed.remove()
        finally:
            engine.close()
    mine = db.session.scalar(select(Installation.installation_id))
    assert claimed.attrs["Labels"]["slipway.installation"] == mine  # the worker's start adopted
    # The next deploy works.
    repo.commit(lab.web_files("v3"), "v3")
    assert _deploy(app_row).status == "running"
    assert _through_traefik(infra, app_row).text == "hello from v3\n"
