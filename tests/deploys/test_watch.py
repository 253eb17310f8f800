"""The runtime watcher against the real engine and Traefik: what serves an app, and what
happens when a replica dies, is stopped, removed, or restarts in a loop."""

from __future__ import annotations

import threading
import time

import docker
import pytest
import requests
from sqlalchemy import select

from app import crypto, notify
from app.deploys import health, routing
from app.extensions import db
from app.models import Application, NotificationChannel
from app.projects import envvars
from app.proxy import traefik
from app.runtime import watch
from tests import lab
from tests.backups.conftest import work_notifications
from tests.backups.test_notify import Hooks
from tests.deploys.conftest import _deploy, _host, _through_traefik, _web_app, ours
from tests.factories import make_user

# Serves until /tmp/crash appears, then exits 3; every restart after that exits at once.
CRASHING = (
    'CMD ["/bin/sh", "-c", "if [ -e /tmp/up ]; then echo crashed-again; exit 3; fi; '
    "touch /tmp/up; /bin/busybox httpd -p 8000 -h /www; "
    'while [ ! -e /tmp/crash ]; do sleep 0.1; done; exit 3"]'
)


@pytest.fixture
def watcher(app):
    started = watch.Watcher(app, reconcile_seconds=15).start()
    assert started.connected.wait(10), "the watcher did not connect to the engine"
    yield started
    started.stop()


@pytest.fixture
def hooks():
    server = Hooks()
    yield server
    server.server.shutdown()


def _fresh(app_id: int) -> Application:
    db.session.rollback()  # a new read: the watcher writes from its own session
    db.session.expire_all()
    return db.session.get(Application, app_id)


def _wait_health(app_id: int, wanted: str, within: float) -> float:
    """Seconds until the app's stored health is ``wanted``; fails after ``within``."""
    start = time.monotonic()
    while time.monotonic() - start < within:
        if _fresh(app_id).health == wanted:
            return time.monotonic() - start
        time.sleep(0.05)
    found = _fresh(app_id)
    raise AssertionError(f"health is {found.health!r}, not {wanted!r}: {found.health_detail}")


def _notified(hooks, count: int, within: float = 5) -> list[str]:
    """Deliver the notifications the watcher enqueued (just after it stored the health)."""
    deadline = time.monotonic() + within
    while len(hooks.received) < count and time.monotonic() < deadline:
        work_notifications()
        time.sleep(0.05)
    return [h["event"] for h in hooks.received]


def _wait_served(app_id: int, wanted: set[str], within: float = 2) -> None:
    """Traefik serves exactly ``wanted`` for the app (it loads a new file within ~0.2 s)."""
    deadline = time.monotonic() + within
    while traefik.served_by(app_id) != wanted:
        assert time.monotonic() < deadline, f"Traefik serves {traefik.served_by(app_id)}"
        time.sleep(0.05)


def _container(deployment_id: int):
    client = docker.from_env()
    (container,) = client.containers.list(
        all=True, filters=ours(f"slipway.deployment={deployment_id}")
    )
    return client, container


def _running_app(repo, **fields):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo, **fields)
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    return app_row, deployment


def _channel(team_id: int, url: str) -> None:
    db.session.add(
        NotificationChannel(
            team_id=team_id, name="ops", kind="webhook",
            events=["app.down", "app.recovered", "app.crash_looping"],
            secret=crypto.encrypt(url, context=notify.SECRET_CONTEXT), settings={},
        )
    )  # fmt: skip
    db.session.commit()


@pytest.mark.parametrize("how", ["kill", "stop", "remove"])
def test_a_serving_replica_that_dies_is_down_within_two_seconds_and_unrouted(
    app, infra, repo, watcher, how
):
    app_row, deployment = _running_app(repo)
    app_id = app_row.id
    assert _fresh(app_id).routed_deployment_id == deployment.id
    _wait_health(app_id, "up", 5)
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    client, container = _container(deployment.id)

    if how == "kill":
        container.kill()
    elif how == "stop":
        container.stop(timeout=1)  # busybox httpd as PID 1 ignores SIGTERM: SIGKILL after 1 s
    else:
        container.remove(force=True)
    _wait_health(app_id, "down", 2)  # from the moment it is dead (or gone)
    _wait_served(app_id, set())
    answer = _through_traefik(infra, app_row)
    assert answer.status_code == 503, answer.text
    replica = _settled_replica(app_id)
    summary = _fresh(app_id).health_detail["summary"]
    if how == "remove":
        assert replica["state"] == "gone" and "was removed" in summary
    else:
        assert replica["state"] == "exited" and replica["exit_code"] == 137
        assert "exited with code 137" in summary
    client.close()


