"""A deployment's build log: one row per line, inserted in batches, published live.

Lines are redacted (secret env values never reach the log), cut when very long,
numbered with a per-deployment sequence, inserted in batches, and each batch
published on the Redis channel ``slipway:deploy-log:<id>`` for live tails. A
tail replays rows up to a sequence number and then follows the channel from
there, so the sequence lets it drop what it has already shown.
"""

from __future__ import annotations

import json
import time

from sqlalchemy import func, insert, select

from app.extensions import db, redis
from app.live import logformat
from app.models import DeploymentLogLine
from app.models.base import utcnow

BATCH_LINES = 200
BATCH_SECONDS = 0.25
REDACTED = "••••••"


def channel(deployment_id: int) -> str:
    return f"slipway:deploy-log:{deployment_id}"


class BuildLog:
    """Collects lines for one deployment; call :meth:`flush` (or close) at the end."""

    def __init__(self, deployment_id: int, secrets: list[str] | None = None):
        self.deployment_id = deployment_id
        # Longest first, so a secret containing another is redacted whole.
        self.secrets = sorted({s for s in (secrets or []) if len(s) >= 4}, key=len, reverse=True)
        last = db.session.scalar(
            select(func.max(DeploymentLogLine.seq)).where(
                DeploymentLogLine.deployment_id == deployment_id
            )
        )
        self.seq = last or 0
        self.pending: list[dict] = []
        self.last_flush = time.monotonic()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def line(self, text: str, stream: str = "stdout") -> None:
        # Cut after redacting, so that a secret across the cut cannot leave half of itself.
        text = logformat.cut(self.redact(text.rstrip("\n")))
        self.seq += 1
        self.pending.append(
            {"deployment_id": self.deployment_id, "seq": self.seq, "ts": utcnow(),
             "stream": stream, "text": text}
        )  # fmt: skip
        if len(self.pending) >= BATCH_LINES or time.monotonic() - self.last_flush > BATCH_SECONDS:
            self.flush()

    def info(self, text: str) -> None:
        """A line Slipway itself writes (step changes, reasons)."""
        self.line(text, stream="slipway")

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
