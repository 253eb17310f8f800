"""Runtime log lines: one engine stream per container per process, fanned out.

Every Logs page open on the same container in this web process shares one
``docker logs --follow`` stream and one reader thread: under a flood the
parsing happens once, not once per tail. Each tail has its own bounded
:class:`LineBuffer`; a tail that joins a running stream first gets the stream's
last lines. When the last tail leaves, the stream is closed.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence

from app.deploys import buildlog
from app.live import logformat
from app.runtime import containers

LINE_BYTES = logformat.MAX_LINE + 100  # a longer line is cut before it is kept


class LineBuffer:
    """Lines read from containers, bounded: beyond ``capacity`` they are counted, not kept."""

    def __init__(self, capacity: int, max_bytes: int):
        self.lines: collections.deque[tuple[str, bytes]] = collections.deque()
        self.capacity = capacity
        self.max_bytes = max_bytes
        self.dropped = 0
        self.lock = threading.Lock()

    def full(self) -> bool:
        return len(self.lines) >= self.capacity

    def drop(self, count: int) -> None:
        with self.lock:
            self.dropped += count

    def add(self, source: str, lines: list[bytes]) -> None:
        with self.lock:
            room = self.capacity - len(self.lines)
            if room < len(lines):
                self.dropped += len(lines) - max(room, 0)
                lines = lines[: max(room, 0)]
            self.lines.extend((source, line[: self.max_bytes]) for line in lines)

    def take(self, limit: int) -> tuple[list[tuple[str, bytes]], int]:
        """Up to ``limit`` lines in order; everything else is dropped; returns (lines, skipped)."""
        with self.lock:
            taken = [self.lines.popleft() for _ in range(min(limit, len(self.lines)))]
            skipped = self.dropped + len(self.lines)
            self.lines.clear()
            self.dropped = 0
        return taken, skipped


class ContainerFollow:
    """One container's followed output, shared by every tail of it in this process."""

    _registry: dict[str, ContainerFollow] = {}
    _registry_lock = threading.Lock()

    def __init__(self, container_id: str, label: str, tail: int):
        self.container_id = container_id
        self.label = label
        self.recent: collections.deque[bytes] = collections.deque(maxlen=tail)
        self.buffers: list[LineBuffer] = []
        self.lock = threading.Lock()  # guards buffers and recent
        self.ended = False
        self.stream = containers.follow_logs(container_id, tail=tail)
        threading.Thread(target=self._read, daemon=True, name=f"log-follow-{label}").start()

    @classmethod
    def join(cls, container_id: str, label: str, buffer: LineBuffer, tail: int) -> ContainerFollow:
        """Follow ``container_id`` into ``buffer``, sharing a running stream if there is one."""
        with cls._registry_lock:
            follow = cls._registry.get(container_id)
            if follow is None or follow.ended:
                follow = cls(container_id, label, tail)
                cls._registry[container_id] = follow
            with follow.lock:
                buffer.add(label, list(follow.recent))
                follow.buffers.append(buffer)
        return follow

    def leave(self, buffer: LineBuffer) -> None:
        with self._registry_lock:
            with self.lock:
                if buffer in self.buffers:
                    self.buffers.remove(buffer)
                last = not self.buffers
            if last:
                if self._registry.get(self.container_id) is self:
                    del self._registry[self.container_id]
                self.stream.close()

    def _read(self) -> None:
        pending = b""
        for chunk in self.stream:
            with self.lock:
                if self.buffers and all(b.full() for b in self.buffers):
                    # A flood nobody can take: count its lines, do not split them.
                    count = chunk.count(b"\n")
                    for buffer in self.buffers:
                        buffer.drop(count)
                    pending = b""
                    continue
            pending += chunk
            if b"\n" not in pending and len(pending) <= LINE_BYTES:
                continue
            *lines, pending = pending.split(b"\n")
            if len(pending) > LINE_BYTES:  # a huge line without a newline
                lines.append(pending)
                pending = b""
            self._deliver(lines)
        if pending:
            self._deliver([pending])
        with self.lock:
            self.ended = True

    def _deliver(self, lines: list[bytes]) -> None:
        lines = [line[:LINE_BYTES] for line in lines]  # what is kept stays small
        with self.lock:
            self.recent.extend(lines)
            for buffer in self.buffers:
                buffer.add(self.label, lines)


def parse_runtime_line(source: str, raw: bytes, secrets: Sequence[str] = ()) -> dict:
    """``<RFC 3339 timestamp> <text>`` → ``{"ts", "src", "text"}`` (text not yet escaped),
    with the app's ``secrets`` (:func:`app.deploys.buildlog.secrets_to_redact`) redacted."""
    text = buildlog.redact(raw.decode("utf-8", "replace").rstrip("\r"), secrets)
    stamp, _, rest = text.partition(" ")
    if len(stamp) >= 19 and stamp[4] == "-" and "T" in stamp:
        ts = stamp[:10] + " " + stamp[11:23]
    else:
        ts, rest = "", text
    return {"ts": ts, "src": source, "text": rest}


def runtime_line(source: str, raw: bytes, secrets: Sequence[str] = ()) -> dict:
    """A frame line: the text, secrets redacted, as escaped HTML (app.logformat)."""
    line = parse_runtime_line(source, raw, secrets)
    line["html"] = str(logformat.to_html(line.pop("text")))
    return line
