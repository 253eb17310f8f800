"""The deploy pipeline against the real Docker engine, real Traefik and a real git server."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import docker
import requests
from sqlalchemy import select

from app import jobs
from app.deploys import control
from app.extensions import db
from app.models import Deployment, Installation
from app.projects import envvars
from app.proxy import traefik
from app.runtime import containers
from tests import lab
from tests.deploys.conftest import (
    _deploy,
    _host,
    _log,
    _names,
    _through_traefik,
    _web_app,
    ours,
)
from tests.factories import make_app, make_project, make_team

CANARY = "canary-5c1d-build-secret"


def test_git_app_builds_deploys_and_answers_through_traefik(app, infra, repo):
    sha = repo.commit(lab.web_files("v1"), "first version")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "GREETING", "hi", secret=False)
    envvars.set_var(app_row, "API_TOKEN", CANARY, secret=True)
    db.session.commit()

    deployment = _deploy(app_row)

    assert deployment.status == "running", deployment.error
    assert (deployment.commit_sha, deployment.commit_message) == (sha, "first version")
    assert deployment.commit_author == "Test Author"
    installation_id = db.session.scalar(select(Installation.installation_id))
    assert re.fullmatch(r"[0-9a-f]{12}", installation_id)
    assert deployment.image_tag == f"slipway/{installation_id}/app-{app_row.id}:d{deployment.id}"
    assert deployment.started_at and deployment.finished_at
    response = _through_traefik(infra, app_row)
    assert response.status_code == 200 and response.text == "hello from v1\n"
    log = _log(deployment.id)
    for step in ("── clone", "── build", "── start", "── health", "── switch"):
        assert step in log
    assert "Step 1/" in log or "FROM" in log  # the docker build output itself

    client = docker.from_env()
    ours = [f"slipway.deployment={deployment.id}", f"slipway.installation={installation_id}"]
    (container,) = client.containers.list(filters={"label": ours})
    host = container.attrs["HostConfig"]
    assert host["Privileged"] is False and not host.get("Binds") and not host.get("CapAdd")
    assert not host.get("Devices")
    assert host["NetworkMode"] == f"slipway-{installation_id}-p{app_row.project_id}"
    assert host["RestartPolicy"]["Name"] == "unless-stopped"
    assert container.labels["slipway.installation"] == installation_id
    assert container.name.startswith(f"slipway-{installation_id}-a{app_row.id}-")
    (image,) = client.images.list(filters={"label": ours})
    assert image.labels["slipway.installation"] == installation_id
    labels = {"slipway.app", "slipway.project", "slipway.deployment", "slipway.replica",
              "slipway.installation"}  # fmt: skip
    assert set(container.labels) <= labels
    assert container.labels["slipway.project"] == str(app_row.project_id)
    env = dict(item.split("=", 1) for item in container.attrs["Config"]["Env"])
    assert env["API_TOKEN"] == CANARY and env["GREETING"] == "hi" and env["PORT"] == "8000"
    client.close()
    route = Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_row.id}.yml").read_text()
    assert CANARY not in route


def test_redeploy_swaps_versions_without_a_failed_request(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = _deploy(app_row)
    assert first.status == "running", first.error
    repo.commit(lab.web_files("v2"), "v2")

    failures, bodies, stop = [], set(), threading.Event()
    host = _host(app_row)  # the thread has no database session

    def hammer():
        while not stop.is_set():
            try:
                r = _through_traefik(infra, host)
                bodies.add(r.text)
                if r.status_code != 200:
                    failures.append(r.status_code)
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.01)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        second = _deploy(app_row)
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join()
    assert second.status == "running", second.error
    assert failures == []
    assert bodies == {"hello from v1\n", "hello from v2\n"}
    assert _through_traefik(infra, app_row).text == "hello from v2\n"
    db.session.expire_all()
    assert db.session.get(Deployment, first.id).status == "replaced"
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.deployment={first.id}"))
    client.close()


def test_build_failure_keeps_the_old_version_serving(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    assert _deploy(app_row).status == "running"
    repo.commit(lab.web_files("v2", extra_run="/bin/busybox false"), "broken build")
    failed = _deploy(app_row)
    assert failed.status == "failed"
    assert "build failed" in failed.error
    assert _through_traefik(infra, app_row).text == "hello from v1\n"


def test_crash_looping_container_fails_and_old_version_serves(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    assert _deploy(app_row).status == "running"
    files = lab.web_files("v2")
    files["Dockerfile"] = (
        f'FROM {lab.BASE_IMAGE}\nCMD ["/bin/busybox", "sh", "-c", '
        '"echo boom; echo missing DATABASE_URL; exit 3"]\n'
    )
    repo.commit(files, "crashes")
    failed = _deploy(app_row)
    assert failed.status == "failed"
    # The first exit's code (not the 0 of a restarted run), and its last lines.
    assert re.search(r"r0 exited with code 3\b", failed.error), failed.error
    assert failed.error.endswith("its last output: boom ⏎ missing DATABASE_URL"), failed.error
    assert "boom" in _log(failed.id)  # the container's last words are in the log
    assert " at \n" not in _log(failed.id) + "\n"  # no empty address
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.deployment={failed.id}"))
    client.close()


def test_never_healthy_version_fails_after_the_health_timeout(app, infra, repo):
    app.config["HEALTH_TIMEOUT_SECONDS"] = 3.0
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, health_check_path="/healthz")  # httpd answers 404 there
    failed = _deploy(app_row)
    assert failed.status == "failed"
    assert "health check failed" in failed.error and "404" in failed.error
    assert _through_traefik(infra, app_row).status_code == 404  # Traefik: no route at all
    assert not Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_row.id}.yml").exists()


def test_a_version_that_never_answers_shows_its_own_last_output(app, infra, repo):
    """Listening on the wrong port: the failure ends with what the app printed, redacted."""
    app.config["HEALTH_TIMEOUT_SECONDS"] = 3.0
    files = lab.web_files("v1")
    files["Dockerfile"] = (
        f'FROM {lab.BASE_IMAGE}\nCOPY www /www\nCMD ["/bin/busybox", "sh", "-c", '
        '"echo token=$API_TOKEN; echo listening on 9999; '
        'exec /bin/busybox httpd -f -p 9999 -h /www"]\n'
    )
    repo.commit(files, "wrong port")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "API_TOKEN", CANARY, secret=True)
    db.session.commit()
    failed = _deploy(app_row)
    assert failed.status == "failed"
    assert "health check failed" in failed.error and "did not answer" in failed.error
    assert failed.error.endswith("its last output: token=•••••• ⏎ listening on 9999")
    assert CANARY not in failed.error and CANARY not in _log(failed.id)


def test_rollback_reuses_the_kept_image_without_a_build(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = _deploy(app_row)
    repo.commit(lab.web_files("v2"), "v2")
    assert _deploy(app_row).status == "running"
    back = control.rollback(first)
    jobs.run_deployment(back.id)
    db.session.expire_all()
    back = db.session.get(Deployment, back.id)
    assert back.status == "running", back.error
    assert (back.trigger, back.rollback_of_id, back.image_tag) == (
        "rollback",
        first.id,
        first.image_tag,
    )
    assert "── clone" not in _log(back.id) and "── build" not in _log(back.id)
    assert _through_traefik(infra, app_row).text == "hello from v1\n"


def test_only_the_last_five_successful_images_are_kept(app, infra, repo):
    app.config["KEEP_IMAGES"] = 2
    app_row = _web_app(repo)
    tags = []
    for n in range(3):
        repo.commit(lab.web_files(f"v{n}"), f"v{n}")
        tags.append(_deploy(app_row).image_tag)
    client = docker.from_env()
    kept = {t for image in client.images.list(filters=ours(f"slipway.app={app_row.id}"))
            for t in image.tags}  # fmt: skip
    client.close()
    assert kept == set(tags[1:])


def test_pruning_keeps_the_image_a_deployment_under_way_has_built(app, infra, repo, tmp_path):
    """The previous version's cleanup runs after the app's lock is released: the next
    deployment may be between its build and its start."""
    app.config["KEEP_IMAGES"] = 1
    app_row = _web_app(repo)
    repo.commit(lab.web_files("v0"), "v0")
    _deploy(app_row)
    building = Deployment(application_id=app_row.id, status="building", trigger="manual")
    db.session.add(building)
    db.session.commit()
    (tmp_path / "Dockerfile").write_text(f'FROM {lab.BASE_IMAGE}\nCMD ["true"]\n')
    built = containers.image_tag(app_row.id, building.id)
    containers.build_image(
        tmp_path, tmp_path / "Dockerfile", built, {containers.LABEL_APP: str(app_row.id)},
        on_line=lambda line: None, should_stop=lambda: False,
    )  # fmt: skip
    repo.commit(lab.web_files("v1"), "v1")
    latest = _deploy(app_row)  # retires v0 and prunes
    client = docker.from_env()
    kept = {t for image in client.images.list(filters=ours(f"slipway.app={app_row.id}"))
            for t in image.tags}  # fmt: skip
    client.close()
    assert kept == {latest.image_tag, built}
    building.status = "failed"
    db.session.commit()


def test_cancel_during_build_stops_it_and_changes_nothing(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    assert _deploy(app_row).status == "running"
    slow = f"/bin/busybox sleep 60 && echo {time.time()}"  # never a cached layer
    repo.commit(lab.web_files("v2", extra_run=slow), "slow build")
    deployment = control.start_deploy(app_row, trigger="manual")
    worker = threading.Thread(target=jobs.run_deployment, args=(deployment.id,))
    started = time.monotonic()
    worker.start()
    row = _wait_until_building(deployment.id)
    time.sleep(1.0)
    control.cancel(row)
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert time.monotonic() - started < 40  # the 60 s build did not run to its end
    db.session.expire_all()
    assert db.session.get(Deployment, deployment.id).status == "cancelled"
    assert _through_traefik(infra, app_row).text == "hello from v1\n"


def _wait_until_building(deployment_id: int, timeout: float = 20) -> Deployment:
    """The row once the deployment is in its build step (or as it is after ``timeout``)."""
    deadline = time.monotonic() + timeout
    while True:
        db.session.expire_all()
        row = db.session.get(Deployment, deployment_id)
        if (row.status == "building" and row.step == "build") or time.monotonic() > deadline:
            return row
        time.sleep(0.1)


def _visible(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def test_a_cancelled_deployment_says_so_once(app, infra, repo, client, auth):
    """Cancel from the page: once stopped, one note on the page (no flash, no red box)
    and one line in the log, not three messages."""
    from tests.conftest import csrf_token
    from tests.factories import make_user

    slow = f"/bin/busybox sleep 60 && echo {time.time()}"
    repo.commit(lab.web_files("v1", extra_run=slow), "slow build")
    app_row = _web_app(repo)
    auth.login(make_user(app_row.project.team))
    deployment = control.start_deploy(app_row, trigger="manual")
    worker = threading.Thread(target=jobs.run_deployment, args=(deployment.id,))
    worker.start()
    _wait_until_building(deployment.id)
    page = f"/deployments/{deployment.id}"
    response = client.post(f"{page}/cancel", data={"csrf_token": csrf_token(client, page)})
    assert response.status_code == 303
    worker.join(timeout=30)
    assert not worker.is_alive()
    done = client.get(page).get_data(as_text=True)
    head = done.split("Build log", 1)[0]
    assert 'class="flash' not in done and "error-box" not in done
    assert _visible(head).count("ancelled during") == 1, _visible(head)
    assert "Cancelled during build." in _visible(head)  # besides the badge and the step
    lines = _log(deployment.id).splitlines()
    assert [line for line in lines if "ancel" in line] == ["cancelled during build"]


def test_secret_values_printed_by_a_build_are_redacted(app, infra, repo):
    repo.commit(lab.web_files("v1", extra_run=f"/bin/busybox echo token={CANARY}"), "leaky")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "API_TOKEN", CANARY, secret=True)
    db.session.commit()
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    log = _log(deployment.id)
    assert "token=••••••" in log and CANARY not in log


def test_image_app_deploys_a_local_image(app, infra, tmp_path):
    """An image the host has (built outside Slipway, no Slipway labels) runs as is."""
    for name, text in lab.web_files("image").items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    tag = f"slipway-test-local:i{next(_names)}"
    client = docker.from_env()
    image = client.images.build(path=str(tmp_path), tag=tag, rm=True)[0]
    try:
        project = make_project(make_team(), f"img{next(_names)}")
        image_app = make_app(project, "web", source_type="image", image=tag,
                             git_url=None, git_branch=None, container_port=8000)  # fmt: skip
        deployment = _deploy(image_app)
        assert deployment.status == "running", deployment.error
        assert (deployment.image_tag, deployment.image_id) == (tag, image.id)
        assert _through_traefik(infra, image_app).text == "hello from image\n"
    finally:
        for container in client.containers.list(all=True, filters={"ancestor": image.id}):
            container.remove(force=True)
        client.images.remove(image.id, force=True)
        client.close()


def test_delete_app_removes_containers_route_and_images(app, infra, repo):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    assert _deploy(app_row).status == "running"
    app_id = app_row.id
    db.session.delete(app_row)
    db.session.commit()
    jobs.remove_app_resources(app_id)
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.app={app_id}"))
    assert not client.images.list(filters=ours(f"slipway.app={app_id}"))
    client.close()
    assert not Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_id}.yml").exists()


def test_a_switch_traefik_never_loads_puts_the_old_version_back(app, infra, repo, monkeypatch):
    """The route file points at the old version's endpoints again; the new version is gone."""
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = _deploy(app_row)
    assert first.status == "running", first.error
    route = Path(infra["config"]["PROXY_DIR"], "dynamic", f"app-{app_row.id}.yml")
    before = route.read_text()

    def never_loads(app_id, servers, timeout=15):
        raise traefik.ProxyError("Traefik did not load the new route in time")

    monkeypatch.setattr(traefik, "wait_until_served", never_loads)
    repo.commit(lab.web_files("v2"), "v2")
    second = _deploy(app_row)
    assert second.status == "failed" and "did not load" in second.error
    assert route.read_text() == before
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.deployment={second.id}"))
    client.close()


def test_a_failed_clone_says_what_git_said(app, infra, repo):
    """A branch the repository does not have: git's own message, not its exit code."""
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, git_branch="no-such-branch")
    failed = _deploy(app_row)
    assert failed.status == "failed"
    assert failed.error.startswith("clone failed: "), failed.error
    assert "Remote branch no-such-branch not found" in failed.error, failed.error
    assert "exit 128" not in failed.error
