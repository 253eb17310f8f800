"""A deployment's build log: one row per line, inserted in batches, published live.

Lines are redacted (secret env values never reach the log), cut when very long,
numbered with a per-deployment sequence, inserted in batches, and each batch
published on the Redis channel ``slipway:deploy-log:<installation>:<db>:<id>`` for live tails. A
tail replays rows up to a sequence number and then follows the channel from
there, so the sequence lets it drop what it has already shown.

The stored log has a cap (``BUILD_LOG_MAX_BYTES``, the bytes of the lines' text
plus a newline each): once a line would pass it, one marker line (stream
``slipway``) says where the log was cut, and later build output is neither stored
nor published, only counted; the build goes on. Slipway's own lines (and a crashed
container's last lines) may still use a small reserve beyond the cap, so the
reason a deployment failed is never cut away. :meth:`BuildLog.close` adds a line
saying how much was dropped and keeps the counts on the deployment row.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence

from flask import current_app
from sqlalchemy import func, insert, select, update

from app.extensions import db, redis
from app.live import logformat
from app.models import Deployment, DeploymentLogLine
from app.models.base import utcnow
from app.runtime import installation

BATCH_LINES = 200
BATCH_SECONDS = 0.25
REDACTED = "••••••"
# Room beyond the cap for Slipway's own lines (steps, health checks, the final status
# and reason); a crashed container's last lines may use it too, but leave the last
# part of it to Slipway, whose lines come after them.
RESERVE_BYTES = 64 * 1024
SLIPWAY_ONLY_BYTES = 16 * 1024
RESERVE_STREAMS = ("slipway", "container")
CUT_MARK = "build log cut at "


def secrets_to_redact(values) -> list[str]:
    """The secret values a log must not show, longest first (so a secret containing
    another is redacted whole); values under 4 characters are left alone, since
    redacting them would blank ordinary words."""
    return sorted({s for s in values if s and len(s) >= 4}, key=len, reverse=True)


def redact(text: str, secrets: Sequence[str]) -> str:
    """``text`` with each of ``secrets`` (from :func:`secrets_to_redact`) as ``••••••``.

    Build logs and runtime logs (pages, frames, downloads) both go through this."""
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text


def channel(deployment_id: int) -> str:
    """The pub/sub channel of a deployment's lines. Redis channels are shared by every
    database of a server, and deployment ids overlap between installations: the name
    carries the installation id and the database number, so one installation never
    hears another's lines."""
    db_number = redis.client.connection_pool.connection_kwargs.get("db", 0)
    mine = installation.current_id() or "-"
    return f"slipway:deploy-log:{mine}:{db_number}:{deployment_id}"


def size_text(n: int) -> str:
    """``10 MiB``, ``1.5 MiB``, ``64 KiB``, ``512 bytes``: for log notices."""
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n // size} {unit}" if n % size == 0 else f"{n / size:.1f} {unit}"
    return f"{n} bytes"


def _size(text: str) -> int:
    return len(text.encode("utf-8", "replace")) + 1  # the newline of a downloaded log


