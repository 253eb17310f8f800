"""Container output: following it live, its recent lines, and which replicas to read.

The web process reads these; it never starts or stops anything.
"""

from __future__ import annotations

from collections.abc import Iterator

from docker.errors import DockerException, NotFound

from app.runtime import installation
from app.runtime.engine import LABEL_APP, LABEL_DEPLOYMENT, LABEL_REPLICA, ContainerError, client
from app.runtime.engine import explain as _explain


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
        pairs = [
            (c.id, f"r{(c.labels or {}).get(LABEL_REPLICA, '?')}")
            for c in found
            if installation.owns(c.labels)
        ]
        return sorted(pairs, key=lambda pair: pair[1])
    finally:
        engine.close()
