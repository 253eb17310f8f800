"""One worker process for every queue: RQ worker loops in threads, one lane per queue.

A lane is a set of threads, each an RQ :class:`SimpleWorker` on the lane's queue
(registered in Redis under its own name, so the Workers page shows each one and
its job). Jobs run in the thread that took them, inside their own app context
(``app.jobs``): no fork, so nothing is imported or connected again per job.

Lanes are elastic: whenever a lane's last idle thread takes a job, another
thread starts (up to the lane's cap), so a job waiting inside a thread (a
deployment waiting for its app's lock or for a build slot) never holds up the
next job of that queue; a thread that finishes a job while enough others are
idle ends. ``backup`` keeps one thread: backups run one at a time, as before.

Threads change what RQ does by default, each checked by a test:

- signal handlers can only be set in the main thread: the lanes install none;
  :func:`serve_all` owns SIGTERM/SIGINT (the first is a warm shutdown, running
  jobs finish; a second stops at once);
- job timeouts use RQ's :class:`TimerDeathPenalty` (an exception raised in the
  job's thread), not SIGALRM;
- a :class:`SimpleWorker` registers a started job as running until its job
  timeout (+60 s), so RQ's registry cleanup never calls a 6 h backup abandoned;
- the idle dequeue waits :data:`POLL_SECONDS`, so a stop is noticed that soon.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass

import redis as redis_lib
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer
from rq.timeouts import TimerDeathPenalty
from rq.worker import SimpleWorker

log = logging.getLogger("slipway.lanes")
# How long an idle lane thread blocks on its queue before it looks for a stop request.
POLL_SECONDS = 2


@dataclass(frozen=True)
class LaneSpec:
    queue: str
    spare: int  # idle threads kept ready
    most: int  # threads at most


# Every queue Slipway uses, in one process. ``deploy`` may have many waiting jobs at
# once (one per app at most, plus its successor); each has its own thread.
LANES = (
    LaneSpec("deploy", spare=1, most=32),
    LaneSpec("backup", spare=1, most=1),
    LaneSpec("notify", spare=1, most=4),
    LaneSpec("default", spare=1, most=4),
)


class LaneWorker(SimpleWorker):
    """An RQ worker loop that runs in a thread of a :class:`Lane`."""

    death_penalty_class = TimerDeathPenalty

    def __init__(self, lane: Lane, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.lane = lane

    @property
    def dequeue_timeout(self) -> int:
        return POLL_SECONDS

    def _install_signal_handlers(self) -> None:
        pass  # off the main thread this would raise; serve_all owns the signals

    def procline(self, message) -> None:
        pass  # one process title for many threads would only flicker

    def dequeue_job_and_maintain_ttl(self, timeout, max_idle_time=None):
        # RQ's loop blocks until a job comes; give up every poll to look for a stop.
        while not self._stop_requested:
            result = super().dequeue_job_and_maintain_ttl(timeout, max_idle_time=timeout)
            if result is None:
                continue
            if not self._stop_requested:
                return result
            # Taken while the process began to stop: back to the front, for the next worker.
            job, queue = result
            with self.connection.pipeline() as pipe:
                pipe.lrem(queue.intermediate_queue_key, 1, job.id)
                queue.push_job_id(job.id, pipeline=pipe, at_front=True)
                pipe.execute()
        return None

    def execute_job(self, job, queue) -> None:
        self.lane.job_started()
        try:
            super().execute_job(job, queue)
        finally:
            if self.lane.job_ended(self):
                self._stop_requested = True  # surplus: this thread ends after its job


class Lane:
    """The threads serving one queue."""

    def __init__(self, spec: LaneSpec, connection: redis_lib.Redis):
        self.spec = spec
        self.connection = connection
        self._lock = threading.Lock()
        self._workers: dict[LaneWorker, threading.Thread] = {}
        self._leaving: set[LaneWorker] = set()
        self._busy = 0
        self._made = 0
        self._stopping = False

    @property
    def threads(self) -> int:
        with self._lock:
            return len(self._workers)

    def start(self) -> None:
        with self._lock:
            for _ in range(self.spec.spare):
                self._spawn()

    def _spawn(self) -> None:
        """Start one more thread (the caller holds ``_lock``)."""
        if self._stopping or len(self._workers) >= self.spec.most:
            return
        self._made += 1
        name = f"{socket.gethostname()}.{os.getpid()}.{self.spec.queue}-{self._made}"
        worker = LaneWorker(
            self, [self.spec.queue], name=name, connection=self.connection,
            serializer=JSONSerializer,
        )  # fmt: skip
        thread = threading.Thread(target=self._run, args=(worker,), name=name, daemon=True)
        self._workers[worker] = thread
        thread.start()

    def _idle(self) -> int:
        return len(self._workers) - len(self._leaving) - self._busy

    def _run(self, worker: LaneWorker) -> None:
        try:
            worker.work(logging_level=None)
        except Exception:  # noqa: BLE001 - a broken loop must not take the process down
            log.exception("lane thread %s stopped", worker.name)
        finally:
            with self._lock:
                self._workers.pop(worker, None)
                self._leaving.discard(worker)
                if self._idle() < self.spec.spare:
                    self._spawn()  # a loop that died (Redis away) is replaced

    def job_started(self) -> None:
        with self._lock:
            self._busy += 1
            if self._idle() < self.spec.spare:
                self._spawn()

    def job_ended(self, worker: LaneWorker) -> bool:
        """Count the job done; True if ``worker`` is surplus and should end."""
        with self._lock:
            self._busy -= 1
            if self._idle() > self.spec.spare:
                self._leaving.add(worker)
                return True
            return False

    def stop(self) -> None:
        """Warm stop: every thread ends after its current job (idle ones within a poll)."""
        with self._lock:
            self._stopping = True
            for worker in self._workers:
                worker._stop_requested = True

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the threads to end; True when they all did."""
        with self._lock:
            threads = list(self._workers.values())
        for thread in threads:
            thread.join(timeout)
        return not any(t.is_alive() for t in threads)


class ThreadScheduler(RQScheduler):
    """RQ's scheduler (``enqueue_in`` retries of notifications) in a thread, not a fork."""

    def _install_signal_handlers(self) -> None:
        pass


def start_rq_scheduler(connection: redis_lib.Redis, queues: list[str]) -> ThreadScheduler:
    scheduler = ThreadScheduler(queues, connection=connection, serializer=JSONSerializer)

    def run() -> None:
        try:
            scheduler.acquire_locks()
            scheduler.work()
        except Exception:  # noqa: BLE001 - notifications retry later; the lanes go on
            log.exception("RQ's scheduler stopped")

    threading.Thread(target=run, name="rq-scheduler", daemon=True).start()
    return scheduler
