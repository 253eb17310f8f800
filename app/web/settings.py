"""The signed-in user's own account: password and sessions."""

from __future__ import annotations

from flask import Blueprint, flash, redirect, render_template, session, url_for
from flask_login import current_user, login_user

from app import audit
from app.extensions import db
from app.forms import PasswordForm

bp = Blueprint("settings", __name__, url_prefix="/account")


@bp.get("/")
def account_get():
    return render_template("settings/account.html", form=PasswordForm())


@bp.post("/password")
def password_post():
    form = PasswordForm()
    if form.validate() and not current_user.check_password(form.current.data):
        form.current.errors = ["That is not your current password."]
    if form.errors:
        return render_template("settings/account.html", form=form), 422
    current_user.set_password(form.password.data)
    current_user.end_all_sessions()
    audit.record(audit.Action.PASSWORD_CHANGED, target=current_user)
    db.session.commit()
    # Other sessions are now dead; this one carries on with the new version.
    session.clear()
    login_user(current_user)
    flash("Password changed. Your other sessions have been logged out.", "success")
    return redirect(url_for("settings.account_get"), 303)


@bp.post("/sessions/revoke")
def sessions_revoke_post():
    current_user.end_all_sessions()
    audit.record(audit.Action.SESSIONS_REVOKED, target=current_user)
    db.session.commit()
    session.clear()
    login_user(current_user)
    flash("All your other sessions have been logged out.", "success")
    return redirect(url_for("settings.account_get"), 303)