def _settled_replica(app_id: int, within: float = 2) -> dict:
    """The one replica's stored facts once its stop or removal has finished (the engine
    shows "removing" between ``rm -f`` and the container's destroy event)."""
    deadline = time.monotonic() + within
    while True:
        (replica,) = health.view(_fresh(app_id))["replicas"]
        if replica["state"] not in ("stopping", "removing") or time.monotonic() > deadline:
            return replica
        time.sleep(0.05)


def test_a_stopped_apps_address_given_to_another_container_never_serves_its_host(
    app, infra, repo, watcher
):
    """Docker hands the freed address to the next container on the network: the app's
    host answers 503 throughout, never the other container's pages."""
    app_row, deployment = _running_app(repo)
    host = _host(app_row)
    _wait_health(app_row.id, "up", 5)
    client, container = _container(deployment.id)
    network = f"slipway-{container.labels['slipway.installation']}-p{app_row.project_id}"
    address = container.attrs["NetworkSettings"]["Networks"][network]["IPAddress"]

    seen: list[tuple[int, str]] = []
    done = threading.Event()

    def hammer():
        while not done.is_set():
            try:
                r = _through_traefik(infra, host)
                seen.append((r.status_code, r.text))
            except requests.RequestException as exc:
                seen.append((0, str(exc)))

    thread = threading.Thread(target=hammer)
    thread.start()
    other = None
    try:
        time.sleep(0.3)
        container.stop(timeout=1)
        other = client.containers.run(
            lab.BASE_IMAGE,
            ["/bin/sh", "-c", "echo other-app-page > /www/index.html; "
             "exec /bin/busybox httpd -f -p 8000 -h /www"],
            detach=True, network=network, labels={"slipway-test": "intruder"},
        )  # fmt: skip
        other.reload()
        assert other.attrs["NetworkSettings"]["Networks"][network]["IPAddress"] == address
        # The intruder answers at the address the app had (so routing there would show it).
        deadline = time.monotonic() + 5
        while "other-app-page" not in _wget(client, network, address):
            assert time.monotonic() < deadline, "the intruder never answered"
            time.sleep(0.1)
        time.sleep(1.5)
    finally:
        done.set()
        thread.join()
        if other is not None:
            other.remove(force=True)
        client.close()
    assert seen and not [s for s in seen if "other-app-page" in s[1]]
    assert seen[-1][0] == 503
    assert _fresh(app_row.id).health == "down"


def _wget(client, network: str, address: str) -> str:
    out = client.containers.run(
        lab.BASE_IMAGE, ["/bin/busybox", "wget", "-q", "-O", "-", f"http://{address}:8000/"],
        network=network, remove=True,
    )  # fmt: skip
    return out.decode()


def test_down_is_notified_and_up_again_after_docker_start_is_recovered(
    app, infra, repo, watcher, hooks
):
    app_row, deployment = _running_app(repo)
    app_id, name = app_row.id, app_row.name
    _channel(app_row.project.team_id, hooks.url)
    _wait_health(app_id, "up", 5)
    client, container = _container(deployment.id)

    container.kill()
    _wait_health(app_id, "down", 2)
    assert _notified(hooks, 1) == ["app.down"]
    (down,) = hooks.received
    assert down["event"] == "app.down"
    assert name in down["subject"] and "exited with code 137" in down["text"]

    container.start()  # it comes back, maybe at another address: re-read, verified
    _wait_health(app_id, "up", 2)
    container.reload()
    networks = container.attrs["NetworkSettings"]["Networks"]
    _wait_served(app_id, {f"http://{v['IPAddress']}:8000" for v in networks.values()})
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert _notified(hooks, 2) == ["app.down", "app.recovered"]
    client.close()


def test_a_replica_that_keeps_crashing_is_crash_looping_and_notified(
    app, infra, repo, watcher, hooks
):
    """It passes the health gate, then every restart exits at once (Docker restarts it
    with its back-off: 0.1 s, 0.2 s, 0.4 s, …)."""
    files = lab.web_files("v1")
    files["Dockerfile"] = "\n".join(
        CRASHING if line.startswith("CMD") else line for line in files["Dockerfile"].splitlines()
    )
    repo.commit(files, "crashes after a restart")
    app_row = _web_app(repo)
    _channel(app_row.project.team_id, hooks.url)
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    _wait_health(app_row.id, "up", 5)
    client, container = _container(deployment.id)
    container.exec_run(["/bin/busybox", "touch", "/tmp/crash"])  # the first run ends: code 3
    _wait_health(app_row.id, "crash-looping", 10)
    found = _fresh(app_row.id)
    (replica,) = health.view(found)["replicas"]
    assert replica["restarts"] >= health.CRASH_LOOP_RESTARTS
    assert "crashed-again" in replica["lines"]
    assert "restarted" in found.health_detail["summary"]
    _wait_served(app_row.id, set())
    assert _notified(hooks, 1) == ["app.crash_looping"]
    client.close()


