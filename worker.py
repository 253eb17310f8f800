"""The worker process (RQ, JSON serializer) or, with ``--scheduler``, the scheduler.

The app is created once here, before RQ forks a work horse per job, so each job
starts warm; SIGTERM lets the current job finish (RQ's warm shutdown).
"""

from __future__ import annotations

import argparse
import logging

from rq.serializers import JSONSerializer
from rq.worker import Worker

from app import create_app, jobs, notify, scheduler
from app.extensions import queue, redis


def warm_up() -> None:
    """Do once, before RQ forks per job, what every job would otherwise do cold."""
    from sqlalchemy import text
    from sqlalchemy.orm import configure_mappers

    from app.extensions import db

    configure_mappers()
    db.session.execute(text("SELECT 1"))
    db.session.remove()
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
        "--queues", default="deploy,backup,notify,default", help="comma-separated queues"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("apscheduler").setLevel(logging.WARNING)  # a line per run, every 15 s
    logging.getLogger("rq.worker").addFilter(quiet_routine_jobs)

    app = create_app()
    if args.scheduler:
        scheduler.run(app)
        return
    serve(app, args.queues.split(","))


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
