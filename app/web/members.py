"""The current team's members page: members, invitations, roles, project access.

Everyone in the team may look (``MEMBER_READ``); writes need ``MEMBER_MANAGE`` through
the gate, and ``app.accounts.members`` / ``app.accounts.invitations`` enforce the rest
(nobody above their own role, the last owner stays). Another team's member or
invitation is a 404.
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask_login import current_user

from app import access
from app.accounts import invitations, members
from app.extensions import db
from app.forms import ROLE_CHOICES, InvitationForm, MemberProjectsForm, MemberRoleForm
from app.models import Invitation, Membership, User
from app.web import reauth

bp = Blueprint("members", __name__, url_prefix="/team/members")


def _user() -> User:
    return db.session.get(User, current_user.id)


def _chosen_projects() -> list[tuple[str, str]]:
    """(project id, role) from the page's ``project_<id>`` selects ("" = no access)."""
    chosen = []
    for key, value in request.form.items():
        if key.startswith("project_") and value:
            chosen.append((key.removeprefix("project_"), value))
    return chosen


def _page(form=None, status=200, error=None):
    team = access.in_current_team(access.Action.MEMBER_READ)
    rows = [(m, {pm.project_id: pm.role for pm in m.projects}) for m in members.listing(team)]
    projects = access.visible_projects(team)
    chosen = dict(_chosen_projects()) if request.method == "POST" else {}
    return render_template(
        "members/index.html", team=team, rows=rows, form=form or InvitationForm(),
        pending=invitations.pending(team), projects=projects,
        project_by_id={p.id: p.name for p in projects}, chosen=chosen,
        can_manage=access.allows(access.Action.MEMBER_MANAGE, team),
        me=current_user.id, roles=ROLE_CHOICES, table=access.table_rows(),
        role_names=[r.value for r in access.ROLES], error=error,
        project_names=invitations.project_names, inviter=invitations.invitation_inviter,
        mail_configured=invitations.mail_configured(),
    ), status  # fmt: skip


@bp.get("/")
def index():
    return _page()


@bp.post("/invitations")
def invite_post():
    team = access.in_current_team(access.Action.MEMBER_MANAGE)
    form = InvitationForm()
    if not form.validate():
        return _page(form, 422)
    try:
        invitation, token = invitations.create(
            team, _user(), email=form.email.data or None, role=form.role.data,
            all_projects=form.access.data == "all", projects=_chosen_projects(),
        )  # fmt: skip
    except invitations.InvitationRefused as exc:
        return _page(form, exc.status, error=exc.message)
    outcome = invitations.send(invitation, token) if invitation.email else None
    return render_template(
        "members/invited.html", invitation=invitation, link=invitations.invitation_url(token),
        outcome=outcome, project_names=invitations.project_names(invitation),
    )  # fmt: skip


def _invitation(invitation_id: int, action: access.Action) -> Invitation:
    team = access.current_team()
    found = db.session.get(Invitation, invitation_id)
    if found is None or found.team_id != team.id:
        abort(404)
    access.authorize(action, team)
    return found


@bp.post("/invitations/<int:invitation_id>/revoke")
def revoke_post(invitation_id: int):
    invitation = _invitation(invitation_id, access.Action.MEMBER_MANAGE)
    try:
        invitations.revoke(invitation, _user())
    except invitations.InvitationRefused as exc:
        flash(exc.message, "error")
        return redirect(url_for("members.index"), 303)
    flash("Invitation revoked: its link no longer works.", "success")
    return redirect(url_for("members.index"), 303)


def _membership(membership_id: int, action: access.Action) -> Membership:
    team = access.current_team()
    found = db.session.get(Membership, membership_id)
    if found is None or found.team_id != team.id:
        abort(404)
    access.authorize(action, team)
    return found


def _edit_page(membership: Membership, status=200, error=None, role_form=None):
    team = access.current_team()
    return render_template(
        "members/edit.html", membership=membership, team=team,
        role_form=role_form or MemberRoleForm(formdata=None, role=membership.role),
        projects_form=MemberProjectsForm(
            formdata=None, access="all" if membership.all_projects else "some"),
        projects=access.visible_projects(team), roles=ROLE_CHOICES,
        granted={pm.project_id: pm.role for pm in membership.projects}, error=error,
    ), status  # fmt: skip


