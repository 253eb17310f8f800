"""Workers: RQ workers, queue depths and failed jobs (installation-wide: the installation's
owner and the admins the owner named)."""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, url_for

from app import access
from app.models.base import utcnow
from app.monitoring import workers

bp = Blueprint("workers", __name__)


@bp.get("/workers")
def index():
    access.require_installation_admin()
    return render_template(
        "workers/index.html", workers=workers.workers(), queues=workers.queues(),
        failed=workers.failed_jobs(), now=utcnow(),
    )  # fmt: skip


@bp.post("/workers/failed/<job_id>/retry")
def retry(job_id: str):
    access.require_installation_admin()
    retried = workers.retry(job_id)
    if retried is None:
        abort(404, "No failed job with this id (it may have been retried already).")
    flash(f"Job {retried.id} is queued again.", "success")
    return redirect(url_for("workers.index"), 303)
