"""First-run setup, login and logout."""

from __future__ import annotations

import time
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

from app.accounts import login, resets, setup, sso, twofactor
from app.extensions import client_address, db, limiter
from app.forms import ForgotPasswordForm, LoginForm, NewPasswordForm, ReauthForm, SetupForm
from app.models import User
from app.web import reauth
from app.web.htmx import installed

bp = Blueprint("auth", __name__)

PENDING = "pending_login"
PENDING_SECONDS = 300
MUST_ENROL = "must_enrol_2fa"


def start_session(user: User, *, method: str, next_url: str | None = None):
    """Every way in ends here: the password form, single sign-on, an accepted invitation,
    first-run setup. A fresh session (nothing from before login survives: no fixation).

    A user with two-factor login is not logged in yet: the session holds only a
    *pending login* (user id, session version, method, next page, time), which the
    code page (``twofactor.login_get``) turns into a session within
    ``PENDING_SECONDS``. Returns the redirect to send."""
    session.clear()
    if twofactor.enabled(user):
        session[PENDING] = {
            "user_id": user.id, "version": user.session_version, "method": method,
            "next": safe_next(next_url), "at": int(time.time()),
        }  # fmt: skip
        return redirect(url_for("twofactor.login_get"), 303)
    return finish_session(user, method=method, next_url=next_url)


def finish_session(user: User, *, method: str, next_url: str | None = None):
    """Log in for real, with the time of this check, which sensitive actions ask to be
    recent (``app.web.reauth``). A member of a team that requires two-factor login who
    has none is marked ``MUST_ENROL``: every page sends them to enrolment until done."""
    session.clear()
    login_user(user)
    reauth.mark_checked()
    session["auth_method"] = method
    if not twofactor.enabled(user) and twofactor.required_by_team(user):
        session[MUST_ENROL] = True
        return redirect(url_for("twofactor.enrol_get", next=safe_next(next_url)), 303)
    return redirect(safe_next(next_url), 303)


def pending_login() -> tuple[User, dict] | None:
    """The user of this session's pending login and its data, while it is still good:
    younger than ``PENDING_SECONDS``, the same session version (a password change or
    "log out everywhere" in between ends it), two-factor login still on."""
    pending = session.get(PENDING)
    if not isinstance(pending, dict):
        return None
    user = db.session.get(User, pending.get("user_id") or 0)
    if (
        user is None
        or not 0 <= time.time() - int(pending.get("at", 0)) < PENDING_SECONDS
        or user.session_version != pending.get("version")
        or not twofactor.enabled(user)
    ):
        session.pop(PENDING, None)
        return None
    return user, pending


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
    response = start_session(user, method="setup", next_url=url_for("dashboard.index"))
    flash("Welcome to Slipway. Create your first project.", "success")  # in the new session
    return response


@bp.get("/login")
def login_get():
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    form = LoginForm(next=request.args.get("next", ""))
    return _login_page(form)


def _login_page(form: LoginForm, status: int = 200):
    return render_template(
        "auth/login.html", form=form, providers=sso.enabled_providers(),
        password_login=sso.password_login_on(),
    ), status  # fmt: skip


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
        return _login_page(form, 422)
    user = login.check_login(form.email.data, form.password.data)
    if user is None:
        # One answer for every failure while password login is off: it does not tell an
        # owner's wrong password from a member who must use single sign-on.
        form.password.errors = [
            "Wrong email or password."
            if sso.password_login_on()
            else "Wrong email or password, or password login is off for your account: "
            "only owners sign in with a password; everyone else signs in with single "
            "sign-on below."
        ]
        return _login_page(form, 401)
    return start_session(user, method="password", next_url=form.next.data)


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


# ---- the check again before a sensitive action (app.web.reauth) -----------------------


def _reauth_key() -> str:
    return f"reauth:{current_user.id}"


def _reauth_failed(response) -> bool:
    return response.status_code == 422


def _reauth_page(form: ReauthForm, status: int = 200):
    user = current_user
    return render_template(
        "auth/reauth.html", form=form, password=twofactor.has_password(user),
        totp=twofactor.enabled(user), providers=twofactor.sign_in_providers(user),
        next=safe_next(form.next.data),
    ), status  # fmt: skip


@bp.get("/reauth")
def reauth_get():
    return _reauth_page(ReauthForm(next=request.args.get("next", "")))


@bp.post("/reauth")
@limiter.limit(
    lambda: current_app.config["REAUTH_LIMIT"], key_func=_reauth_key, deduct_when=_reauth_failed
)
def reauth_post():
    form = ReauthForm()
    user = db.session.get(User, current_user.id)
    if form.validate():
        password, code = form.password.data or "", form.code.data or ""
        if not (password or code):
            target = form.password if twofactor.has_password(user) else form.code
            target.errors = ["Enter your password or a code."]
        elif twofactor.check_again(user, password=password, code=code):
            reauth.mark_checked()
            return redirect(safe_next(form.next.data), 303)
        elif password:
            form.password.errors = ["That is not your password."]
        else:
            form.code.errors = ["That code is not right, or was used already."]
    return _reauth_page(form, 422)
