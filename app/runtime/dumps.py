"""Docker's side of the backups of managed databases and volumes.

Dumps run inside the database's own container through the exec API and stream out
of it (no copy in the container; the password reaches the tool through the exec's
environment, never its argv). Files go in with ``put_archive`` as a tar stream
made on the fly. A volume is read with ``get_archive`` from a helper container
that mounts it read-only (created, never started: no tool of the image runs).
Drills restore into a scratch container on a scratch network, removed after.
"""

from __future__ import annotations

import io
import logging
import secrets
import socket
import struct
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from docker.errors import APIError, DockerException, NotFound

from app.runtime import installation
from app.runtime.engine import LABEL_APP, ContainerError, client
from app.runtime.engine import explain as _explain
from app.runtime.volumes import LABEL_DATABASE

log = logging.getLogger("slipway.runtime.dumps")
LABEL_SCRATCH = "slipway.scratch"  # drill and helper containers, networks: removed after
FRAME = struct.Struct(">BxxxL")
TAIL = 4000


def _owned(labels: dict | None) -> bool:
    labels = labels or {}
    return labels.get(installation.LABEL_INSTALLATION) == installation.current_id()


def database_container(database_id: int, fallback: str | None = None) -> str:
    """The container of a managed database: labelled ``slipway.database=<id>`` and
    this installation's (as ``runtime.databases.container_of`` finds it)."""
    engine = client(timeout=30)
    try:
        found = engine.containers.list(
            all=True, filters={"label": f"{LABEL_DATABASE}={database_id}"}
        )
        for container in found:
            if _owned(container.labels) and not container.labels.get(LABEL_SCRATCH):
                return container.id
        if fallback:
            try:
                container = engine.containers.get(fallback)
                if container.labels.get(LABEL_DATABASE) == str(database_id) and _owned(
                    container.labels
                ):
                    return container.id
            except NotFound:
                pass
    except (APIError, DockerException) as exc:
        raise ContainerError(
            f"finding database {database_id}'s container: {_explain(exc)}"
        ) from None
    finally:
        engine.close()
    raise ContainerError(f"database {database_id} has no container (is it created?)")


def container_ip(container_id: str) -> str:
    """The container's address on its (first) network: reachable from this host."""
    engine = client(timeout=30)
    try:
        networks = engine.api.inspect_container(container_id)["NetworkSettings"]["Networks"]
    finally:
        engine.close()
    for net in networks.values():
        if net.get("IPAddress"):
            return net["IPAddress"]
    raise ContainerError("the database's container has no network address (is it running?)")


def is_running(container_id: str) -> bool:
    engine = client(timeout=30)
    try:
        return bool(engine.api.inspect_container(container_id)["State"]["Running"])
    finally:
        engine.close()


# ---- exec ---------------------------------------------------------------------


class ExecStream:
    """A command run in a container: ``read`` gives its stdout; stderr is kept (tail).

    Reads the engine's multiplexed stream itself (8-byte frame headers), in large
    buffered reads. ``finish`` waits for the exit code and raises on a failure.
    """

    def __init__(self, container_id: str, argv: list[str], env: dict[str, str] | None = None,
                 *, stdin: bool = False, what: str = ""):  # fmt: skip
        self.what = what or argv[0]
        self.engine = client(timeout=None)
        api = self.engine.api
        try:
            self.exec_id = api.exec_create(container_id, argv, stdout=True, stderr=True,
                                           stdin=stdin, environment=env or {})["Id"]  # fmt: skip
            self.sock = api.exec_start(self.exec_id, socket=True)
        except (APIError, DockerException) as exc:
            self.engine.close()
            raise ContainerError(f"{self.what} could not start: {_explain(exc)}") from None
        self.raw = getattr(self.sock, "_sock", self.sock)
        self.buf = io.BufferedReader(self.sock, 1 << 20)
        self.left, self.err, self.eof = 0, bytearray(), False

    def write(self, data: bytes) -> None:
        self.raw.sendall(data)

    def close_stdin(self) -> None:
        self.raw.shutdown(socket.SHUT_WR)

    def _frame(self) -> bool:
        """Move to the next stdout frame (stderr frames are kept); False at the end."""
        while True:
            header = self.buf.read(FRAME.size)
            if len(header) < FRAME.size:
                self.eof = True
                return False
            kind, size = FRAME.unpack(header)
            if kind == 1:
                self.left = size
                return True
            self.err += self.buf.read(size)
            del self.err[:-TAIL]

    def read(self, n: int = 1 << 20) -> bytes:
        parts, want = [], n
        while want > 0 and not self.eof:
            if self.left == 0 and not self._frame():
                break
            chunk = self.buf.read(min(want, self.left))
            if not chunk:
                self.eof = True
                break
            self.left -= len(chunk)
            want -= len(chunk)
            parts.append(chunk)
        return b"".join(parts)

    def stderr(self) -> str:
        return bytes(self.err).decode(errors="replace").strip()

    def finish(self) -> None:
        """Drain, close, and raise :class:`ContainerError` unless the command exited 0."""
        try:
            while self.read():
                pass
            code = None
            for _ in range(100):
                info = self.engine.api.exec_inspect(self.exec_id)
                if not info.get("Running"):
                    code = info.get("ExitCode")
                    break
                time.sleep(0.05)
        finally:
            self.close()
        if code != 0:
            raise ContainerError(f"{self.what} exited with {code}: {self.stderr()[-1500:]}")

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            self.engine.close()


