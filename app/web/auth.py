"""First-run setup, login and logout."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import (
    Blueprint,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_login import current_user, login_user, logout_user

from app.accounts import login, resets, setup
from app.extensions import client_address, db, limiter
from app.forms import ForgotPasswordForm, LoginForm, NewPasswordForm, SetupForm
from app.models import User
from app.web.htmx import installed

bp = Blueprint("auth", __name__)


def safe_next(target: str | None) -> str:
    """Only a local path may follow login; anything else lands on the dashboard."""
    if not target:
        return "/"
    if (
        not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 33 for c in target)
    ):
        return "/"
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return "/"
    return target


def _email() -> str:
    return (request.form.get("email") or "").strip().lower()[:254]


def _account_address_key() -> str:
    return f"login-account-address:{_email()}|{client_address()}"


def _slowed_key() -> str:
    return f"login-slowed:{_email()}|{client_address()}"


def _not_under_pressure() -> bool:
    return not login.account_under_pressure(_email())


def _slowed_limit() -> str:
    return f"1 per {current_app.config['LOGIN_SLOW_SECONDS']} second"


def _login_failed(response) -> bool:
    return response.status_code not in (302, 303)


@bp.get("/setup")
def setup_get():
    if installed():
        return redirect(url_for("auth.login_get"))
    return render_template("auth/setup.html", form=SetupForm())


@bp.post("/setup")
def setup_post():
    if installed():
        return redirect(url_for("auth.login_get"))
    form = SetupForm()
    if not form.validate():
        return render_template("auth/setup.html", form=form), 422
    try:
        user = setup.complete_setup(
            email=form.email.data, name=form.name.data, password=form.password.data,
            team_name=form.team.data,
        )  # fmt: skip
    except setup.AlreadySetUp:
        flash("Slipway has already been set up. Log in.", "error")
        return redirect(url_for("auth.login_get"))
    current_app.extensions["slipway_installed"] = True
    session.clear()
    login_user(user)
    flash("Welcome to Slipway. Create your first project.", "success")
    return redirect(url_for("dashboard.index"))


@bp.get("/login")
def login_get():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    return render_template("auth/login.html", form=form)


@bp.post("/login")
@limiter.limit(lambda: current_app.config["LOGIN_LIMIT_IP"], deduct_when=_login_failed)
@limiter.limit(
    lambda: current_app.config["LOGIN_LIMIT_ACCOUNT_IP"],
    key_func=_account_address_key,
    deduct_when=_login_failed,
)
# The account-wide limit only slows: while the account is under pressure, an address
# that fails must wait before its next try; an address that has not failed goes through.
@limiter.limit(
    _slowed_limit, key_func=_slowed_key, deduct_when=_login_failed, exempt_when=_not_under_pressure
)
def login_post():
    form = LoginForm()
    if not form.validate():
        return render_template("auth/login.html", form=form), 422
    user = login.check_login(form.email.data, form.password.data)
    if user is None:
        form.password.errors = ["Wrong email or password."]
        return render_template("auth/login.html", form=form), 401
    # A fresh session: nothing from before login survives (no fixation).
    session.clear()
    login_user(user)
    return redirect(safe_next(form.next.data), 303)


@bp.get("/password/forgot")
def forgot_get():
    return render_template(
        "auth/forgot.html", form=ForgotPasswordForm(), mail=resets.mail_available(), sent=False
    )


@bp.post("/password/forgot")
@limiter.limit(lambda: current_app.config["PASSWORD_RESET_LIMIT_IP"])
def forgot_post():
    form = ForgotPasswordForm()
    mail = resets.mail_available()
    if not form.validate():
        return render_template("auth/forgot.html", form=form, mail=mail, sent=False), 422
    resets.request_by_email(form.email.data)
    # The same answer whether or not the account exists.
    return render_template("auth/forgot.html", form=ForgotPasswordForm(formdata=None),
                           mail=mail, sent=mail)  # fmt: skip


def _refused(exc: resets.ResetRefused):
    return render_template("auth/reset_refused.html", message=exc.message), exc.status


@bp.get("/password/reset/<token>")
def reset_get(token: str):
    try:
        resets.check(token)
    except resets.ResetRefused as exc:
        return _refused(exc)
    return render_template("auth/reset.html", form=NewPasswordForm(), token=token)


@bp.post("/password/reset/<token>")
def reset_post(token: str):
    try:
        resets.check(token)
    except resets.ResetRefused as exc:
        return _refused(exc)
    form = NewPasswordForm()
    if not form.validate():
        return render_template("auth/reset.html", form=form, token=token), 422
    try:
        resets.complete(token, form.password.data)
    except resets.ResetRefused as exc:
        return _refused(exc)
    logout_user()
    session.clear()
    flash("Your new password is set and every session of the account has ended. Log in.",
          "success")  # fmt: skip
    return redirect(url_for("auth.login_get"), 303)


@bp.post("/logout")
def logout_post():
    """Log out. The session version is bumped, so a copy of this cookie is dead too."""
    login.log_out(db.session.get(User, current_user.id))
    logout_user()
    session.clear()
    return redirect(url_for("auth.login_get"), 303)
