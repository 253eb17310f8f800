"""Watching a deploy live in Chromium: log lines arrive and badges turn without a reload.

The web server is gunicorn (as in production) with the real Docker engine; the
deploy itself runs the real pipeline (git server, ``docker build``, Traefik from
``tests/deploys``) in a thread of the test process, as the RQ worker would.
The tests after it need no Docker: they change rows and publish the status
events themselves (``app.deploys.livestatus``, as the pipeline does), on the shared server.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from pathlib import Path

import pytest
from playwright.sync_api import expect
from sqlalchemy import select

from app import create_app
from app.deploys import livestatus, pipeline
from app.extensions import db, redis
from app.live.sockets import SLOTS_KEY
from app.models import Application, Deployment, Project, User
from app.runtime import installation
from tests import lab
from tests.browser.conftest import log_in, seed, shot, start_server
from tests.deploys.conftest import _remove_slipway_resources, infra  # noqa: F401 (fixture)
from tests.factories import make_app, make_project, team_of
from tests.livekit import LiveServer, close

SLOW_BUILD = "for i in 1 2 3 4 5 6; do echo build-step-$i; sleep 0.4; done"
CMD = (
    '["/bin/sh", "-c", "i=0; while :; do i=$((i+1)); echo tick-$i; sleep 0.3; done & '
    'exec /bin/busybox httpd -f -p 8000 -h /www"]'
)


@pytest.fixture(scope="module")
def docker_server(base_config, tmp_path_factory):
    """A gunicorn that may read container logs (the shared one has no Docker)."""
    started = start_server(
        base_config,
        tmp_path_factory.mktemp("slipway-live-server"),
        {"SLIPWAY_DOCKER_HOST": "unix:///var/run/docker.sock"},
    )
    yield started
    started.stop()


def _files(version: str) -> dict[str, str]:
    # A nonce keeps the RUN step out of the engine's build cache (another run of
    # the suite may have built the same Dockerfile): its lines must be printed live.
    files = lab.web_files(version, extra_run=SLOW_BUILD + f" && echo {version} {uuid.uuid4()}")
    dockerfile = files["Dockerfile"].splitlines()
    files["Dockerfile"] = "\n".join(
        d if not d.startswith("CMD") else f"CMD {CMD}" for d in dockerfile
    )
    return files


def test_watch_a_deploy_then_follow_its_logs(open_page, docker_server, infra, app):  # noqa: F811
    repo = lab.Repo(infra["git"], "live-site", infra["root"] / "work-live")
    repo.commit(_files("v1"), "v1")
    seeded = seed()
    project = make_project(team_of_email(seeded.email), "watch")
    app_row = make_app(project, "web", git_url=repo.url, git_branch="main", health_check_path="/")
    app_id = app_row.id
    db.session.close()
    worker_app = create_app(infra["config"])

    page = open_page(docker_server)
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}")
    other = page.context.new_page()  # a second tab on the app page, never reloaded
    other.goto(f"/apps/{app_id}")
    expect(other.locator(f'[data-app-badge="{app_id}"]')).to_have_text("not deployed")
    other.evaluate("window.__notReloaded = true")
    dashboard = page.context.new_page()  # and a third on the dashboard's app list
    dashboard.goto("/")
    expect(dashboard.locator(f'[data-app-badge="{app_id}"]')).to_have_text("not deployed")

    with page.expect_navigation():
        page.get_by_role("button", name="Deploy").click()
    expect(page).to_have_url(re.compile(r"/deployments/\d+$"))
    dep_id = int(page.url.rsplit("/", 1)[1])
    page.evaluate("window.__notReloaded = true")
    expect(page.locator("#deployment-status .badge")).to_have_text("queued")
    expect(other.locator(f'[data-app-badge="{app_id}"]')).to_have_text("queued")

    def work() -> None:
        with worker_app.app_context():
            pipeline.run(dep_id)

    worker = threading.Thread(target=work)
    worker.start()
    try:
        log = page.locator("#build-log")
        expect(log).to_contain_text("build-step-2", timeout=60_000)
        expect(page.locator("#deployment-status .steps li.current")).to_have_text("build")
        shot(page, "deploy-watch-building")
        expect(log).to_contain_text("build-step-6", timeout=30_000)
        expect(page.locator("#deployment-status .badge")).to_have_text("running", timeout=60_000)
        expect(log).to_contain_text("running")
        assert page.evaluate("window.__notReloaded") is True
        expect(other.locator(f'[data-app-badge="{app_id}"]')).to_have_text("running")
        expect(dashboard.locator(f'[data-app-badge="{app_id}"]')).to_have_text("running")
        expect(dashboard.locator(f'[data-app-badge="{app_id}"]')).to_have_class(
            "badge status-running"
        )
        # The app tab listed no deployment when it opened: the new one's row comes in live.
        expect(
            other.locator(f'#deployments-table [data-deployment-badge="{dep_id}"]')
        ).to_have_text("running")
        assert other.evaluate("window.__notReloaded") is True
        shot(page, "deploy-watch-running")
        texts = [t.rstrip("\n") for t in log.locator(".line").all_inner_texts()]
        assert texts.count("── build") == 1 and texts.count("running") == 1

        page.goto(f"/apps/{app_id}")
        page.get_by_role("link", name="Logs").click()  # the app's Logs tab
        expect(page.locator('.tabs a[aria-current="page"]')).to_have_text("Logs")
        runtime = page.locator("#runtime-log")
        expect(runtime).to_contain_text("tick-", timeout=15_000)
        expect(page.locator("#log-state")).to_contain_text(f"deployment #{dep_id}")
        page.get_by_role("button", name="Pause").click()
        expect(page.get_by_role("button", name="Resume")).to_be_visible()
        held = runtime.locator(".line").count()
        page.wait_for_timeout(1000)
        assert runtime.locator(".line").count() == held  # paused: nothing appended
        page.get_by_role("button", name="Resume").click()
        expect(runtime.locator(".line")).not_to_have_count(held)
        page.get_by_label("Filter lines").fill("tick-1")
        visible = [t for t in runtime.locator(".line:not([hidden])").all_inner_texts()]
        assert visible and all("tick-1" in t for t in visible)
        shot(page, "runtime-logs")
    finally:
        worker.join(timeout=120)
        with worker_app.app_context():
            ids = set(db.session.scalars(select(Application.id)))
            mine = installation.current_id()
            db.session.remove()
        _remove_slipway_resources(ids, mine, Path(infra["config"]["PROXY_DIR"]) / "dynamic")
    status = db.session.scalar(select(Deployment.status).where(Deployment.id == dep_id))
    assert status == "running"


def team_of_email(email: str):
    from app.models import User

    return team_of(db.session.scalar(select(User).where(User.email == email)))


def _new_deployment(app_id: int, status: str = "queued", trigger: str = "webhook") -> int:
    """A deployment made elsewhere (a webhook, another user), announced as the app does."""
    dep = Deployment(application_id=app_id, status=status, trigger=trigger)
    db.session.add(dep)
    db.session.commit()
    livestatus.publish(dep)
    dep_id = dep.id
    db.session.close()  # no idle transaction while the browser drives the server
    return dep_id


def _set_status(dep_id: int, status: str) -> None:
    dep = db.session.get(Deployment, dep_id)
    dep.status = status
    db.session.commit()
    livestatus.publish(dep)
    db.session.close()


def test_new_deployments_and_apps_appear_in_open_lists_without_a_reload(page, app):
    seeded = seed("lists", ("web",))
    app_id = seeded.app_ids["web"]
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}")
    expect(page.locator("#deployments-table")).to_contain_text("No deployments yet.")
    listing = page.context.new_page()
    listing.goto(f"/apps/{app_id}/deployments")
    expect(listing.locator("#deployments-table")).to_contain_text("0 deployments")
    dashboard = page.context.new_page()
    dashboard.goto("/")
    tabs = (page, listing, dashboard)
    for tab in tabs:
        tab.evaluate("window.__notReloaded = true")

    dep_id = _new_deployment(app_id)  # after every tab rendered: only the socket tells them
    later = make_app(db.session.get(Project, seeded.project_id), "later")
    later_id = later.id
    later_dep = _new_deployment(later_id, trigger="manual")

    for tab in (page, listing):
        row = tab.locator(f'#deployments-table [data-deployment-badge="{dep_id}"]')
        expect(row).to_have_text("queued")
        expect(tab.locator("#deployments-table")).to_contain_text("webhook")
        # other apps' deployments are not this table's
        expect(tab.locator(f'[data-deployment-badge="{later_dep}"]')).to_have_count(0)
    expect(listing.locator("#deployments-table")).to_contain_text("1 deployment")
    expect(dashboard.locator(f'#app-list [data-app-badge="{later_id}"]')).to_have_text("queued")
    expect(dashboard.locator("#app-list")).to_contain_text("later")

    _set_status(dep_id, "building")  # the swapped-in rows keep repainting
    expect(page.locator(f'[data-deployment-badge="{dep_id}"]')).to_have_text("building")
    expect(page.locator(f'[data-app-badge="{app_id}"]')).to_have_text("building")
    expect(dashboard.locator(f'[data-app-badge="{app_id}"]')).to_have_text("building")
    second = _new_deployment(app_id, trigger="manual")
    expect(page.locator(f'[data-deployment-badge="{second}"]')).to_have_text("queued")
    expect(page.locator("#deployments-table tbody tr")).to_have_count(2)
    for tab in tabs:
        assert tab.evaluate("window.__notReloaded") is True
    shot(page, "live-lists-app-page")


def test_a_tab_over_the_socket_cap_says_live_updates_are_paused(page, app):
    """Every page, not only Logs: a socket refused with 4429 fills the status region."""
    seeded = seed("capped", ("web",))
    app_id = seeded.app_ids["web"]
    dep_id = _new_deployment(app_id, status="building")
    user_id = db.session.scalar(select(User.id).where(User.email == seeded.email))
    db.session.close()
    key = SLOTS_KEY.format(user_id)
    # Other tabs hold every slot; theirs expire before a new socket's, so they rank first.
    redis.client.zadd(key, {f"other-tab-{i}": time.time() + 20 for i in range(50)})
    message = "Live updates paused: too many open tabs — reload to retry."

    log_in(page, seeded.email)  # lands on the dashboard: the status socket
    notice = page.locator("#live-notice")
    expect(notice).to_have_text(message)
    shot(page, "live-notice-dashboard")
    for url in (f"/apps/{app_id}", f"/deployments/{dep_id}", f"/apps/{app_id}/logs"):
        page.goto(url)  # status, build log and runtime log sockets
        expect(page.locator("#live-notice")).to_have_text(message)
        expect(page.locator("#live-notice")).to_have_attribute("aria-live", "polite")
    expect(page.locator("#log-state")).to_have_text("Not following: live updates paused.")

    redis.client.delete(key)  # the other tabs closed: a reload retries
    page.goto(f"/apps/{app_id}")
    page.wait_for_timeout(1000)
    expect(page.locator("#live-notice")).to_be_empty()


@pytest.fixture
def busy_server(base_config, tmp_path_factory, app):
    """A gunicorn whose worker admits one live view (8 threads, 7 kept for pages)."""
    started = start_server(
        base_config,
        tmp_path_factory.mktemp("slipway-busy-server"),
        {"SLIPWAY_WEB_THREADS": "8", "SLIPWAY_WEB_PAGE_THREADS": "7"},
    )
    yield started
    started.stop()


def test_a_page_over_the_workers_live_view_cap_says_the_server_is_busy(open_page, busy_server):
    """Closed with 4503 (the worker's live views are all taken): the notice, a working page."""
    seeded = seed("busy", ("web",))
    app_id = seeded.app_ids["web"]
    kit = LiveServer(busy_server.url)
    holder = kit.connect("/ws/status", kit.login(seeded.email))  # takes the only seat
    try:
        page = open_page(busy_server)
        log_in(page, seeded.email)
        expect(page.locator("#live-notice")).to_have_text(
            "Live updates paused: the server is busy — reload to retry."
        )
        page.goto(f"/apps/{app_id}/logs")
        expect(page.locator("#log-state")).to_have_text("Not following: live updates paused.")
        expect(page.locator("h1")).to_contain_text("web")  # pages still answer
        shot(page, "live-notice-busy")
    finally:
        close(holder)
