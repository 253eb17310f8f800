"""Resource figures of running app and database containers (the monitoring samples read
them)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import docker
from docker.errors import APIError, DockerException, NotFound
from flask import current_app

from app.runtime import installation
from app.runtime.engine import LABEL_APP, client
from app.runtime.volumes import LABEL_DATABASE


def _running(label: str) -> dict[str, int]:
    """{container id: the id in ``label``} of this installation's running containers."""
    engine = client(timeout=30)
    try:
        found = engine.api.containers(filters={"label": label, "status": "running"})
    finally:
        engine.close()
    return {
        c["Id"]: int(c["Labels"][label])
        for c in found
        if c["Labels"][label].isdigit() and installation.owns(c["Labels"])
    }


def running_app_containers() -> dict[str, int]:
    """{container id: app id} of every running app container of this installation."""
    return _running(LABEL_APP)


def running_database_containers() -> dict[str, int]:
    """{container id: database id} of every running database container of this
    installation."""
    return _running(LABEL_DATABASE)


def raw_stats(container_ids: list[str], workers: int = 32) -> dict[str, dict]:
    """Docker's stats document per container, asked for concurrently.

    Each answer takes the engine about a second (it waits for a second CPU
    reading to fill ``precpu_stats``), so they are asked in parallel. A
    container that stopped or vanished since it was listed is left out.
    """
    if not container_ids:
        return {}
    size = max(1, min(workers, len(container_ids)))
    cfg = current_app.config
    engine = docker.APIClient(
        base_url=cfg["DOCKER_HOST"], version=cfg["DOCKER_API_VERSION"], timeout=10,
        max_pool_size=size,
    )  # fmt: skip

    def one(cid: str) -> tuple[str, dict | None]:
        try:
            return cid, engine.stats(cid, stream=False)
        except (NotFound, APIError, DockerException, OSError):
            return cid, None

    try:
        with ThreadPoolExecutor(max_workers=size) as pool:
            answers = list(pool.map(one, container_ids))
    finally:
        engine.close()
    return {cid: doc for cid, doc in answers if doc and doc.get("read", "").startswith("2")}