class BuildLog:
    """Collects lines for one deployment; call :meth:`close` at the end."""

    def __init__(
        self, deployment_id: int, secrets: list[str] | None = None, max_bytes: int | None = None
    ):
        self.deployment_id = deployment_id
        self.secrets = secrets_to_redact(secrets or [])
        last, stored = db.session.execute(
            select(
                func.max(DeploymentLogLine.seq),
                func.coalesce(func.sum(func.length(DeploymentLogLine.text) + 1), 0),
            ).where(DeploymentLogLine.deployment_id == deployment_id)
        ).one()
        self.seq = last or 0
        self.max_bytes = (
            current_app.config["BUILD_LOG_MAX_BYTES"] if max_bytes is None else max_bytes
        )
        self.stored_bytes = int(stored)
        dep = db.session.get(Deployment, deployment_id)
        self.cut = bool(dep and dep.log_truncated)
        self.dropped_lines = dep.log_dropped_lines if dep else 0
        self.dropped_bytes = dep.log_dropped_bytes if dep else 0
        self.reported = (self.dropped_lines, self.dropped_bytes)
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()

    def redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def line(self, text: str, stream: str = "stdout") -> None:
        text = text.rstrip("\n")
        if self.cut and stream not in RESERVE_STREAMS:
            self._drop(_size(text))  # fast: a flood past the cap costs a count per line
            return
        # Cut after redacting, so that a secret across the cut cannot leave half of itself.
        text = logformat.cut(self.redact(text))
        size = _size(text)
        if self.cut or self.stored_bytes + size > self.max_bytes:
            if not self.cut:
                self._cut_here()
            if not self._in_reserve(stream, size):
                self._drop(size)
                return
        self._append(text, stream, size)
        if len(self.pending) >= BATCH_LINES or time.monotonic() - self.last_flush > BATCH_SECONDS:
            self.flush()

    def _append(self, text: str, stream: str, size: int) -> None:
        self.seq += 1
        self.stored_bytes += size
        self.pending.append(
            {"deployment_id": self.deployment_id, "seq": self.seq, "ts": utcnow(),
             "stream": stream, "text": text}
        )  # fmt: skip

    def _drop(self, size: int) -> None:
        self.dropped_lines += 1
        self.dropped_bytes += size
        if time.monotonic() - self.last_flush > BATCH_SECONDS:
            self.flush()  # reserved lines waiting in the batch still go out in time

    def _in_reserve(self, stream: str, size: int) -> bool:
        if stream == "slipway":
            room = RESERVE_BYTES
        elif stream == "container":
            room = RESERVE_BYTES - SLIPWAY_ONLY_BYTES
        else:
            return False
        return self.stored_bytes + size <= self.max_bytes + room

    def _cut_here(self) -> None:
        """The first line over the cap: mark the cut (stored beyond the cap) and the row."""
        self.cut = True
        self._append(
            f"{CUT_MARK}{size_text(self.max_bytes)}: build output after this line was not "
            "stored (Slipway's own lines still are)", "slipway", 0,
        )  # fmt: skip
        db.session.execute(
            update(Deployment).where(Deployment.id == self.deployment_id).values(log_truncated=True)
        )
        self.flush()

    def info(self, text: str) -> None:
        """A line Slipway itself writes (step changes, reasons)."""
        self.line(text, stream="slipway")

    def close(self) -> None:
        """Say how much build output was dropped (once per new count), then flush."""
        if self.cut and (self.dropped_lines, self.dropped_bytes) != self.reported:
            self.reported = (self.dropped_lines, self.dropped_bytes)
            self._append(
                f"build log: {self.dropped_lines:,} lines ({size_text(self.dropped_bytes)}) of "
                f"output after the cut at {size_text(self.max_bytes)} were not stored",
                "slipway", 0,
            )  # fmt: skip
            db.session.execute(
                update(Deployment)
                .where(Deployment.id == self.deployment_id)
                .values(log_dropped_lines=self.dropped_lines, log_dropped_bytes=self.dropped_bytes)
            )
        self.flush()

    def flush(self) -> None:
        self.last_flush = time.monotonic()
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        db.session.execute(insert(DeploymentLogLine), batch)
        db.session.commit()
        payload = json.dumps(
            [{"seq": r["seq"], "ts": r["ts"].isoformat(), "stream": r["stream"],
              "text": r["text"]} for r in batch]
        )  # fmt: skip
        redis.client.publish(channel(self.deployment_id), payload)


def cut_notice(deployment: Deployment) -> str | None:
    """What the deployment page and the download say about a cut log (None: not cut)."""
    if not deployment.log_truncated:
        return None
    if deployment.log_dropped_lines:
        return (
            "The build log was cut: it reached the limit of stored output, and "
            f"{deployment.log_dropped_lines:,} lines ({size_text(deployment.log_dropped_bytes)}) "
            "of build output after the cut were not stored."
        )
    return (
        "The build log was cut: it reached the limit of stored output, and build output "
        "after the cut is not stored."
    )


def as_text(deployment: Deployment, batch: int = 5000) -> Iterator[str]:
    """The stored log as plain text, for the download, read in batches by ``seq``.

    The first line is Slipway's header (a build cannot write there), saying whether
    the log was cut; lines Slipway wrote itself start with ``[slipway]``.
    """
    notice = cut_notice(deployment)
    yield f"# Build log of deployment #{deployment.id}" + (f". {notice}" if notice else "") + "\n"
    after = 0
    while True:
        rows = db.session.execute(
            select(DeploymentLogLine.seq, DeploymentLogLine.stream, DeploymentLogLine.text)
            .where(DeploymentLogLine.deployment_id == deployment.id, DeploymentLogLine.seq > after)
            .order_by(DeploymentLogLine.seq)
            .limit(batch)
        ).all()
        if not rows:
            return
        yield "".join(
            f"[slipway] {r.text}\n" if r.stream == "slipway" else f"{r.text}\n" for r in rows
        )
        after = rows[-1].seq
