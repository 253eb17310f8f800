"""Deployments: start one, apply or restart, list them, show one with its log, cancel,
roll back."""

from __future__ import annotations

from flask import (
    Blueprint,
    Response,
    flash,
    redirect,
    render_template,
    request,
    url_for,
)
from flask.typing import ResponseReturnValue
from flask_login import current_user
from sqlalchemy import func, select

from app import access
from app.deploys import buildlog, control, progress
from app.extensions import db
from app.models import Deployment, DeploymentLogLine
from app.models.deployments import ENV_SOURCES
from app.web.htmx import is_htmx

bp = Blueprint("deployments", __name__)
PAGE_SIZE = 50
LOG_LIMIT = 5000


@bp.post("/apps/<int:app_id>/deploy")
def deploy(app_id: int):
    app = access.application(app_id, access.Action.APP_DEPLOY)
    # No flash: the status partial says "queued" while it is, and is redrawn live when
    # the deployment moves on (a flash would stay on the page, stale).
    deployment = control.start_deploy(app, trigger="manual", user=current_user)
    return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)


def _redeploy(app_id: int, start) -> ResponseReturnValue:
    """Apply and Restart: a new deployment of the serving image, or why there is none."""
    app = access.application(app_id, access.Action.APP_DEPLOY)
    try:
        deployment = start(app, current_user)
    except control.DeployError as exc:
        flash(str(exc), "error")
        return redirect(url_for("apps.show", app_id=app.id), 303)
    return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)


@bp.post("/apps/<int:app_id>/apply")
def apply(app_id: int):
    return _redeploy(app_id, control.apply)


@bp.post("/apps/<int:app_id>/restart")
def restart(app_id: int):
    return _redeploy(app_id, control.restart)


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
        can_deploy=access.allows(access.Action.APP_DEPLOY, app),
    )


def _log_lines(deployment_id: int) -> list[DeploymentLogLine]:
    newest = db.session.scalars(
        select(DeploymentLogLine)
        .where(DeploymentLogLine.deployment_id == deployment_id)
        .order_by(DeploymentLogLine.seq.desc())
        .limit(LOG_LIMIT)
    ).all()
    return list(reversed(newest))


@bp.get("/deployments/<int:deployment_id>")
def show(deployment_id: int):
    deployment = access.deployment(deployment_id)
    can_deploy = access.allows(access.Action.APP_DEPLOY, deployment)
    steps = progress.steps(deployment)
    cancelling = control.cancel_requested(deployment)
    # A deployment in its watch window reverts to the version serving before it.
    reverts_to = control.current(deployment.application_id) if deployment.watching else None
    if is_htmx():
        return render_template(
            "deployments/_status.html", deployment=deployment, can_deploy=can_deploy, steps=steps,
            cancelling=cancelling, reverts_to=reverts_to, env_sources=ENV_SOURCES,
        )  # fmt: skip
    return render_template(
        "deployments/show.html", deployment=deployment, app=deployment.application,
        lines=_log_lines(deployment.id), can_deploy=can_deploy, log_limit=LOG_LIMIT, steps=steps,
        cut_notice=buildlog.cut_notice(deployment), cancelling=cancelling, reverts_to=reverts_to,
        env_sources=ENV_SOURCES,
    )  # fmt: skip


@bp.get("/deployments/<int:deployment_id>/log.txt")
def log_download(deployment_id: int):
    deployment = access.deployment(deployment_id)
    name = f"{deployment.application.name}-deployment-{deployment.id}.log"
    # Read whole (the stored log is capped, BUILD_LOG_MAX_BYTES): a generator run after
    # the view would hold the request's database session past its context.
    return Response(
        "".join(buildlog.as_text(deployment)),
        mimetype="text/plain",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


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
    deployment = access.deployment(deployment_id, access.Action.APP_DEPLOY)
    try:
        control.cancel(deployment, current_user)  # the status partial says "cancelling"
    except control.DeployError as exc:
        flash(str(exc), "error")
    return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)


@bp.get("/deployments/<int:deployment_id>/rollback")
def rollback_get(deployment_id: int):
    deployment = access.deployment(deployment_id, access.Action.APP_DEPLOY)
    return render_template(
        "deployments/rollback.html", deployment=deployment, app=deployment.application,
        recorded=bool(deployment.env_ciphertext),
    )  # fmt: skip


@bp.post("/deployments/<int:deployment_id>/rollback")
def rollback(deployment_id: int):
    deployment = access.deployment(deployment_id, access.Action.APP_DEPLOY)
    keep_env = request.form.get("keep_env") == "1"
    try:
        new = control.rollback(deployment, current_user, keep_env=keep_env)
    except control.DeployError as exc:
        flash(str(exc), "error")
        return redirect(url_for("deployments.show", deployment_id=deployment.id), 303)
    return redirect(url_for("deployments.show", deployment_id=new.id), 303)
