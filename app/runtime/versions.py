"""Versions of an app: its containers on its project's network, their state and stop.

The deploy pipeline starts a version (image, env, limits, replicas) and gets a
:class:`Version` back: the replicas and the endpoints (``http://<ip>:<port>``)
Traefik should route to. It asks this module for the version's health, logs
and stop; nothing outside ``app.runtime`` speaks in container addresses.

Containers get a fixed set of options: users choose the image, env, port and
limits, never privileges, networks, capabilities, devices or labels. The only mounts
are the app's named volumes (``runtime.volumes.Mount``, a checked path inside the
container): never a bind of a host path.

Each project has its own bridge network (``slipway-<installation>-p<project>``):
the apps of one project reach each other, and Docker's isolation rules drop
traffic between two bridges, so a container of one project cannot open a
connection to another project's. Traefik runs on the host and reaches every
bridge; containers from before project networks stay on the shared ``slipway``
network until their app is deployed again.
"""

from __future__ import annotations

import http.client
import logging
import re
import time
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import docker
from docker.errors import APIError, DockerException, NotFound

from app.runtime import installation
from app.runtime import volumes as _volumes
from app.runtime.engine import (
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_PROJECT,
    LABEL_REPLICA,
    NETWORK,
    ContainerError,
    client,
)
from app.runtime.engine import explain as _explain
from app.runtime.installation import LABEL_INSTALLATION

