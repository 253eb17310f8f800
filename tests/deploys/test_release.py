"""Switch at once, the watch window and its revert, and env/settings as part of a release,
against the real engine, Traefik and git server."""

from __future__ import annotations

import threading
import time

import docker
import requests

from app import jobs
from app.deploys import control
from app.extensions import db
from app.models import Deployment
from app.projects import envvars
from tests import lab
from tests.conftest import csrf_token
from tests.deploys.conftest import _deploy, _host, _log, _through_traefik, _web_app, ours
from tests.factories import make_user

ENV_PAGE = (
    f'FROM {lab.BASE_IMAGE}\nCOPY www /www\nCMD ["/bin/busybox", "sh", "-c", '
    '"echo greeting=$GREETING > /www/env.txt; exec /bin/busybox httpd -f -p 8000 -h /www"]\n'
)


def _env_files(version: str) -> dict[str, str]:
    return lab.web_files(version) | {"Dockerfile": ENV_PAGE}


def _run(deployment: Deployment) -> Deployment:
    jobs.run_deployment(deployment.id)
    db.session.expire_all()
    return db.session.get(Deployment, deployment.id)


def test_a_version_crashing_after_the_switch_is_reverted_to_the_old_one(app, infra, repo):
    app.config["WATCH_SECONDS"] = 12.0
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = _deploy(app_row)
    assert first.status == "running", first.error
    files = lab.web_files("v2")
    files["Dockerfile"] = (
        f'FROM {lab.BASE_IMAGE}\nCOPY www /www\nCMD ["/bin/busybox", "sh", "-c", '
        '"/bin/busybox httpd -p 8000 -h /www; sleep 5; echo dying; exit 3"]\n'
    )
    repo.commit(files, "crashes 5 s in")
    host = _host(app_row)
    seen, stop = [], threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append((time.monotonic(), _through_traefik(infra, host).text))
            except requests.RequestException:
                seen.append((time.monotonic(), "error"))
            time.sleep(0.05)

    thread = threading.Thread(target=watch)
    thread.start()
    try:
        second = _deploy(app_row)
    finally:
        stop.set()
        thread.join()
    assert second.status == "failed"
    assert second.error.startswith("reverted: ") and "after the switch" in second.error
    assert "code 3" in second.error and "dying" in second.error, second.error
    assert "hello from v2\n" in {text for _, text in seen}  # it did switch
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert "routing back to deployment #" in _log(second.id)
    db.session.expire_all()
    assert db.session.get(Deployment, first.id).status == "running"
    client = docker.from_env()
    assert not client.containers.list(all=True, filters=ours(f"slipway.deployment={second.id}"))
    client.close()


def test_traffic_switches_at_the_first_2xx_without_a_settle_period(app, infra, repo):
    app.config["WATCH_SECONDS"] = 0.0
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    log = _log(deployment.id)
    assert "settle" not in log
    lines = log.splitlines()
    answered = next(i for i, line in enumerate(lines) if "answered 200" in line)
    assert lines[answered + 1] == "── switch", lines[answered:]


def test_a_newer_queued_deployment_ends_the_watch_window_early(app, infra, repo):
    app.config["WATCH_SECONDS"] = 60.0
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    first = control.start_deploy(app_row, trigger="manual")
    worker = threading.Thread(target=jobs.run_deployment, args=(first.id,))
    started = time.monotonic()
    worker.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        db.session.expire_all()
        if db.session.get(Deployment, first.id).step == "watch":
            break
        time.sleep(0.1)
    control.start_deploy(app_row, trigger="manual")
    worker.join(timeout=30)
    assert not worker.is_alive() and time.monotonic() - started < 55
    db.session.expire_all()
    row = db.session.get(Deployment, first.id)
    assert row.status == "running", row.error
    assert "is queued: accepting this version now" in _log(first.id)


def test_apply_changes_the_env_with_no_failed_request_and_clears_not_applied(
    app, infra, repo, client, auth
):
    repo.commit(_env_files("v1"), "v1")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "GREETING", "hello", secret=False)
    db.session.commit()
    first = _deploy(app_row)
    assert first.status == "running", first.error
    auth.login(make_user(app_row.project.team))
    page = f"/apps/{app_row.id}"
    assert "Not applied yet" not in client.get(page).text
    envvars.set_var(app_row, "GREETING", "bonjour", secret=False)
    db.session.commit()
    assert "Not applied yet" in client.get(page).text

    failures, stop, host = [], threading.Event(), _host(app_row)

    def hammer():
        while not stop.is_set():
            try:
                r = _through_traefik(infra, host, "/env.txt")
                if r.status_code != 200:
                    failures.append(r.status_code)
            except requests.RequestException as exc:
                failures.append(repr(exc))
            time.sleep(0.01)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        response = client.post(f"{page}/apply", data={"csrf_token": csrf_token(client, page)})
        assert response.status_code == 303
        applied = db.session.scalar(db.select(Deployment).order_by(Deployment.id.desc()).limit(1))
        assert (applied.trigger, applied.image_id) == ("apply", first.image_id)  # at queue
        applied = _run(applied)
    finally:
        stop.set()
        thread.join()
    assert applied.status == "running", applied.error
    assert failures == []
    assert "── clone" not in _log(applied.id) and "── build" not in _log(applied.id)
    assert _through_traefik(infra, app_row, "/env.txt").text == "greeting=bonjour\n"
    assert "Not applied yet" not in client.get(page).text


def test_rollback_restores_the_old_env_or_keeps_todays(app, infra, repo):
    repo.commit(_env_files("v1"), "v1")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "GREETING", "old", secret=False)
    db.session.commit()
    first = _deploy(app_row)
    envvars.set_var(app_row, "GREETING", "new", secret=False)
    db.session.commit()
    assert _run(control.restart(app_row)).status == "running"
    assert _through_traefik(infra, app_row, "/env.txt").text == "greeting=new\n"

    back = _run(control.rollback(first))
    assert back.status == "running", back.error
    assert back.env_source == "restored"
    assert _through_traefik(infra, app_row, "/env.txt").text == "greeting=old\n"
    assert f"with the env and settings deployment #{first.id} ran with" in _log(back.id)
    assert control.not_applied(app_row, back) == ["environment variables"]

    kept = _run(control.rollback(first, keep_env=True))
    assert kept.status == "running", kept.error
    assert kept.env_source == "kept"
    assert _through_traefik(infra, app_row, "/env.txt").text == "greeting=new\n"
