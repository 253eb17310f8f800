"""Versions of an app: its containers on the slipway network, their state and stop.

The deploy pipeline starts a version (image, env, limits, replicas) and gets a
:class:`Version` back: the replicas and the endpoints (``http://<ip>:<port>``)
Traefik should route to. It asks this module for the version's health, logs
and stop; nothing outside ``app.runtime`` speaks in container addresses.

Containers get a fixed set of options: users choose the image, env, port and
limits, never privileges, mounts, networks, capabilities, devices or labels.
"""

from __future__ import annotations

import http.client
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import docker
from docker.errors import APIError, DockerException, NotFound

from app.runtime import installation
from app.runtime.engine import (
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_REPLICA,
    NETWORK,
    ContainerError,
    client,
)
from app.runtime.engine import explain as _explain
from app.runtime.installation import LABEL_INSTALLATION


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    address: str  # where it listens on the slipway network (the deploy log shows it)
    endpoint: str = ""  # ``http://<address>:<port>``: what Traefik routes to


@dataclass(frozen=True)
class Version:
    """A version of an app (one deployment) as it runs: its replicas and their endpoints."""

    deployment_id: int
    replicas: tuple[Replica, ...]

    @property
    def endpoints(self) -> list[str]:
        """The URLs Traefik should route to, one per replica."""
        return [r.endpoint for r in self.replicas]

    @property
    def container_ids(self) -> list[str]:
        return [r.id for r in self.replicas]


def _endpoint(address: str, port: int) -> str:
    return f"http://{address}:{port}"


def start_version(
    *,
    app_id: int,
    deployment_id: int,
    image: str,
    env: dict[str, str],
    port: int,
    replicas: int,
    cpu_limit: float | None,
    memory_limit_mb: int | None,
) -> Version:
    """Start ``replicas`` containers of ``image`` listening on ``port``; the handle says
    where each answers."""
    started = start_replicas(
        app_id=app_id, deployment_id=deployment_id, image=image, env=env, count=replicas,
        cpu_limit=cpu_limit, memory_limit_mb=memory_limit_mb,
    )  # fmt: skip
    with_endpoints = (replace(r, endpoint=_endpoint(r.address, port)) for r in started)
    return Version(deployment_id, tuple(with_endpoints))


def find_version(deployment_id: int, port: int) -> Version:
    """The containers of a deployment that already runs (or ran), as a version handle."""
    ids = containers_of(deployment_id=deployment_id)
    engine = client(timeout=30)
    try:
        replicas = []
        for cid in ids:
            container = engine.containers.get(cid)
            networks = container.attrs["NetworkSettings"]["Networks"]
            if NETWORK not in networks:
                raise ContainerError(f"{container.name} is not on the {NETWORK} network")
            address = networks[NETWORK]["IPAddress"]
            replicas.append(Replica(cid, container.name, address, _endpoint(address, port)))
    finally:
        engine.close()
    return Version(deployment_id, tuple(replicas))