@contextmanager
def exec_out(container_id: str, argv: list[str], env: dict[str, str] | None = None,
             what: str = "") -> Iterator[ExecStream]:  # fmt: skip
    """Run ``argv`` in the container; yields its stdout; raises if it exits non-zero."""
    stream = ExecStream(container_id, argv, env, what=what)
    try:
        yield stream
    except BaseException:
        stream.close()
        raise
    stream.finish()


def exec_text(container_id: str, argv: list[str], env: dict[str, str] | None = None,
              what: str = "") -> str:  # fmt: skip
    """A short command's stdout (decoded); raises if it exits non-zero."""
    with exec_out(container_id, argv, env, what) as stream:
        out = bytearray()
        while chunk := stream.read():
            out += chunk
    return out.decode(errors="replace")


def exec_stdin(container_id: str, argv: list[str], source: Path, env: dict[str, str] | None = None,
               what: str = "") -> str:  # fmt: skip
    """Run ``argv`` with ``source`` on its stdin; returns the stderr tail; raises on failure."""
    stream = ExecStream(container_id, argv, env, stdin=True, what=what)
    try:
        with open(source, "rb") as fh:
            while chunk := fh.read(1 << 20):
                stream.write(chunk)
        stream.close_stdin()
    except BaseException:
        stream.close()
        raise
    stream.finish()
    return stream.stderr()


# ---- files in and out ------------------------------------------------------------


