"""Deployments: start one, list them, show one with its log, cancel, roll back."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_login import current_user
from sqlalchemy import func, select

from app import access
from app.deploys import control
from app.extensions import db
from app.models import Deployment, DeploymentLogLine, DeploymentStatus, DeployStep, Role
from app.web import is_htmx

bp = Blueprint("deployments", __name__)
PAGE_SIZE = 50
LOG_LIMIT = 5000
STEPS = [step.value for step in DeployStep]
STEP_MARK = "── "  # how the pipeline logs the start of each step ("── build")
SERVED = (DeploymentStatus.running.value, DeploymentStatus.replaced.value)


@bp.post("/apps/<int:app_id>/deploy")
def deploy(app_id: int):
    app = access.application(app_id, Role.developer)
    deployment = control.start_deploy(app, trigger="manual", user=current_user)
    flash(f"Deployment #{deployment.id} queued.", "success")
    return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)


@bp.get("/apps/<int:app_id>/deployments")
def index(app_id: int):
    app = access.application(app_id)
    page = max(request.args.get("page", 1, type=int), 1)
    total = db.session.scalar(
        select(func.count(Deployment.id)).where(Deployment.application_id == app.id)
    )
    rows = db.session.scalars(
        select(Deployment)
        .where(Deployment.application_id == app.id)
        .order_by(Deployment.id.desc())
        .offset((page - 1) * PAGE_SIZE)
        .limit(PAGE_SIZE)
    ).all()
    listing = {"app": app, "deployments": rows, "page": page, "total": total,
               "has_next": page * PAGE_SIZE < total}  # fmt: skip
    if is_htmx():
        return render_template("deployments/_table.html", **listing)
    return render_template(
        "deployments/index.html",
        **listing,
        can_deploy=access.can(app.project.team_id, Role.developer),
    )


def _log_lines(deployment_id: int) -> list[DeploymentLogLine]:
    newest = db.session.scalars(
        select(DeploymentLogLine)
        .where(DeploymentLogLine.deployment_id == deployment_id)
        .order_by(DeploymentLogLine.seq.desc())
        .limit(LOG_LIMIT)
    ).all()
    return list(reversed(newest))


def _stopped_at(deployment: Deployment) -> str | None:
    """The step a finished deployment was in when it stopped.

    The pipeline keeps ``step`` on a deployment that fails or is cancelled.
    Rows that ended before it did have none; for them the last ``── <step>``
    line the pipeline logged (stream ``slipway``, which build output cannot
    use) says where it stopped.
    """
    if deployment.step in STEPS:
        return deployment.step
    text = db.session.scalar(
        select(DeploymentLogLine.text)
        .where(
            DeploymentLogLine.deployment_id == deployment.id,
            DeploymentLogLine.stream == "slipway",
            DeploymentLogLine.text.in_([STEP_MARK + step for step in STEPS]),
        )
        .order_by(DeploymentLogLine.seq.desc())
        .limit(1)
    )
    return text[len(STEP_MARK) :] if text else None


def progress(deployment: Deployment) -> list[tuple[str, str]]:
    """The progress line as ``(step, state)``; state is done, current, failed or pending.

    While a deployment runs, its step is current. A served one (running, or
    replaced since) shows every step done; one that ended otherwise shows the
    steps before the one it stopped in as done and that one as failed. Nothing
    to show (queued, or stopped before the first step): an empty list.
    """
    if deployment.status in SERVED:
        return [(step, "done") for step in STEPS]
    at = deployment.step if not deployment.is_final else _stopped_at(deployment)
    if at not in STEPS:
        return []
    here = "current" if not deployment.is_final else "failed"
    index = STEPS.index(at)
    return [
        (step, "done" if i < index else here if i == index else "pending")
        for i, step in enumerate(STEPS)
    ]


@bp.get("/deployments/<int:deployment_id>")
def show(deployment_id: int):
    deployment = access.deployment(deployment_id)
    can_deploy = access.can(deployment.application.project.team_id, Role.developer)
    steps = progress(deployment)
    if is_htmx():
        return render_template(
            "deployments/_status.html", deployment=deployment, can_deploy=can_deploy, steps=steps
        )
    return render_template(
        "deployments/show.html", deployment=deployment, app=deployment.application,
        lines=_log_lines(deployment.id), can_deploy=can_deploy, log_limit=LOG_LIMIT, steps=steps,
    )  # fmt: skip


@bp.get("/deployments/<int:deployment_id>/log")
def log(deployment_id: int):
    """The stored log as a partial. Pages follow a running deployment over a
    websocket instead (app/web/live.py); this stays for scripts and old tabs."""
    deployment = access.deployment(deployment_id)
    return render_template(
        "deployments/_log.html", deployment=deployment, lines=_log_lines(deployment.id)
    )


@bp.post("/deployments/<int:deployment_id>/cancel")
def cancel(deployment_id: int):
    deployment = access.deployment(deployment_id, Role.developer)
    try:
        control.cancel(deployment, current_user)
        flash("Cancelling the deployment.", "success")
    except control.DeployError as exc:
        flash(str(exc), "error")
    return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)


@bp.post("/deployments/<int:deployment_id>/rollback")
def rollback(deployment_id: int):
    deployment = access.deployment(deployment_id, Role.developer)
    try:
        new = control.rollback(deployment, current_user)
    except control.DeployError as exc:
        flash(str(exc), "error")
        return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)
    flash(f"Rolling back to deployment #{deployment.id}.", "success")
    return redirect(url_for("deployments.show", deployment_id=new.id), 303)
