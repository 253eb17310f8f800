"""The dashboard: the current team's projects the user may see, with their apps' state."""

from __future__ import annotations

from flask import Blueprint, current_app, render_template
from flask_login import current_user

from app import access
from app.projects import catalog
from app.web.htmx import is_htmx

bp = Blueprint("dashboard", __name__)


def _render_block(template_name: str, block: str, **context) -> str:
    """One block of a page template, alone: the page's partial for an HX-Request.

    The app list is a block of the page rather than a file of its own, so that
    the page and the fragment cannot drift apart.
    """
    template = current_app.jinja_env.get_template(template_name)
    current_app.update_template_context(context)
    return "".join(template.blocks[block](template.new_context(context)))


@bp.get("/")
def index():
    team = access.in_current_team(access.Action.TEAM_READ)
    projects = catalog.dashboard_rows([team.id], access.visible_project_ids(current_user, team.id))
    if is_htmx():
        return _render_block("dashboard/index.html", "app_list", projects=projects)
    return render_template("dashboard/index.html", projects=projects)