def _tar_of(source: Path, name: str, *, uid: int = 0, gid: int = 0, mode: int = 0o600):
    """A one-file tar stream, made as it is read (the file is never held in memory)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.uid, info.gid = source.stat().st_size, mode, uid, gid
    info.mtime = int(time.time())
    yield info.tobuf(format=tarfile.USTAR_FORMAT)
    with open(source, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk
    pad = -info.size % 512
    yield b"\0" * (pad + 1024)


def put_file(container_id: str, directory: str, name: str, source: Path, **owner) -> None:
    """Put ``source`` into the container (running or not) as ``directory/name``."""
    engine = client(timeout=None)
    try:
        if not engine.api.put_archive(container_id, directory, _tar_of(source, name, **owner)):
            raise ContainerError(f"copying {name} into the container failed")
    except (APIError, DockerException) as exc:
        raise ContainerError(f"copying {name} into the container failed: {_explain(exc)}") from None
    finally:
        engine.close()


def _helper(engine, image: str, mounts: list, command: list[str] | None = None):
    from docker.types import Mount

    labels = {"slipway": "1", LABEL_SCRATCH: "helper"} | installation.labels()
    return engine.containers.create(
        image, command=command, entrypoint=[] if command else None, labels=labels,
        mounts=[Mount(**m) for m in mounts], network_mode="none", user="0",
        name=f"slipway-helper-{secrets.token_hex(5)}",
    )  # fmt: skip


@contextmanager
def volume_archive(docker_name: str, image: str) -> Iterator[io.RawIOBase]:
    """A tar stream of a volume's content (entries under ``volume/``), read through a
    helper container that mounts it read-only and is never started; removed after."""
    engine = client(timeout=None)
    helper = None
    try:
        helper = _helper(engine, image, [dict(target="/volume", source=docker_name,
                                              type="volume", read_only=True)])  # fmt: skip
        response = engine.api.get(engine.api._url("/containers/{0}/archive", helper.id),
                                  params={"path": "/volume"}, stream=True)  # fmt: skip
        engine.api._raise_for_status(response)
        response.raw.decode_content = True
        yield response.raw
        response.close()
    except (APIError, DockerException) as exc:
        raise ContainerError(f"reading volume {docker_name}: {_explain(exc)}") from None
    finally:
        if helper is not None:
            _remove(helper)
        engine.close()


def volume_restore(docker_name: str, image: str, archive: Path) -> None:
    """Replace a volume's content with a tar made by :func:`volume_archive`."""
    engine = client(timeout=None)
    mount = [dict(target="/volume", source=docker_name, type="volume")]
    try:
        wipe = _helper(engine, image, mount, ["find", "/volume", "-mindepth", "1", "-delete"])
        try:
            wipe.start()
            code = wipe.wait(timeout=600).get("StatusCode")
            if code != 0:
                raise ContainerError(f"emptying volume {docker_name} failed ({code}): "
                                     f"{wipe.logs(tail=20).decode(errors='replace')}")  # fmt: skip
        finally:
            _remove(wipe)
        helper = _helper(engine, image, mount)
        try:
            with open(archive, "rb") as fh:
                if not engine.api.put_archive(helper.id, "/", fh):
                    raise ContainerError(f"writing volume {docker_name} failed")
        finally:
            _remove(helper)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"restoring volume {docker_name}: {_explain(exc)}") from None
    finally:
        engine.close()


def volume_image(docker_name: str, fallback: str) -> str:
    """An image Slipway already has for a helper: that of a container using the volume."""
    engine = client(timeout=30)
    try:
        for container in engine.containers.list(all=True, filters={"volume": docker_name}):
            if _owned(container.labels) and container.attrs.get("Image"):
                return container.attrs["Image"]
    finally:
        engine.close()
    return fallback


def _remove(container) -> None:
    try:
        container.remove(force=True, v=True)
    except NotFound:
        pass
    except (APIError, DockerException) as exc:
        log.warning("removing helper container %s: %s", container.id[:12], exc)


# ---- stop and start ----------------------------------------------------------------


def app_containers(app_id: int) -> list[str]:
    """The running containers of an app (this installation's)."""
    engine = client(timeout=30)
    try:
        found = engine.containers.list(filters={"label": f"{LABEL_APP}={app_id}"})
        return [c.id for c in found if _owned(c.labels) or installation.owns(c.labels)]
    finally:
        engine.close()


def stop(container_ids: list[str], timeout: int = 30) -> None:
    engine = client(timeout=timeout + 30)
    try:
        for cid in container_ids:
            try:
                engine.api.stop(cid, timeout=timeout)
            except (APIError, DockerException) as exc:
                raise ContainerError(f"stopping {cid[:12]}: {_explain(exc)}") from None
    finally:
        engine.close()


def start(container_ids: list[str]) -> list[str]:
    """Start each container; every one is tried. Returns the errors (empty: all started)."""
    errors = []
    engine = client(timeout=60)
    try:
        for cid in container_ids:
            try:
                engine.api.start(cid)
            except (APIError, DockerException) as exc:
                errors.append(f"starting {cid[:12]}: {_explain(exc)}")
    finally:
        engine.close()
    return errors


# ---- Redis restore ---------------------------------------------------------------------

# A fixed command (nothing interpolated): the restored RDB becomes dump.rdb and the base
# of a new multi-part append-only file (Redis 7), so a server started with
# ``--appendonly yes`` loads it (with no AOF at all it would start empty and write an
# empty AOF), and later writes go to the new incr file.
REDIS_PUT = (
    "set -e; cd /data; rm -rf appendonlydir appendonly.aof; mv dump.rdb.in dump.rdb; "
    "mkdir appendonlydir; cp dump.rdb appendonlydir/appendonly.aof.1.base.rdb; "
    ": > appendonlydir/appendonly.aof.1.incr.aof; "
    "printf 'file appendonly.aof.1.base.rdb seq 1 type b\\nfile appendonly.aof.1.incr.aof "
    "seq 1 type i\\n' > appendonlydir/appendonly.aof.manifest; "
    "chown -R --reference=/data dump.rdb appendonlydir"
)


