"""The only module that talks to the Docker engine.

How a version of an app is built, started, checked and stopped lives here, so
that Swarm services can later replace plain containers in one place. Containers
get a fixed set of options: users choose the image, env, port and limits, never
privileges, mounts, networks, capabilities, devices or labels.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import docker
from docker.errors import APIError, DockerException, ImageNotFound, NotFound
from flask import current_app
from redis.exceptions import RedisError

from app.extensions import redis

ENGINE_STATUS_KEY = "slipway:engine-status"
ENGINE_STATUS_TTL = 15
NETWORK = "slipway"
LABEL_APP = "slipway.app"
LABEL_DEPLOYMENT = "slipway.deployment"
LABEL_REPLICA = "slipway.replica"


class ContainerError(Exception):
    """A Docker step failed; the message is safe to show the user."""


@dataclass(frozen=True)
class EngineStatus:
    reachable: bool
    detail: str


@dataclass(frozen=True)
class Replica:
    id: str
    name: str
    address: str  # IP on the slipway network


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


# ---- images ---------------------------------------------------------------


def image_tag(app_id: int, deployment_id: int) -> str:
    return f"slipway/app-{app_id}:d{deployment_id}"


def build_image(
    context: Path,
    dockerfile: Path,
    tag: str,
    labels: dict[str, str],
    *,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> str:
    """Build ``tag`` from ``context``; stream output lines; return the image id.

    The build runs with a memory cap and a timeout. A watcher polls
    ``should_stop`` and the deadline even while the build prints nothing; to
    stop, it shuts the API connection down, and the engine then abandons the
    build and removes its intermediate container.
    """
    cfg = current_app.config
    timeout = cfg["BUILD_TIMEOUT_SECONDS"]
    engine = client(timeout=timeout)
    responses: list = []
    engine.api.hooks["response"].append(lambda response, *a, **k: responses.append(response))
    memory = cfg["BUILD_MEMORY_MB"] * 1024 * 1024
    reason: list[str] = []
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.wait(0.25):
            if should_stop():
                reason.append("stopped")
            elif time.monotonic() > deadline:
                reason.append(f"the build took longer than {timeout} s")
            if reason:
                _abort(responses)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        dockerfile_arg = (
            str(dockerfile.relative_to(context)) if context in dockerfile.parents
            else str(dockerfile)
        )  # fmt: skip
        stream = engine.api.build(
            path=str(context), dockerfile=dockerfile_arg, tag=tag, labels=labels, rm=True,
            forcerm=True, pull=False, decode=True, nocache=False,
            container_limits={"memory": memory, "memswap": memory},
        )  # fmt: skip
        image_id = None
        lines = _BuildLines(on_line)
        for chunk in stream:
            lines.feed(chunk)
            if "error" in chunk:
                raise ContainerError(f"the build failed: {chunk['error'].strip()}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        lines.close()
        if reason:
            raise ContainerError(reason[0])
        return image_id or engine.images.get(tag).id
    except ContainerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a cut connection surfaces as many types
        if reason:
            raise ContainerError(reason[0]) from None
        raise ContainerError(f"the build failed: {_explain(exc)}") from None
    finally:
        done.set()
        engine.close()


def _abort(responses: list) -> None:
    """Shut the socket of the streaming build response; the blocked read then fails."""
    for response in responses:
        connection = getattr(response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _BuildLines:
    """Build output to lines. The engine forwards a RUN step's output in arbitrary
    pieces, so a ``stream`` chunk may end mid-line: the rest waits for the next one."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.partial = ""

    def feed(self, chunk: dict) -> None:
        if "stream" not in chunk:
            for line in _chunk_lines(chunk):
                self.on_line(line)
            return
        *complete, self.partial = (self.partial + (chunk["stream"] or "")).split("\n")
        for line in complete:
            if line.strip():
                self.on_line(line.rstrip())

    def close(self) -> None:
        if self.partial.strip():
            self.on_line(self.partial.rstrip())
        self.partial = ""


def _chunk_lines(chunk: dict) -> Iterator[str]:
    text = chunk.get("stream") or chunk.get("status") or ""
    if chunk.get("progress"):
        text = f"{text} {chunk['progress']}"
    for line in text.splitlines():
        if line.strip():
            yield line.rstrip()


def ensure_image(ref: str, on_line: Callable[[str], None]) -> str:
    """Use a local image, or pull it; returns the image id."""
    engine = client(timeout=600)
    try:
        try:
            return engine.images.get(ref).id
        except ImageNotFound:
            pass
        on_line(f"pulling {ref}")
        repo, _, tag = ref.rpartition(":") if ":" in ref.split("/")[-1] else (ref, "", "latest")
        for chunk in engine.api.pull(repo, tag=tag or "latest", stream=True, decode=True):
            for line in _chunk_lines(chunk):
                on_line(line)
            if "error" in chunk:
                raise ContainerError(f"pulling {ref} failed: {chunk['error']}")
        return engine.images.get(ref).id
    except (APIError, DockerException) as exc:
        raise ContainerError(f"pulling {ref} failed: {_explain(exc)}") from None
    finally:
        engine.close()


def image_exists(ref: str) -> bool:
    engine = client(timeout=30)
    try:
        engine.images.get(ref)
        return True
    except ImageNotFound:
        return False
    finally:
        engine.close()


