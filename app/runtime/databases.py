"""Database containers: the only code that talks to Docker about a managed database.

A database runs as one container, ``slipway-<installation>-db<id>``, on its
project's network only, with the network alias ``<name>`` (the apps of the project
reach it at ``<name>:<port>``; no host port is published, and another project's
network can neither resolve nor reach it). Its data lives on its volume, mounted at
the engine's data directory. The options are fixed here, like an app's: no
privileges, no capabilities beyond the image's, ``no-new-privileges``, rotated logs,
``unless-stopped``, and the memory and CPU limits the database was given.

Credentials reach the container through its environment (the official images'
contracts, ``app.databases.engines``) and reach a check or a command run inside it
through that exec's own environment, never through an argv.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from docker.errors import APIError, DockerException, ImageNotFound, NotFound

from app.databases import engines
from app.models import Database, Engine
from app.runtime import images, installation
from app.runtime import volumes as runtime_volumes
from app.runtime.engine import LABEL_PROJECT, ContainerError, client
from app.runtime.engine import explain as _explain
from app.runtime.installation import LABEL_INSTALLATION
from app.runtime.versions import ensure_network, project_network
from app.runtime.volumes import LABEL_DATABASE, Mount

log = logging.getLogger("slipway.runtime")

READY_POLL_SECONDS = 0.25
PROGRESS_EVERY_SECONDS = 1.0
STOP_TIMEOUT_SECONDS = 30  # a database flushes before it stops: longer than an app's
LOG_CONFIG = {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}


def container_name(database_id: int) -> str:
    """The engine's name of a database's container (ids overlap between installations)."""
    own = installation.labels()
    prefix = f"slipway-{own[LABEL_INSTALLATION]}-" if own else "slipway-"
    return f"{prefix}db{database_id}"


# ---- the image ---------------------------------------------------------------------


def _split_ref(ref: str) -> tuple[str, str]:
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    last = ref.rsplit("/", 1)[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


# Whether the engine has an image (one function for apps and databases).
has_image = images.image_exists


class _Progress:
    """Bytes downloaded of each layer, told at most once a second as
    ``pulling postgres:16: 41/120 MB``."""

    def __init__(self, ref: str, on_progress: Callable[[str], None]):
        self.ref, self.on_progress = ref, on_progress
        self.layers: dict[str, tuple[int, int]] = {}
        self.told_at = 0.0

    def add(self, chunk: dict) -> None:
        detail = chunk.get("progressDetail") or {}
        layer = chunk.get("id")
        if layer and chunk.get("status") == "Downloading" and detail.get("total"):
            self.layers[layer] = (int(detail.get("current", 0)), int(detail["total"]))
        elif layer and chunk.get("status") in ("Download complete", "Pull complete"):
            _, total = self.layers.get(layer, (0, 0))
            if total:
                self.layers[layer] = (total, total)
        now = time.monotonic()
        if now - self.told_at >= PROGRESS_EVERY_SECONDS:
            self.told_at = now
            self.on_progress(self.line())

    def line(self) -> str:
        done = sum(current for current, _ in self.layers.values()) // 1_000_000
        total = sum(total for _, total in self.layers.values()) // 1_000_000
        if not self.layers:
            return f"pulling {self.ref}"  # nothing to download yet (or layers it had)
        return f"pulling {self.ref}: {done}/{total} MB"


def ensure_image(ref: str, on_progress: Callable[[str], None]) -> bool:
    """Pull ``ref`` when the engine does not have it; True if it pulled. A pull that
    fails raises :class:`ContainerError` with the engine's (or registry's) reason."""
    if has_image(ref):
        return False
    repo, tag = _split_ref(ref)
    progress = _Progress(ref, on_progress)
    on_progress(f"pulling {ref}")
    engine = client(timeout=900)
    try:
        for chunk in engine.api.pull(repo, tag=tag, stream=True, decode=True):
            if "error" in chunk:
                reason = str(chunk.get("error") or "").strip()
                raise ContainerError(f"pulling {ref} failed: {reason}")
            progress.add(chunk)
        engine.images.get(ref)
    except ImageNotFound:
        raise ContainerError(f"pulling {ref} failed: the registry sent no image") from None
    except (APIError, DockerException) as exc:
        raise ContainerError(f"pulling {ref} failed: {_explain(exc)}") from None
    finally:
        engine.close()
    on_progress(progress.line())
    return True


# ---- the container -----------------------------------------------------------------


def secret_env(database: Database, password: str) -> dict[str, str]:
    """What the container (and every exec in it) gets: the image's contract, plus
    ``REDIS_PASSWORD`` for Redis so that a check run inside can authenticate."""
    env = engines.container_env(database, password)
    if database.engine == Engine.redis.value:
        env["REDIS_PASSWORD"] = password
    return env


def _owned(engine, name_or_id: str):
    """The container, if it exists and is this installation's; else None."""
    try:
        container = engine.containers.get(name_or_id)
    except NotFound:
        return None
    return container if installation.owns(container.labels) else None


