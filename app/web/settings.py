"""The signed-in user's own account: password, sessions, two-factor login."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_login import current_user, login_user

from app.accounts import login, twofactor
from app.forms import PasswordForm

bp = Blueprint("settings", __name__, url_prefix="/account")


def _page(form: PasswordForm, status: int = 200):
    two_factor = {
        "enabled": twofactor.enabled(current_user),
        "since": current_user.totp_enabled_at,
        "required": twofactor.required_by_team(current_user),
        "codes_left": twofactor.recovery_codes_left(current_user),
    }
    return render_template("settings/account.html", form=form, two_factor=two_factor), status


@bp.get("/")
def account_get():
    return _page(PasswordForm())


@bp.post("/password")
def password_post():
    form = PasswordForm()
    if form.validate() and not current_user.check_password(form.current.data):
        form.current.errors = ["That is not your current password."]
    if form.errors:
        return _page(form, 422)
    login.change_password(current_user, form.password.data)
    # Other sessions are now dead; this one carries on with the new version.
    session.clear()
    login_user(current_user)
    flash("Password changed. Your other sessions have been logged out.", "success")
    return redirect(url_for("settings.account_get"), 303)


@bp.post("/sessions/revoke")
def sessions_revoke_post():
    login.end_other_sessions(current_user)
    session.clear()
    login_user(current_user)
    flash("All your other sessions have been logged out.", "success")
    return redirect(url_for("settings.account_get"), 303)
