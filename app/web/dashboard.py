"""The dashboard: every project of the user's teams with its applications' state."""

from __future__ import annotations

from flask import Blueprint, render_template

from app import access, catalog

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    team_ids = [m.team_id for m in access.memberships()]
    projects = catalog.projects_with_apps(team_ids)
    statuses = catalog.latest_statuses([a.id for _, apps in projects for a in apps])
    return render_template(
        "dashboard/index.html",
        projects=projects,
        statuses=statuses,
        not_deployed=catalog.NOT_DEPLOYED,
    )
