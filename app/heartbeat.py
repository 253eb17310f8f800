"""A heartbeat thread: it keeps a Redis key alive while a long job runs.

The deploy pipeline and the backup runs each refresh an ``alive`` key with a
short TTL; their reapers treat a missing key as a dead worker. Stopping the beat
deletes the key at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from app.extensions import redis

log = logging.getLogger("slipway.heartbeat")


class Heartbeat(threading.Thread):
    """Sets ``key`` (TTL ``ttl`` seconds) every ``interval`` seconds until :meth:`stop`.

    ``also`` runs on each beat too (the pipeline extends its per-app lock there).
    """

    def __init__(
        self, key: str, ttl: int, interval: float, also: Callable[[], object] | None = None
    ):
        super().__init__(daemon=True)
        self.key, self.ttl, self.interval = key, ttl, interval
        self.also = also
        # Taken in the caller's app context: the thread has none.
        self.client = redis.client
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                self.client.set(self.key, "1", ex=self.ttl)
                if self.also is not None:
                    self.also()
            except Exception:  # noqa: BLE001 - a missed beat must not kill the job
                log.warning("heartbeat failed for %s", self.key)
            self.stopped.wait(self.interval)

    def stop(self) -> None:
        self.stopped.set()
        self.client.delete(self.key)