def test_two_replicas_one_removed_is_degraded_and_served_by_the_other(app, infra, repo, watcher):
    app_row, deployment = _running_app(repo, replicas=2)
    _wait_health(app_row.id, "up", 5)
    client = docker.from_env()
    replicas = client.containers.list(filters=ours(f"slipway.deployment={deployment.id}"))
    assert len(replicas) == 2
    last = max(replicas, key=lambda c: c.labels["slipway.replica"])
    last.remove(force=True)
    _wait_health(app_row.id, "degraded", 2)
    (left,) = (c for c in replicas if c.id != last.id)
    left.reload()
    networks = left.attrs["NetworkSettings"]["Networks"]
    _wait_served(app_row.id, {f"http://{v['IPAddress']}:8000" for v in networks.values()})
    assert _through_traefik(infra, app_row).text == "hello from v1\n"
    assert "1 of 2 replica(s) serving" in _fresh(app_row.id).health_detail["summary"]
    client.close()


def test_a_route_write_keeps_the_routed_deployment_read_inside_the_lock(app, infra, repo):
    """refresh() routes what is recorded as routed now, not what its caller last saw."""
    app_row, first = _running_app(repo)
    repo.commit(lab.web_files("v2"), "v2")
    second = _deploy(app_row)
    assert second.status == "running", second.error
    assert _fresh(app_row.id).routed_deployment_id == second.id
    stale = db.session.get(Application, app_row.id)
    found, live = routing.refresh(stale)
    assert found.deployment_id == second.id
    assert _through_traefik(infra, app_row).text == "hello from v2\n"
    assert {f.id for f in live} == {c for c in _ids(second.id)}


def _ids(deployment_id: int) -> set[str]:
    client = docker.from_env()
    try:
        return {
            c.id
            for c in client.containers.list(filters=ours(f"slipway.deployment={deployment_id}"))
        }
    finally:
        client.close()


def test_an_app_deployed_before_routing_was_recorded_is_adopted(app, infra, repo):
    app_row, deployment = _running_app(repo)
    db.session.execute(
        Application.__table__.update()
        .where(Application.id == app_row.id)
        .values(routed_deployment_id=None, routed_replicas=None, routed_port=None)
    )
    db.session.commit()
    assert health.check(app_row.id) == "up"
    found = _fresh(app_row.id)
    assert (found.routed_deployment_id, found.routed_port) == (deployment.id, 8000)
    assert db.session.scalar(select(Application.health).where(Application.id == app_row.id)) == "up"


SAYS_TOKEN = (
    'CMD ["/bin/sh", "-c", "echo booting with token=$API_TOKEN; '
    'exec /bin/busybox httpd -f -p 8000 -h /www"]'
)


def test_the_app_pages_show_health_and_why_it_is_down_with_secrets_hidden(
    app, infra, repo, watcher, client, auth
):
    files = lab.web_files("v1")
    files["Dockerfile"] = "\n".join(
        SAYS_TOKEN if line.startswith("CMD") else line for line in files["Dockerfile"].splitlines()
    )
    repo.commit(files, "prints its token")
    app_row = _web_app(repo)
    envvars.set_var(app_row, "API_TOKEN", "tok-9f2e-very-secret", secret=True)
    db.session.commit()
    deployment = _deploy(app_row)
    assert deployment.status == "running", deployment.error
    app_id, project_id = app_row.id, app_row.project_id
    user = make_user(team=app_row.project.team)
    _wait_health(app_id, "up", 5)
    auth.login(user)
    page = client.get(f"/apps/{app_id}").get_data(as_text=True)
    assert f'data-app-health="{app_id}"' in page and ">up</span>" in page
    assert 'id="app-health"' in page and "Health:" not in page  # nothing to explain

    _, container = _container(deployment.id)
    container.kill()
    _wait_health(app_id, "down", 2)
    page = client.get(f"/apps/{app_id}").get_data(as_text=True)
    assert ">down</span>" in page and "Health: down" in page
    assert "exit code 137" in page
    assert "booting with token=••••••" in page and "tok-9f2e-very-secret" not in page
    panel = client.get(f"/apps/{app_id}/health", headers={"HX-Request": "true"})
    assert panel.status_code == 200 and "exit code 137" in panel.get_data(as_text=True)
    for path in ("/", f"/projects/{project_id}", f"/apps/{app_id}/metrics", f"/apps/{app_id}/logs"):
        listed = client.get(path).get_data(as_text=True)
        assert f'data-app-health="{app_id}"' in listed and ">down</span>" in listed, path