log = logging.getLogger("slipway.runtime")
# What ``runtime.volumes.volume_name`` makes: the only sources a mount may have.
VOLUME_NAME_RE = re.compile(r"^slipway-([A-Za-z0-9-]+-)?v[0-9]+$")


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    address: str  # where it listens on its project's network (the deploy log shows it)
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
    project_id: int,
    deployment_id: int,
    image: str,
    env: dict[str, str],
    port: int,
    replicas: int,
    cpu_limit: float | None,
    memory_limit_mb: int | None,
    mounts: list[_volumes.Mount] | tuple[_volumes.Mount, ...] = (),
) -> Version:
    """Start ``replicas`` containers of ``image`` listening on ``port``, with the app's
    named volumes mounted; the handle says where each answers."""
    started = start_replicas(
        app_id=app_id, project_id=project_id, deployment_id=deployment_id, image=image, env=env,
        count=replicas,
        cpu_limit=cpu_limit, memory_limit_mb=memory_limit_mb, mounts=mounts,
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
            address = _address(container)
            replicas.append(Replica(cid, container.name, address, _endpoint(address, port)))
    finally:
        engine.close()
    return Version(deployment_id, tuple(replicas))


def network_of(labels: dict[str, str]) -> str:
    """The network a Slipway container was started on: its project's, or the shared one
    for containers from before project networks."""
    project = labels.get(LABEL_PROJECT)
    return project_network(int(project)) if project and project.isdigit() else NETWORK


def _address(container) -> str:
    network = network_of(container.labels)
    networks = container.attrs["NetworkSettings"]["Networks"]
    if network not in networks:
        raise ContainerError(f"{container.name} is not on the {network} network")
    return networks[network]["IPAddress"]


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


def stop_only(container_ids: list[str], timeout: int = 10) -> None:
    """Stop containers gracefully and keep them (an exclusive volume's handover: the old
    version stops before the new one starts, and starts again if the new one fails)."""
    engine = client(timeout=timeout + 30)
    try:
        for cid in container_ids:
            try:
                container = engine.containers.get(cid)
                if installation.owns(container.labels):
                    container.stop(timeout=timeout)
            except NotFound:
                continue
            except APIError as exc:
                log.warning("container %s: not stopped: %s", cid[:12], _explain(exc))
    finally:
        engine.close()


def start_again(container_ids: list[str]) -> None:
    """Start stopped containers of this installation again (at a new address, maybe)."""
    engine = client(timeout=60)
    try:
        for cid in container_ids:
            try:
                container = engine.containers.get(cid)
                if installation.owns(container.labels):
                    container.start()
            except (NotFound, APIError) as exc:
                raise ContainerError(f"starting {cid[:12]} again failed: {_explain(exc)}") from None
    finally:
        engine.close()


def stop_deployment(deployment_id: int, timeout: int = 10) -> None:
    """Stop and remove whatever containers of a deployment this installation still has."""
    stop_and_remove(containers_of(deployment_id=deployment_id), timeout=timeout)


def project_network(project_id: int) -> str:
    """The bridge network of one project of this installation (ids overlap between them)."""
    mine = installation.current_id()
    return f"slipway-{mine}-p{project_id}" if mine else f"slipway-p{project_id}"


def ensure_network(engine: docker.DockerClient, project_id: int) -> str:
    """Create the project's network if it is missing; returns its name."""
    name = project_network(project_id)
    if not engine.networks.list(names=[name]):
        labels = {"slipway": "1", LABEL_PROJECT: str(project_id)} | installation.labels()
        try:
            engine.networks.create(name, driver="bridge", labels=labels, check_duplicate=True)
        except APIError:
            if not engine.networks.list(names=[name]):
                raise
    return name


def prune_networks(keep_project_ids: set[int]) -> list[str]:
    """Remove this installation's project networks of projects that are gone and have no
    container left on them; returns the names removed."""
    engine = client(timeout=60)
    removed = []
    try:
        for network in engine.networks.list(filters={"label": LABEL_PROJECT}):
            labels = network.attrs.get("Labels") or {}
            project = labels.get(LABEL_PROJECT, "")
            if not installation.owns(labels) or not project.isdigit():
                continue
            if int(project) in keep_project_ids:
                continue
            network.reload()
            if network.attrs.get("Containers"):
                continue  # a container still on it (being removed): a later pass takes it
            try:
                network.remove()
                removed.append(network.name)
            except (NotFound, APIError):
                continue
    finally:
        engine.close()
    return removed


def start_replicas(
    *,
    app_id: int,
    project_id: int,
    deployment_id: int,
    image: str,
    env: dict[str, str],
    count: int,
    cpu_limit: float | None,
    memory_limit_mb: int | None,
    mounts: list[_volumes.Mount] | tuple[_volumes.Mount, ...] = (),
) -> list[Replica]:
    """Start ``count`` containers of ``image`` on the project's network, each with
    ``mounts`` (named volumes only: their paths are checked again here)."""
    checked = [replace(m, path=_volumes.check_mount_path(m.path)) for m in mounts]
    for m in checked:  # a Slipway volume's name, never a host path (SECURITY case 15)
        if not VOLUME_NAME_RE.fullmatch(m.docker_name):
            raise ContainerError(f"{m.docker_name!r} is not a Slipway volume")
    own = installation.labels()
    # Names are unique on an engine and ids overlap between installations.
    prefix = f"slipway-{own[LABEL_INSTALLATION]}-" if own else "slipway-"
    engine = client(timeout=120)
    replicas = []
    try:
        network = ensure_network(engine, project_id)
        for index in range(count):
            container = engine.containers.run(
                image,
                detach=True,
                name=f"{prefix}a{app_id}-d{deployment_id}-r{index}",
                environment=env,
                labels={
                    LABEL_APP: str(app_id),
                    LABEL_PROJECT: str(project_id),
                    LABEL_DEPLOYMENT: str(deployment_id),
                    LABEL_REPLICA: str(index),
                }
                | own,
                network=network,
                restart_policy={"Name": "unless-stopped"},
                mem_limit=f"{memory_limit_mb}m" if memory_limit_mb else None,
                nano_cpus=int(cpu_limit * 1e9) if cpu_limit else None,
                security_opt=["no-new-privileges"],
                privileged=False,
                mounts=_volumes.docker_mounts(checked),
                log_config={"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}},
            )
            container.reload()
            address = _address(container)
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
    exited_at: float | None = None  # when it first exited (Unix time), if it did


def replica_state(container_id: str) -> ReplicaState:
    """Whether a replica runs, and how it ended: ``exit_code`` is its *first* exit's code.

    Replicas restart (``unless-stopped``), and after a restart the engine's ``ExitCode``
    is the new run's (0 while it runs): the first ``die`` event has the code the app
    really ended with."""
    engine = client(timeout=30)
    try:
        container = engine.containers.get(container_id)
        state = container.attrs["State"]
        running = bool(state.get("Running")) and not state.get("Restarting")
        restarts = int(container.attrs.get("RestartCount", 0))
        exit_code, exited_at = state.get("ExitCode"), None
        if restarts or not running:
            exit_code, exited_at = _first_exit(engine, container_id, exit_code)
        return ReplicaState(
            running=running,
            restarts=restarts,
            exit_code=exit_code,
            detail=state.get("Error") or state.get("Status", ""),
            exited_at=exited_at,
        )
    except NotFound:
        return ReplicaState(False, 0, None, "the container is gone")
    finally:
        engine.close()


def _first_exit(engine, container_id: str, fallback: int | None) -> tuple[int | None, float | None]:
    """The exit code and time of the container's first ``die`` event (the engine keeps
    recent events; a replica checked by the health gate started moments ago)."""
    now = int(time.time())
    try:
        events = engine.api.events(
            since=now - 3600, until=now + 1, decode=True,
            filters={"container": container_id, "event": "die"},
        )  # fmt: skip
        for event in events:
            code = (event.get("Actor") or {}).get("Attributes", {}).get("exitCode")
            if code is not None and str(code).lstrip("-").isdigit():
                events.close()
                return int(code), int(event.get("timeNano", 0)) / 1e9 or None
    except (APIError, DockerException, OSError):
        pass
    return fallback, None


def replica_logs(container_id: str, tail: int = 20, until: float | None = None) -> list[str]:
    """The last ``tail`` lines a replica printed (up to ``until``: its first run's)."""
    engine = client(timeout=30)
    try:
        options = {"until": until} if until else {}  # the die event comes after the last line
        raw = engine.containers.get(container_id).logs(tail=tail, **options)
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


def stop_and_remove(container_ids: list[str], timeout: int = 10) -> list[str]:
    """Stop gracefully (SIGTERM, then SIGKILL after ``timeout``), then remove; returns the
    ids still there.

    A container that is already gone (404) is done; so is one whose removal another
    caller already started (409 "removal ... already in progress": a racing retry of the
    job, ``docker rm -f``) once that removal ends. Any other failure is logged, the
    other containers are still removed, and the id is returned.
    """
    engine = client(timeout=timeout + 30)
    left = []
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
                pass  # not running, or being removed: the removal below says which
            if not _removed(container, timeout + 30):
                left.append(cid)
    finally:
        engine.close()
    return left


def _removed(container, wait_seconds: int) -> bool:
    try:
        container.remove(force=True)
        return True
    except NotFound:
        return True
    except APIError as exc:
        if exc.status_code != 409:
            log.warning("container %s: not removed: %s", container.short_id, _explain(exc))
            return False
    # Removal already in progress elsewhere: done when that one ends with the container.
    try:
        container.wait(condition="removed", timeout=wait_seconds)
    except NotFound:
        return True
    except (DockerException, OSError) as exc:
        log.warning("container %s: removal did not finish: %s", container.short_id, exc)
        return False
    return True