def redis_restore(container_id: str, rdb: Path, data_dir: str, wait_ready) -> None:
    """Stop the container, put ``dump.rdb`` into its volume with the append-only files
    removed (Redis then loads the RDB and writes a new AOF from it), start it again."""
    engine = client(timeout=None)
    try:
        container = engine.containers.get(container_id)
        image = container.attrs["Image"]
        mounts = [m for m in container.attrs.get("Mounts", []) if m.get("Destination") == data_dir]
        if not mounts or mounts[0].get("Type") != "volume":
            raise ContainerError(f"the Redis container has no volume at {data_dir}")
        container.stop(timeout=30)
        try:
            mount = dict(target="/data", source=mounts[0]["Name"], type="volume")
            helper = _helper(engine, image, [mount], ["sh", "-c", REDIS_PUT])
            try:
                if not engine.api.put_archive(helper.id, "/data", _tar_of(rdb, "dump.rdb.in")):
                    raise ContainerError("copying dump.rdb into the volume failed")
                helper.start()
                code = helper.wait(timeout=300).get("StatusCode")
                if code != 0:
                    raise ContainerError(
                        f"putting dump.rdb in place failed ({code}): "
                        f"{helper.logs(tail=20).decode(errors='replace')}"
                    )
            finally:
                _remove(helper)
        finally:
            container.start()
        wait_ready(container_id)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"restoring Redis: {_explain(exc)}") from None
    finally:
        engine.close()


# ---- drills: a scratch container ---------------------------------------------------------


@contextmanager
def scratch(image: str, *, env: dict[str, str], command: list[str] | None,
            files: tuple[tuple[str, str, Path], ...] = ()) -> Iterator[str]:  # fmt: skip
    """A container of ``image`` on a network of its own, started after ``files``
    ((directory, name, source) each) are put in; removed, with its network and
    anonymous volumes, whatever happens. Yields its id."""
    engine = client(timeout=None)
    tag = secrets.token_hex(5)
    labels = {"slipway": "1", LABEL_SCRATCH: "drill"} | installation.labels()
    network = container = None
    try:
        network = engine.networks.create(f"slipway-drill-{tag}", driver="bridge", internal=True,
                                          labels=labels)  # fmt: skip
        container = engine.containers.create(image, command=command, environment=env,
                                             labels=labels, name=f"slipway-drill-{tag}",
                                             network=network.name)  # fmt: skip
        for directory, name, source in files:
            if not engine.api.put_archive(
                container.id, directory, _tar_of(source, name, mode=0o644)
            ):
                raise ContainerError(f"copying {name} into the scratch container failed")
        container.start()
        yield container.id
    except (APIError, DockerException) as exc:
        raise ContainerError(f"scratch container: {_explain(exc)}") from None
    finally:
        if container is not None:
            _remove(container)
        if network is not None:
            try:
                network.remove()
            except (APIError, DockerException) as exc:
                log.warning("removing scratch network %s: %s", network.name, exc)
        engine.close()


def scratch_left() -> list[str]:
    """Scratch containers of this installation still there (none, after every drill)."""
    engine = client(timeout=30)
    try:
        found = engine.containers.list(all=True, filters={"label": LABEL_SCRATCH})
        return [c.name for c in found if _owned(c.labels)]
    finally:
        engine.close()


def wait_exec_ok(container_id: str, argv: list[str], env: dict[str, str], timeout: float) -> None:
    """Run ``argv`` in the container until it exits 0 (the engine is ready)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            exec_text(container_id, argv, env, what="the readiness check")
            return
        except ContainerError as exc:
            last = str(exc)
            if "is not running" in last:
                raise ContainerError(f"the database's container stopped: {last[-300:]}") from None
        time.sleep(0.5)
    raise ContainerError(f"the database did not become ready in {timeout:.0f} s: {last[-300:]}")