def prune_images(app_id: int, keep_tags: set[str]) -> list[str]:
    """Remove this app's Slipway-built images except ``keep_tags``; returns removed tags."""
    engine = client(timeout=120)
    removed = []
    try:
        for image in engine.images.list(filters={"label": f"{LABEL_APP}={app_id}"}):
            tags = [t for t in image.tags if t.startswith(f"slipway/app-{app_id}:")]
            if not tags or set(tags) & keep_tags:
                continue
            try:
                engine.images.remove(image.id, force=False, noprune=False)
                removed.extend(tags)
            except APIError:
                continue  # still used by a container; a later cleanup takes it
    finally:
        engine.close()
    return removed


# ---- containers -----------------------------------------------------------


def ensure_network(engine: docker.DockerClient) -> None:
    if not engine.networks.list(names=[NETWORK]):
        try:
            engine.networks.create(NETWORK, driver="bridge", labels={"slipway": "1"})
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
    engine = client(timeout=120)
    replicas = []
    try:
        ensure_network(engine)
        for index in range(count):
            container = engine.containers.run(
                image,
                detach=True,
                name=f"slipway-a{app_id}-d{deployment_id}-r{index}",
                environment=env,
                labels={
                    LABEL_APP: str(app_id),
                    LABEL_DEPLOYMENT: str(deployment_id),
                    LABEL_REPLICA: str(index),
                },
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
    """Ids of Slipway containers of an app or a deployment, running or not."""
    label = (
        f"{LABEL_DEPLOYMENT}={deployment_id}" if deployment_id is not None
        else f"{LABEL_APP}={app_id}"
    )  # fmt: skip
    engine = client(timeout=30)
    try:
        return [c.id for c in engine.containers.list(all=True, filters={"label": label})]
    finally:
        engine.close()


def addresses(container_ids: list[str]) -> list[str]:
    engine = client(timeout=30)
    try:
        result = []
        for cid in container_ids:
            networks = engine.containers.get(cid).attrs["NetworkSettings"]["Networks"]
            result.append(networks[NETWORK]["IPAddress"])
        return result
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
            labels = container.labels or {}
            if LABEL_APP not in labels:
                continue  # never touch what Slipway did not start
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


def _explain(exc: Exception) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc)


# ---- stats ------------------------------------------------------------------


def running_app_containers() -> dict[str, int]:
    """{container id: app id} of every running Slipway app container."""
    engine = client(timeout=30)
    try:
        found = engine.api.containers(filters={"label": LABEL_APP, "status": "running"})
    finally:
        engine.close()
    return {c["Id"]: int(c["Labels"][LABEL_APP]) for c in found if c["Labels"][LABEL_APP].isdigit()}


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


# ---- logs (the web process reads them; it never starts or stops anything) ----


class LogStream:
    """A container's output as it is written (``docker logs --follow --timestamps``).

    Iterating yields raw byte chunks, each one or more lines starting with an
    RFC 3339 timestamp; :meth:`close` cuts the connection, which ends a blocked
    iteration in another thread.
    """

    def __init__(self, container_id: str, tail: int):
        self.engine = client(timeout=30)
        api = self.engine.api
        params = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1, "tail": tail}
        try:
            # Not api.logs(stream=True): the SDK reads each frame with two small
            # urllib3 reads, ~3x the CPU of whole HTTP chunks split here, and a
            # flood is read in the web process. No read timeout: a quiet
            # container may print nothing for hours.
            self.response = api.get(
                api._url("/containers/{0}/logs", container_id), params=params,
                stream=True, timeout=(10, None),
            )  # fmt: skip
            api._raise_for_status(self.response)
        except (DockerException, OSError) as exc:
            self.engine.close()
            raise ContainerError(f"reading the logs failed: {_explain(exc)}") from None

    def __iter__(self) -> Iterator[bytes]:
        """The payloads of the engine's frames (8-byte header: stream, 0, 0, 0, size)."""
        pending = bytearray()
        try:
            for data in self.response.raw.read_chunked(decode_content=False):
                pending += data
                position, end, out = 0, len(pending), []
                while end - position >= 8:
                    size = int.from_bytes(pending[position + 4 : position + 8], "big")
                    if end - position - 8 < size:
                        break
                    out.append(bytes(pending[position + 8 : position + 8 + size]))
                    position += 8 + size
                del pending[:position]
                if out:
                    yield b"".join(out)
        except Exception:  # noqa: BLE001 - closed from another thread, or the engine went away
            return

    def close(self) -> None:
        try:
            self.response.close()
        except Exception:  # noqa: BLE001 - closing twice or a dead socket is fine
            pass
        self.engine.close()


def follow_logs(container_id: str, tail: int = 200) -> LogStream:
    """Follow one container's output, starting with its last ``tail`` lines."""
    return LogStream(container_id, tail)


def recent_logs(container_id: str, tail: int) -> bytes:
    """The last ``tail`` lines of a container's output, with timestamps."""
    engine = client(timeout=30)
    try:
        return engine.api.logs(container_id, stdout=True, stderr=True, timestamps=True, tail=tail)
    except NotFound:
        return b""
    except (DockerException, OSError) as exc:
        raise ContainerError(f"reading the logs failed: {_explain(exc)}") from None
    finally:
        engine.close()


def replicas_of(app_id: int, deployment_id: int) -> list[tuple[str, str]]:
    """``(container id, replica label)`` of a deployment's running containers."""
    engine = client(timeout=30)
    try:
        try:
            labels = [f"{LABEL_APP}={app_id}", f"{LABEL_DEPLOYMENT}={deployment_id}"]
            found = engine.containers.list(filters={"label": labels})
        except (DockerException, OSError) as exc:
            raise ContainerError(f"listing the containers failed: {_explain(exc)}") from None
        pairs = [(c.id, f"r{(c.labels or {}).get(LABEL_REPLICA, '?')}") for c in found]
        return sorted(pairs, key=lambda pair: pair[1])
    finally:
        engine.close()