@bp.get("/<int:membership_id>/edit")
def edit_get(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := reauth.required()) is not None:
        return again
    return _edit_page(membership)


def _ask_again(membership: Membership, page: str):
    """Changing who may do what asks for the password (or a code) again after 10 minutes;
    the check page returns to the form the change was made on."""
    return reauth.required(back=url_for(f"members.{page}", membership_id=membership.id))


def _done(message: str):
    flash(message, "success")
    return redirect(url_for("members.index"), 303)


@bp.post("/<int:membership_id>/role")
def role_post(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := _ask_again(membership, "edit_get")) is not None:
        return again
    form = MemberRoleForm()
    if not form.validate():
        return _edit_page(membership, 422, role_form=form)
    try:
        members.change_role(_user(), membership, form.role.data)
    except members.MemberChangeRefused as exc:
        return _edit_page(membership, exc.status, error=exc.message)
    return _done(f"{membership.user.name} is now {membership.role}.")


@bp.post("/<int:membership_id>/projects")
def projects_post(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := _ask_again(membership, "edit_get")) is not None:
        return again
    form = MemberProjectsForm()
    if not form.validate():
        return _edit_page(membership, 422, error="Choose every project or some projects.")
    try:
        members.set_projects(_user(), membership, form.access.data == "all",
                             _chosen_projects())  # fmt: skip
    except members.MemberChangeRefused as exc:
        return _edit_page(membership, exc.status, error=exc.message)
    return _done(f"Project access of {membership.user.name} saved.")


def _confirm(title: str, message: str, action: str, label: str):
    return render_template("confirm.html", title=title, message=message, action=action,
                           confirm_label=label, back=url_for("members.index"))  # fmt: skip


@bp.get("/<int:membership_id>/remove")
def remove_get(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := reauth.required()) is not None:
        return again
    return _confirm(
        f"Remove {membership.user.name} from {membership.team.name}?",
        "They lose access to the team's projects at once, and every session of theirs ends.",
        url_for("members.remove_post", membership_id=membership.id), "Remove member",
    )  # fmt: skip


def _refused(exc: members.MemberChangeRefused):
    flash(exc.message, "error")
    return _page(status=exc.status)


@bp.post("/<int:membership_id>/remove")
def remove_post(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := _ask_again(membership, "remove_get")) is not None:
        return again
    name = membership.user.name
    try:
        members.remove(_user(), membership)
    except members.MemberChangeRefused as exc:
        return _refused(exc)
    return _done(f"{name} was removed from the team.")


@bp.get("/<int:membership_id>/transfer")
def transfer_get(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := reauth.required()) is not None:
        return again
    return _confirm(
        f"Make {membership.user.name} an owner of {membership.team.name}?",
        "They become an owner with every project; you become an admin.",
        url_for("members.transfer_post", membership_id=membership.id), "Transfer ownership",
    )  # fmt: skip


@bp.post("/<int:membership_id>/transfer")
def transfer_post(membership_id: int):
    membership = _membership(membership_id, access.Action.MEMBER_MANAGE)
    if (again := _ask_again(membership, "transfer_get")) is not None:
        return again
    try:
        members.transfer_ownership(_user(), membership)
    except members.MemberChangeRefused as exc:
        return _refused(exc)
    return _done(f"{membership.user.name} is now an owner; you are an admin.")


@bp.get("/leave")
def leave_get():
    team = access.in_current_team(access.Action.MEMBER_READ)
    return _confirm(f"Leave {team.name}?", "You lose access to its projects at once.",
                    url_for("members.leave_post"), "Leave team")  # fmt: skip


@bp.post("/leave")
def leave_post():
    team = access.in_current_team(access.Action.MEMBER_READ)
    try:
        members.leave(_user(), team)
    except members.MemberChangeRefused as exc:
        return _refused(exc)
    flash(f"You left {team.name}.", "success")
    return redirect(url_for("dashboard.index"), 303)
