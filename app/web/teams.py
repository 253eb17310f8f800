"""Teams: the list to switch between, a new team, the current team's settings, delete."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, url_for
from flask_login import current_user

from app import access
from app.accounts import teams
from app.forms import TeamForm, TeamSettingsForm
from app.web import reauth

bp = Blueprint("teams", __name__)


def _list(form: TeamForm, status: int = 200):
    rows = teams.teams_of(current_user)
    current = access.current_team()
    return render_template("teams/index.html", rows=rows, current=current, form=form), status


@bp.get("/teams")
def index():
    return _list(TeamForm(formdata=None))


@bp.post("/teams")
def create():
    form = TeamForm()
    if not form.validate():
        return _list(form, 422)
    team = teams.create_team(current_user, form.name.data)
    flash(f"Team {team.name} created. You are working in it now.", "success")
    return redirect(url_for("dashboard.index"), 303)


@bp.post("/teams/<int:team_id>/switch")
def switch(team_id: int):
    team = access.team(team_id, access.Action.TEAM_READ)
    teams.switch_team(current_user, team)
    flash(f"You are working in {team.name}.", "success")
    return redirect(url_for("dashboard.index"), 303)


def _settings(form: TeamSettingsForm, team, status: int = 200):
    return render_template(
        "teams/settings.html", form=form, team=team,
        delete_refusal=teams.delete_refusal(team, current_user),
        can_delete=access.allows(access.Action.TEAM_DELETE, team),
    ), status  # fmt: skip


@bp.get("/team/settings")
def settings_get():
    team = access.in_current_team(access.Action.TEAM_MANAGE)
    return _settings(TeamSettingsForm(obj=team), team)


@bp.post("/team/settings")
def settings_post():
    team = access.in_current_team(access.Action.TEAM_MANAGE)
    form = TeamSettingsForm()
    if not form.validate():
        return _settings(form, team, 422)
    teams.rename_team(team, form.name.data)
    teams.update_settings(
        team, require_2fa=form.require_2fa.data, audit_retention_days=form.audit_retention_days.data
    )
    flash("Team settings saved.", "success")
    return redirect(url_for("teams.settings_get"), 303)


@bp.get("/team/delete")
def delete_get():
    team = access.in_current_team(access.Action.TEAM_DELETE)
    if (again := reauth.required()) is not None:
        return again
    refusal = teams.delete_refusal(team, current_user)
    if refusal:
        flash(refusal, "error")
        return redirect(url_for("teams.settings_get"))
    return render_template(
        "confirm.html",
        title=f"Delete team {team.name}?",
        message=(
            "Its members lose access, and its invitations, backup destinations and "
            "notification channels are deleted. Its audit events are kept until the "
            "installation's retention removes them."
        ),
        action=url_for("teams.delete_post"),
        confirm_label="Delete team",
        back=url_for("teams.settings_get"),
    )


@bp.post("/team/delete")
def delete_post():
    team = access.in_current_team(access.Action.TEAM_DELETE)
    if (again := reauth.required(back=url_for("teams.delete_get"))) is not None:
        return again
    name = team.name
    try:
        teams.delete_team(team, current_user)
    except teams.TeamRefused as exc:
        flash(str(exc), "error")
        return redirect(url_for("teams.settings_get"), 303)
    flash(f"Team {name} deleted.", "success")
    return redirect(url_for("teams.index"), 303)