def start(database: Database, password: str, volume_name: str) -> str:
    """Create and start the database's container (replacing an earlier container of
    this installation with the same name); returns its id."""
    spec = engines.spec(database.engine)
    name = container_name(database.id)
    runtime_volumes.ensure(
        volume_name, volume_id=database.volume.id, project_id=database.project_id,
        database_id=database.id,
    )  # fmt: skip
    engine = client(timeout=120)
    try:
        old = _owned(engine, name)
        if old is not None:
            _remove(old)
        elif _exists(engine, name):
            raise ContainerError(f"a container named {name} exists and is not Slipway's")
        network = ensure_network(engine, database.project_id)
        endpoint = engine.api.create_endpoint_config(aliases=[database.alias])
        container = engine.containers.run(
            database.image,
            command=engines.container_command(database, password),
            detach=True,
            name=name,
            hostname=database.alias,
            environment=secret_env(database, password),
            labels={
                LABEL_DATABASE: str(database.id),
                LABEL_PROJECT: str(database.project_id),
                "slipway": "1",
            }
            | installation.labels(),
            network=network,
            networking_config={network: endpoint},
            mounts=runtime_volumes.docker_mounts([Mount(volume_name, spec.data_dir)]),
            restart_policy={"Name": "unless-stopped"},
            mem_limit=f"{database.memory_limit_mb}m" if database.memory_limit_mb else None,
            nano_cpus=int(database.cpu_limit * 1e9) if database.cpu_limit else None,
            security_opt=["no-new-privileges"],
            privileged=False,
            log_config=LOG_CONFIG,
        )
        return container.id
    except (APIError, DockerException) as exc:
        raise ContainerError(f"starting the database failed: {_explain(exc)}") from None
    finally:
        engine.close()


def _exists(engine, name: str) -> bool:
    try:
        engine.containers.get(name)
        return True
    except NotFound:
        return False


def _remove(container) -> None:
    try:
        container.stop(timeout=STOP_TIMEOUT_SECONDS)
    except APIError:
        pass  # not running
    try:
        container.remove(force=True)
    except NotFound:
        pass


def exec_run(
    container_id: str, argv: list[str], env: dict[str, str] | None = None,
    user: str = "",
) -> tuple[int, str]:  # fmt: skip
    """Run ``argv`` inside the container with ``env`` added to its environment (how a
    secret reaches a command: never in the argv); returns (exit code, output)."""
    engine = client(timeout=120)
    try:
        container = _owned(engine, container_id)
        if container is None:
            raise ContainerError("the database's container is gone")
        result = container.exec_run(argv, environment=env or None, user=user, demux=False)
        output = (result.output or b"").decode("utf-8", "replace")
        return int(result.exit_code or 0), output
    except APIError as exc:
        raise ContainerError(f"running a command in the database failed: {_explain(exc)}"
                             ) from None  # fmt: skip
    finally:
        engine.close()


def wait_ready(
    container_id: str, argv: list[str], env: dict[str, str] | None, timeout: float,
) -> float:  # fmt: skip
    """Run the engine's readiness check every 0.25 s until it exits 0; returns the
    seconds it took. A container that stops, or a check that never passes within
    ``timeout``, raises :class:`ContainerError` with the container's last log lines."""
    began = time.monotonic()
    engine = client(timeout=60)
    try:
        container = _owned(engine, container_id)
        if container is None:
            raise ContainerError("the database's container is gone")
        restarts = None
        while True:
            container.reload()
            state = container.attrs["State"]
            count = int(container.attrs.get("RestartCount", 0))
            restarts = count if restarts is None else restarts
            if count > restarts or (not state.get("Running") and not state.get("Restarting")):
                code = state.get("ExitCode")
                raise ContainerError(_ended(container, f"the database stopped (exit code {code})"))
            if state.get("Running") and not state.get("Restarting"):
                try:
                    result = container.exec_run(argv, environment=env or None)
                    if result.exit_code == 0:
                        return time.monotonic() - began
                except APIError:
                    pass  # the container is (re)starting
            if time.monotonic() - began > timeout:
                what = f"the database did not accept connections within {timeout:g} s"
                raise ContainerError(_ended(container, what))
            time.sleep(READY_POLL_SECONDS)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"checking the database failed: {_explain(exc)}") from None
    finally:
        engine.close()


