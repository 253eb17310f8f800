"""The Docker engine: the client, its reachability, errors, and Slipway's labels.

``app.runtime`` is the only package that talks to Docker. How a version of an
app is built, started, checked and stopped lives in it, so that Swarm services
can later replace plain containers in one place.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import docker
from docker.errors import DockerException
from flask import current_app
from redis.exceptions import RedisError

from app.extensions import redis

ENGINE_STATUS_KEY = "slipway:engine-status"
ENGINE_STATUS_TTL = 15
# The network every app shared before each project had its own (runtime.versions).
NETWORK = "slipway"
LABEL_APP = "slipway.app"
LABEL_PROJECT = "slipway.project"
LABEL_DEPLOYMENT = "slipway.deployment"
LABEL_REPLICA = "slipway.replica"


class ContainerError(Exception):
    """A Docker step failed; the message is safe to show the user."""


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    detail: str


def client(timeout: int = 60) -> docker.DockerClient:
    cfg = current_app.config
    return docker.DockerClient(
        base_url=cfg["DOCKER_HOST"], version=cfg["DOCKER_API_VERSION"], timeout=timeout
    )


def probe_engine() -> EngineStatus:
    """Ask the engine for its version, with a short timeout."""
    try:
        engine = client(timeout=3)
        try:
            version = engine.version()
        finally:
            engine.close()
        return EngineStatus(True, f"Docker {version.get('Version', '?')}")
    except (DockerException, OSError) as exc:
        return EngineStatus(False, f"{current_app.config['DOCKER_HOST']}: {exc}")


def engine_status() -> EngineStatus:
    """The engine's reachability, cached in Redis for a few seconds (pages show a banner)."""
    try:
        cached = redis.client.get(ENGINE_STATUS_KEY)
    except RedisError:
        cached = None
    if cached:
        data = json.loads(cached)
        return EngineStatus(data["reachable"], data["detail"])
    status = probe_engine()
    try:
        redis.client.set(
            ENGINE_STATUS_KEY,
            json.dumps({"reachable": status.reachable, "detail": status.detail}),
            ex=ENGINE_STATUS_TTL,
        )
    except RedisError:
        pass
    return status


def explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)
