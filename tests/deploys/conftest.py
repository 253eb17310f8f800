"""Deploy-test fixtures: the real Docker engine, Traefik and a smart-HTTP git server."""

from __future__ import annotations

from pathlib import Path

import docker
import pytest
import requests
from sqlalchemy import select

from app import jobs
from app.deploys import control
from app.extensions import db
from app.models import Application, Deployment, DeploymentLogLine, Installation
from app.proxy import traefik
from tests import lab
from tests.conftest import running_app
from tests.factories import make_app, make_project, make_team, make_user


@pytest.fixture(scope="session")
def infra(tmp_path_factory, base_config):
    """Base image, git server and Traefik, shared by the module's tests."""
    lab.ensure_base_image()
    root = tmp_path_factory.mktemp("lab")
    (root / "git").mkdir()
    server = lab.GitServer(root / "git")
    config = base_config | {
        "PROXY_DIR": str(root / "traefik"),
        "BUILDS_DIR": str(root / "builds"),
        "HTTP_PORT": lab.free_port(),
        "HTTPS_PORT": lab.free_port(),
        "PROXY_API_PORT": lab.free_port(),
        # Entrypoints for the databases' public ports (tests/databases/test_public_port.py).
        "DATABASE_PUBLIC_PORTS": (lab.free_port(), lab.free_port()),
        "GIT_ALLOWED_HOSTS": ("127.0.0.1",),
        "BASE_DOMAIN": "localhost",
        "WATCH_SECONDS": 1.0,
        "HEALTH_TIMEOUT_SECONDS": 15.0,
        "DRAIN_SECONDS": 0.5,
        "STOP_TIMEOUT_SECONDS": 2,
    }
    with running_app(config):
        static = traefik.write_static_config()
        _start_app_ids_high()
    proxy = lab.Traefik(static, root / "traefik.log")
    proxy.wait_ready(config["PROXY_API_PORT"])
    yield {"config": config, "git": server, "root": root}
    proxy.stop()
    server.stop()


def _start_app_ids_high() -> None:
    """Containers, images and routes are named by app id: start far from any real app's
    ids (a local Slipway, a benchmark, leftovers of an earlier run) so tests never
    touch them."""
    import random

    from sqlalchemy import text

    base = random.randrange(10**6, 10**9)
    if db.engine.dialect.name == "postgresql":
        db.session.execute(text(f"ALTER SEQUENCE applications_id_seq RESTART WITH {base}"))
    else:
        db.session.execute(text("DELETE FROM sqlite_sequence WHERE name = 'applications'"))
        db.session.execute(
            text("INSERT INTO sqlite_sequence (name, seq) VALUES ('applications', :s)"),
            {"s": base},
        )
    db.session.commit()


@pytest.fixture
def app(infra):
    """The app of an installation that went through setup: it has an installation id."""
    with running_app(infra["config"]) as app:
        make_user()
        jobs.bind(app)
        yield app
        app_ids = set(db.session.scalars(select(Application.id)))
        installation_id = db.session.scalar(select(Installation.installation_id))
    dynamic = Path(infra["config"]["PROXY_DIR"]) / "dynamic"
    _remove_slipway_resources(app_ids, installation_id, dynamic)


def _remove_slipway_resources(app_ids: set[int], installation_id: str, dynamic: Path):
    """Remove what this test's apps left behind, and nothing of anyone else's."""
    client = docker.from_env()
    mine = f"slipway.installation={installation_id}"
    for app_id in app_ids:  # containers first: an image app may run another app's image
        for container in client.containers.list(
            all=True, filters={"label": [f"slipway.app={app_id}", mine]}
        ):
            container.remove(force=True)
    for app_id in app_ids:
        for image in client.images.list(filters={"label": [f"slipway.app={app_id}", mine]}):
            try:
                client.images.remove(image.id, force=True)
            except docker.errors.APIError:
                pass  # still used by something outside this test
        (dynamic / f"app-{app_id}.yml").unlink(missing_ok=True)
    for network in client.networks.list(filters={"label": ["slipway.project", mine]}):
        try:
            network.remove()
        except docker.errors.APIError:
            pass
    client.close()


def ours(*labels: str) -> dict:
    """A Docker filter for this test installation's objects that carry ``labels``: another
    installation on the engine (another test run) has apps and deployments of the same ids."""
    installation_id = db.session.scalar(select(Installation.installation_id))
    return {"label": [*labels, f"slipway.installation={installation_id}"]}


_names = iter(range(1, 10_000))


def _host(app_row) -> str:
    return f"{app_row.name}.{app_row.project.name}.localhost"


@pytest.fixture
def repo(infra):
    return lab.Repo(infra["git"], f"site{next(_names)}", infra["root"] / "work")


def _web_app(repo, **fields):
    project = make_project(make_team(), f"shop{next(_names)}")
    values = {"git_url": repo.url, "git_branch": "main", "container_port": 8000,
              "health_check_path": "/"} | fields  # fmt: skip
    return make_app(project, "web", **values)


def _through_traefik(infra, app_row, path="/"):
    host = app_row if isinstance(app_row, str) else _host(app_row)
    port = infra["config"]["HTTP_PORT"]
    return requests.get(f"http://127.0.0.1:{port}{path}", headers={"Host": host}, timeout=5)


def _deploy(app_row, **kwargs) -> Deployment:
    deployment = control.start_deploy(app_row, trigger=kwargs.pop("trigger", "manual"), **kwargs)
    jobs.run_deployment(deployment.id)
    db.session.expire_all()
    return db.session.get(Deployment, deployment.id)


def _log(deployment_id: int) -> str:
    lines = db.session.scalars(
        select(DeploymentLogLine.text)
        .where(DeploymentLogLine.deployment_id == deployment_id)
        .order_by(DeploymentLogLine.seq)
    )
    return "\n".join(lines)
