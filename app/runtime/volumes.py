"""Persistent volumes: named Docker volumes of an app or a database, labelled with the
installation and their owner.

Nothing in Slipway removes a volume except :func:`remove`, which only the purge of a
volume past its grace period calls (``app.projects.volumes``); image pruning,
container cleanup and retention never touch volumes. A mount path passes
:func:`check_mount_path` before it reaches the engine.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

from docker.errors import APIError, DockerException, NotFound

from app.runtime import installation
from app.runtime.engine import LABEL_APP, LABEL_PROJECT, ContainerError, client
from app.runtime.engine import explain as _explain

LABEL_VOLUME = "slipway.volume"  # the row's id
LABEL_DATABASE = "slipway.database"
MOUNT_RE = re.compile(r"^/[A-Za-z0-9._/-]*$")
# Where a mount would hide or expose the system, the engine, or its secrets.
REFUSED_MOUNTS = (
    "/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
    "/root", "/run", "/sbin", "/sys", "/usr", "/var/run", "/var/lib/docker",
)  # fmt: skip


class MountPathError(ValueError):
    """The message is written for the person who typed the path."""


def check_mount_path(value: str) -> str:
    """An absolute, normalised path inside the container that hides nothing the
    container needs: no ``..``, no ``/``, ``/proc``, ``/sys``, ``/dev``, ``/etc``, no
    Docker socket. Returns it normalised (``/data/`` → ``/data``)."""
    text = (value or "").strip()
    if not text.startswith("/"):
        raise MountPathError("A mount path is absolute: it starts with '/', like /data.")
    if not MOUNT_RE.fullmatch(text) or len(text) > 255:
        raise MountPathError(
            "A mount path may use letters, digits, '.', '_', '-' and '/' (255 at most)."
        )
    if ".." in text.split("/"):
        raise MountPathError("A mount path cannot contain '..'.")
    path = posixpath.normpath(text)
    if path.startswith("//"):
        path = "/" + path.lstrip("/")
    for refused in REFUSED_MOUNTS:
        if path == refused or (refused != "/" and path.startswith(refused + "/")):
            where = "the container's root" if refused == "/" else refused
            raise MountPathError(f"{path} cannot be mounted over: it would hide {where}.")
    if "docker.sock" in path:
        raise MountPathError("The Docker socket cannot be mounted.")
    return path


@dataclass(frozen=True)
class Mount:
    """A volume mounted into a container: the engine's volume name and the path."""

    docker_name: str
    path: str
    read_only: bool = False


def volume_name(volume_id: int) -> str:
    """The engine's name of volume ``volume_id`` (ids overlap between installations)."""
    mine = installation.current_id()
    return f"slipway-{mine}-v{volume_id}" if mine else f"slipway-v{volume_id}"


def ensure(
    docker_name: str, *, volume_id: int, project_id: int, app_id: int | None = None,
    database_id: int | None = None,
) -> str:  # fmt: skip
    """Create the volume if it is missing (labelled with its owner); returns its name."""
    labels = {"slipway": "1", LABEL_VOLUME: str(volume_id), LABEL_PROJECT: str(project_id)}
    if app_id is not None:
        labels[LABEL_APP] = str(app_id)
    if database_id is not None:
        labels[LABEL_DATABASE] = str(database_id)
    labels |= installation.labels()
    engine = client(timeout=60)
    try:
        try:
            existing = engine.volumes.get(docker_name)
            if not installation.owns(existing.attrs.get("Labels") or {}):
                raise ContainerError(f"volume {docker_name} belongs to another installation")
            return docker_name
        except NotFound:
            pass
        engine.volumes.create(name=docker_name, driver="local", labels=labels)
        return docker_name
    except (APIError, DockerException) as exc:
        raise ContainerError(f"creating volume {docker_name} failed: {_explain(exc)}") from None
    finally:
        engine.close()


def exists(docker_name: str) -> bool:
    engine = client(timeout=30)
    try:
        engine.volumes.get(docker_name)
        return True
    except NotFound:
        return False
    finally:
        engine.close()


def remove(docker_name: str) -> bool:
    """Remove a volume of this installation for good; False while a container still
    uses it. Only the purge of a volume past its grace period calls this."""
    engine = client(timeout=60)
    try:
        volume = engine.volumes.get(docker_name)
        if not installation.owns(volume.attrs.get("Labels") or {}):
            return False
        volume.remove()
        return True
    except NotFound:
        return True
    except APIError:
        return False  # in use (409): a later purge takes it
    finally:
        engine.close()


def docker_mounts(mounts: list[Mount] | tuple[Mount, ...]) -> list:
    """The SDK's mount objects: named volumes only, never a bind of a host path."""
    from docker.types import Mount as DockerMount

    return [
        DockerMount(target=m.path, source=m.docker_name, type="volume", read_only=m.read_only)
        for m in mounts
    ]
