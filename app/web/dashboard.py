"""The dashboard: every project of the user's teams with its applications' state."""

from __future__ import annotations

from flask import Blueprint, render_template

from app import access, catalog

bp = Blueprint("dashboard", __name__)


@bp.get("/")
def index():
    team_ids = [m.team_id for m in access.memberships()]
    projects = catalog.dashboard_rows(team_ids)
    return render_template("dashboard/index.html", projects=projects)
