"""The invitation link, public: who invites whom to what, and accepting it.

Logged in: "Join <team>". Not logged in: create an account (an email invitation's
address is fixed), or log in and come back. Refused tokens (unknown, used, revoked,
expired) are limited per client address; the token is never logged or audited.
"""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, url_for
from flask_login import current_user

from app.accounts import invitations
from app.extensions import db, limiter
from app.forms import InvitationAccountForm
from app.models import User
from app.web.auth import start_session

bp = Blueprint("invitations", __name__, url_prefix="/invitations")

REFUSED = frozenset({403, 404, 409, 410})


def _refused_response(response) -> bool:
    return response.status_code in REFUSED


def _limit() -> str:
    return current_app.config["INVITATION_LIMIT_IP"]


def _refused(exc: invitations.InvitationRefused):
    return render_template("members/refused.html", message=exc.message), exc.status


def _page(invitation, token: str, form=None, status=200, error=None):
    refusal = None
    if current_user.is_authenticated:
        found = invitations.why_not(invitation, db.session.get(User, current_user.id))
        if found:
            refusal, status = found[0], found[2]
    if form is None:
        form = InvitationAccountForm(formdata=None, email=invitation.email or "")
    return render_template(
        "members/invitation.html", invitation=invitation, token=token, form=form,
        inviter=invitations.invitation_inviter(invitation), refusal=refusal, error=error,
        project_names=invitations.project_names(invitation),
        login_url=url_for("auth.login_get", next=invitations.invitation_path(token)),
    ), status  # fmt: skip


@bp.get("/<token>")
@limiter.limit(_limit, deduct_when=_refused_response)
def show_get(token: str):
    try:
        invitation = invitations.check(token)
    except invitations.InvitationRefused as exc:
        return _refused(exc)
    return _page(invitation, token)


@bp.post("/<token>")
@limiter.limit(_limit, deduct_when=_refused_response)
def accept_post(token: str):
    try:
        invitation = invitations.check(token)
    except invitations.InvitationRefused as exc:
        return _refused(exc)
    if current_user.is_authenticated:
        return _join(token)
    form = InvitationAccountForm()
    if invitation.email:
        form.email.data = invitation.email  # fixed: whatever was sent, the invited address
    if not form.validate():
        return _page(invitation, token, form, 422)
    team_name = invitation.team.name
    try:
        user = invitations.accept_new_account(token, form.name.data, form.password.data,
                                              form.email.data)  # fmt: skip
    except invitations.InvitationRefused as exc:
        if exc.status in (409, 422):
            return _page(invitation, token, form, exc.status, error=exc.message)
        return _refused(exc)
    flash(f"Welcome to {team_name}.", "success")
    return start_session(user, method="invitation", next_url=url_for("dashboard.index"))


def _join(token: str):
    user = db.session.get(User, current_user.id)
    try:
        membership = invitations.accept(token, user)
    except invitations.InvitationRefused as exc:
        return _refused(exc)
    flash(f"You joined {membership.team.name} as {membership.role}.", "success")
    return redirect(url_for("dashboard.index"), 303)