def _ended(container, what: str, tail: int = 15) -> str:
    try:
        lines = container.logs(tail=tail).decode("utf-8", "replace").splitlines()
    except APIError:
        lines = []
    return f"{what}; its last log lines:\n" + "\n".join(lines) if lines else what


def container_of(database_id: int) -> str | None:
    """The id of this installation's container of a database, running or not."""
    engine = client(timeout=30)
    try:
        found = engine.containers.list(
            all=True, filters={"label": f"{LABEL_DATABASE}={database_id}"}
        )
        mine = [c for c in found if installation.owns(c.labels)]
        return mine[0].id if mine else None
    except (APIError, DockerException) as exc:
        raise ContainerError(f"finding the database's container failed: {_explain(exc)}") from None
    finally:
        engine.close()


def public_address(database: Database, container_id: str) -> str:
    """Where Traefik, on this host, reaches the database: ``ip:port`` of its container on
    the project's network (a new container, or a restarted one, may have a new one)."""
    engine = client(timeout=30)
    try:
        networks = engine.api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    except (APIError, DockerException) as exc:
        raise ContainerError(f"reading the database's address failed: {_explain(exc)}") from None
    finally:
        engine.close()
    ip = (networks.get(project_network(database.project_id)) or {}).get("IPAddress")
    if not ip:
        raise ContainerError("the database's container has no address on its project's network")
    return f"{ip}:{engines.spec(database.engine).port}"


def _act(container_id: str, what: str, act: Callable) -> None:
    engine = client(timeout=STOP_TIMEOUT_SECONDS + 60)
    try:
        container = _owned(engine, container_id)
        if container is None:
            raise ContainerError("the database's container is gone")
        act(container)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"{what} the database failed: {_explain(exc)}") from None
    finally:
        engine.close()


def stop(container_id: str) -> None:
    _act(container_id, "stopping", lambda c: c.stop(timeout=STOP_TIMEOUT_SECONDS))


def start_existing(container_id: str) -> None:
    _act(container_id, "starting", lambda c: c.start())


def restart(container_id: str) -> None:
    _act(container_id, "restarting", lambda c: c.restart(timeout=STOP_TIMEOUT_SECONDS))


def remove(container_id: str | None, database_id: int) -> None:
    """Stop and remove the database's container(s) of this installation; never a
    volume (the volume waits out its grace period)."""
    engine = client(timeout=STOP_TIMEOUT_SECONDS + 60)
    try:
        seen = []
        if container_id:
            seen.append(container_id)
        for container in engine.containers.list(
            all=True, filters={"label": f"{LABEL_DATABASE}={database_id}"}
        ):
            seen.append(container.id)
        for cid in dict.fromkeys(seen):
            container = _owned(engine, cid)
            if container is not None:
                _remove(container)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"removing the database failed: {_explain(exc)}") from None
    finally:
        engine.close()


def state(container_id: str | None) -> str:
    """``running``, ``restarting``, ``exited``, ``created`` …, or ``missing``."""
    if not container_id:
        return "missing"
    engine = client(timeout=30)
    try:
        container = _owned(engine, container_id)
        if container is None:
            return "missing"
        return str(container.attrs["State"].get("Status") or "unknown")
    except (APIError, DockerException):
        return "unknown"
    finally:
        engine.close()


def observed(container_id: str | None) -> tuple[str, str]:
    """What the container is doing, for the watcher: ``(state, why)``; ``why`` says, for
    a container that is not running, how it ended (exit code, out of memory, its last
    lines). ``state`` is ``unknown`` when the engine did not answer."""
    if not container_id:
        return "missing", "its container is gone (removed outside Slipway)"
    engine = client(timeout=30)
    try:
        container = _owned(engine, container_id)
        if container is None:
            return "missing", "its container is gone (removed outside Slipway)"
        facts = container.attrs["State"]
        status = str(facts.get("Status") or "unknown")
        if status == "running":
            return status, ""
        what = f"its container {status}"
        if status in ("exited", "dead", "restarting"):
            what += f" (exit code {facts.get('ExitCode')}"
            what += ", out of memory)" if facts.get("OOMKilled") else ")"
        return status, _ended(container, what)
    except (APIError, DockerException):
        return "unknown", ""
    finally:
        engine.close()


def logs(container_id: str, tail: int = 200) -> list[str]:
    """The container's last ``tail`` log lines (stdout and stderr)."""
    engine = client(timeout=30)
    try:
        container = _owned(engine, container_id)
        if container is None:
            return []
        return container.logs(tail=tail).decode("utf-8", "replace").splitlines()
    except (NotFound, APIError):
        return []
    finally:
        engine.close()
