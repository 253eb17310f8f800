"""The worker process: every queue and the scheduler in one process (``app.lanes``).

``python worker.py`` serves every queue, each in its own lane of threads, and runs
the scheduler (``app.scheduler``) in a thread, active only while this process holds
the scheduler's Redis lease: a second worker process on the same Redis shares the
jobs and stands by as scheduler. The app is created and warmed once; jobs run in
threads, each in its own app context. SIGTERM (or Ctrl-C) is a warm shutdown:
running jobs finish, then the process exits; a second signal stops it at once (the
reapers mark what it was doing as lost).

For operators: ``--queues a,b`` runs one forking RQ worker on those queues instead
(the app preloaded, a work horse per job), ``--scheduler`` the scheduler alone.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading

from rq.serializers import JSONSerializer
from rq.worker import Worker

from app import create_app, jobs, notify, scheduler
from app.extensions import queue, redis


def warm_up(fork: bool = True) -> None:
    """Do once, before the first job, what every job would otherwise do cold."""
    from sqlalchemy import text
    from sqlalchemy.orm import configure_mappers

    from app.extensions import db

    configure_mappers()
    db.session.execute(text("SELECT 1"))
    db.session.remove()
    if fork:
        db.engine.dispose()  # no connection may cross the fork


# Jobs the scheduler enqueues every 15-30 s: their routine INFO lines would bury the
# ones about deploys and backups in `make run`'s output. Failures still show.
ROUTINE_JOBS = ("sched-", "sample_metrics", "maintain_metrics", "reap_lost_")


def quiet_routine_jobs(record: logging.LogRecord) -> bool:
    if record.levelno >= logging.WARNING:
        return True
    message = record.getMessage()
    return not any(marker in message for marker in ROUTINE_JOBS)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scheduler", action="store_true", help="run the scheduler instead")
    parser.add_argument(
        "--queues",
        help="one forking RQ worker on these comma-separated queues (default: all, "
        "in threads, with the scheduler)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per run, every 15 s
    logging.getLogger("rq.worker").addFilter(quiet_routine_jobs)

    app = create_app(migrations=False, web=False)  # no request, page or URL here
    if args.scheduler:
        scheduler.run(app)
        return
    if args.queues:
        serve(app, args.queues.split(","))
        return
    serve_all(app)


def serve_all(app, stop: threading.Event | None = None, schedule: bool = True) -> None:
    """Every queue in lanes of threads, RQ's scheduler and ours, until stopped.

    In the main thread SIGTERM/SIGINT set ``stop`` (a second one exits at once);
    a caller in another thread (tests) sets ``stop`` itself. ``schedule=False``
    leaves out our scheduler (tests that must not sample metrics meanwhile).
    """
    import redis as redis_lib

    from app import lanes

    stop = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():

        def on_signal(signum, frame):
            if stop.is_set():
                logging.getLogger("slipway.worker").warning("second signal: stopping now")
                os._exit(1)
            logging.getLogger("slipway.worker").info(
                "warm shutdown: running jobs finish first (signal again to stop now)"
            )
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
    jobs.bind(app)
    with app.app_context():
        warm_up(fork=False)
    # The lanes' own pool: RQ raises its socket timeout above the blocking dequeue's.
    connection = redis_lib.Redis.from_url(app.config["REDIS_URL"])
    running = [lanes.Lane(spec, connection) for spec in lanes.LANES]
    for lane in running:
        lane.start()
    rq_scheduler = lanes.start_rq_scheduler(connection, [spec.queue for spec in lanes.LANES])
    # Leader-only services start and stop inside scheduler.run, under its lease.
    scheduler_stop = threading.Event()
    leader = threading.Thread(
        target=scheduler.run, args=(app, scheduler_stop), name="scheduler", daemon=True
    )
    if schedule:
        leader.start()
    while not stop.wait(1):
        pass
    scheduler_stop.set()
    rq_scheduler.request_stop()
    for lane in running:
        lane.stop()
    for lane in running:
        lane.join()
    if schedule:
        leader.join(5)


def serve(app, names: list[str]) -> None:
    """Work the queues ``names``, in that order of priority, until stopped."""
    jobs.bind(app)
    with app.app_context():
        warm_up()
        queues = [queue(name) for name in names]
        worker = Worker(queues, connection=redis.client, serializer=JSONSerializer)
        # Notification retries are jobs scheduled for later (``enqueue_in``): RQ's
        # scheduler, run by the worker of that queue, moves them onto it when due.
        worker.work(with_scheduler=notify.QUEUE in names)


if __name__ == "__main__":
    main()