def probe(replica: Replica, path: str) -> int | None:
    """The HTTP status the replica answers on ``path`` (a health check), or None."""
    url = urlsplit(replica.endpoint)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=2)
    try:
        conn.request("GET", path, headers={"User-Agent": "slipway-health"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def stop_version(version: Version, timeout: int = 10) -> None:
    """Stop the version's containers gracefully, then remove them."""
    stop_and_remove(version.container_ids, timeout=timeout)


def stop_deployment(deployment_id: int, timeout: int = 10) -> None:
    """Stop and remove whatever containers of a deployment this installation still has."""
    stop_and_remove(containers_of(deployment_id=deployment_id), timeout=timeout)


def ensure_network(engine: docker.DockerClient) -> None:
    """Create the slipway network if it is missing.

    Installations on one engine share it (Traefik reaches every app container
    through it): it carries the label of the installation that created it, and
    no installation ever removes it.
    """
    if not engine.networks.list(names=[NETWORK]):
        try:
            labels = {"slipway": "1"} | installation.labels()
            engine.networks.create(NETWORK, driver="bridge", labels=labels)
        except APIError:
            if not engine.networks.list(names=[NETWORK]):
                raise


def start_replicas(
    *,
    app_id: int,
    deployment_id: int,
    image: str,
    env: dict[str, str],
    count: int,
    cpu_limit: float | None,
    memory_limit_mb: int | None,
) -> list[Replica]:
    """Start ``count`` containers of ``image`` on the slipway network."""
    own = installation.labels()
    # Names are unique on an engine and ids overlap between installations.
    prefix = f"slipway-{own[LABEL_INSTALLATION]}-" if own else "slipway-"
    engine = client(timeout=120)
    replicas = []
    try:
        ensure_network(engine)
        for index in range(count):
            container = engine.containers.run(
                image,
                detach=True,
                name=f"{prefix}a{app_id}-d{deployment_id}-r{index}",
                environment=env,
                labels={
                    LABEL_APP: str(app_id),
                    LABEL_DEPLOYMENT: str(deployment_id),
                    LABEL_REPLICA: str(index),
                }
                | own,
                network=NETWORK,
                restart_policy={"Name": "unless-stopped"},
                mem_limit=f"{memory_limit_mb}m" if memory_limit_mb else None,
                nano_cpus=int(cpu_limit * 1e9) if cpu_limit else None,
                security_opt=["no-new-privileges"],
                privileged=False,
                log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            )
            container.reload()
            address = container.attrs["NetworkSettings"]["Networks"][NETWORK]["IPAddress"]
            replicas.append(Replica(container.id, container.name, address))
        return replicas
    except (APIError, DockerException) as exc:
        raise ContainerError(f"starting the container failed: {_explain(exc)}") from None
    finally:
        engine.close()


@dataclass(frozen=True)
class ReplicaState:
    running: bool
    restarts: int
    exit_code: int | None
    detail: str


def replica_state(container_id: str) -> ReplicaState:
    engine = client(timeout=30)
    try:
        container = engine.containers.get(container_id)
        state = container.attrs["State"]
        return ReplicaState(
            running=bool(state.get("Running")) and not state.get("Restarting"),
            restarts=int(container.attrs.get("RestartCount", 0)),
            exit_code=state.get("ExitCode"),
            detail=state.get("Error") or state.get("Status", ""),
        )
    except NotFound:
        return ReplicaState(False, 0, None, "the container is gone")
    finally:
        engine.close()


def replica_logs(container_id: str, tail: int = 20) -> list[str]:
    engine = client(timeout=30)
    try:
        raw = engine.containers.get(container_id).logs(tail=tail)
        return raw.decode("utf-8", "replace").splitlines()
    except (NotFound, APIError):
        return []
    finally:
        engine.close()


def containers_of(*, app_id: int | None = None, deployment_id: int | None = None) -> list[str]:
    """Ids of this installation's containers of an app or a deployment, running or not."""
    label = (
        f"{LABEL_DEPLOYMENT}={deployment_id}" if deployment_id is not None
        else f"{LABEL_APP}={app_id}"
    )  # fmt: skip
    engine = client(timeout=30)
    try:
        found = engine.containers.list(all=True, filters={"label": label})
        return [c.id for c in found if installation.owns(c.labels)]
    finally:
        engine.close()


def stop_and_remove(container_ids: list[str], timeout: int = 10) -> None:
    """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``), then remove."""
    engine = client(timeout=timeout + 30)
    try:
        for cid in container_ids:
            try:
                container = engine.containers.get(cid)
            except NotFound:
                continue
            if not installation.owns(container.labels):
                continue  # never touch what this installation did not start
            try:
                container.stop(timeout=timeout)
            except APIError:
                pass
            try:
                container.remove(force=True)
            except NotFound:
                pass
    finally:
        engine.close()
