"""Two-factor login: the code page of a login, enrolment, recovery codes, turning it off.

The login state machine (``app.web.auth``): a password (or single sign-on) check of a
user with two-factor login leaves a *pending login* in the session, which grants
nothing; ``login_get``/``login_post`` turn it into a session. A member of a team that
requires two-factor login and has none is logged in but marked: :func:`_enrolment_first`
sends each of their requests to enrolment until it is done.
"""

from __future__ import annotations

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
from flask_login import current_user

from app.accounts import twofactor
from app.extensions import client_address, db, limiter
from app.forms import TwoFactorCodeForm
from app.models import User
from app.web import auth, reauth
from app.web.htmx import error_json, is_htmx, is_websocket, wants_json

bp = Blueprint("twofactor", __name__)

# What a session marked "must enrol" may still reach.
ENROLMENT_ENDPOINTS = {
    "twofactor.enrol_get",
    "twofactor.enrol_post",
    "auth.logout_post",
    "auth.reauth_get",
    "auth.reauth_post",
    "static",
    "health.healthz",
}


@bp.before_app_request
def _enrolment_first():
    if not session.get(auth.MUST_ENROL) or request.endpoint in ENROLMENT_ENDPOINTS:
        return None
    if not current_user.is_authenticated:
        return None
    user = db.session.get(User, current_user.id)
    if twofactor.enabled(user):  # enrolled in another browser
        session.pop(auth.MUST_ENROL, None)
        return None
    message = "Your team requires two-factor login: turn it on first."
    if is_websocket() or wants_json():
        return error_json(403, "two_factor_required", message), 403
    target = url_for("twofactor.enrol_get")
    if is_htmx():
        return "", 403, {"HX-Redirect": target}
    return redirect(target, 303 if request.method != "GET" else 302)


# ---- the second step of a login ----------------------------------------------------


def _pending_user_key() -> str:
    pending = session.get(auth.PENDING)
    user_id = pending.get("user_id") if isinstance(pending, dict) else None
    return f"two-factor-login:{user_id}"


def _address_key() -> str:
    return f"two-factor-login-address:{client_address()}"


def _code_failed(response) -> bool:
    return response.status_code == 401


def _start_over():
    flash("Your login took too long or was interrupted. Log in again.", "error")
    return redirect(url_for("auth.login_get"), 303)


@bp.get("/login/two-factor")
def login_get():
    if current_user.is_authenticated:
        return redirect(url_for("dashboard.index"))
    if auth.pending_login() is None:
        return _start_over()
    return render_template("auth/two_factor.html", form=TwoFactorCodeForm())


@bp.post("/login/two-factor")
@limiter.limit(
    lambda: current_app.config["TWO_FACTOR_LIMIT_USER"],
    key_func=_pending_user_key,
    deduct_when=_code_failed,
)
@limiter.limit(
    lambda: current_app.config["TWO_FACTOR_LIMIT_IP"],
    key_func=_address_key,
    deduct_when=_code_failed,
)
def login_post():
    found = auth.pending_login()
    if found is None:
        return _start_over()
    user, pending = found
    form = TwoFactorCodeForm()
    if not form.validate():
        return render_template("auth/two_factor.html", form=form), 422
    used = twofactor.check_login_code(user, form.code.data)
    if used is None:
        form.code.errors = ["That code is not right, or was used already."]
        return render_template("auth/two_factor.html", form=form), 401
    response = auth.finish_session(user, method=pending["method"], next_url=pending["next"])
    if used == "recovery_code":  # after finish_session, which starts a new session
        left = twofactor.recovery_codes_left(user)
        flash(f"Recovery code used: {left} left. Make new ones on your account page.", "warning")
    return response


# ---- enrolment ---------------------------------------------------------------------


def _enrol_page(form: TwoFactorCodeForm, status: int = 200):
    user = db.session.get(User, current_user.id)
    return render_template(
        "settings/two_factor_enrol.html", form=form, enrolment=twofactor.start_enrolment(user),
        required=bool(session.get(auth.MUST_ENROL)), next=request.args.get("next", ""),
    ), status  # fmt: skip


@bp.get("/account/two-factor")
def enrol_get():
    if twofactor.enabled(current_user):
        return redirect(url_for("settings.account_get"))
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    return _enrol_page(TwoFactorCodeForm())


@bp.post("/account/two-factor")
def enrol_post():
    if twofactor.enabled(current_user):
        return redirect(url_for("settings.account_get"), 303)
    if (redirect_ := reauth.required(url_for("twofactor.enrol_get"))) is not None:
        return redirect_
    form = TwoFactorCodeForm()
    if not form.validate():
        return _enrol_page(form, 422)
    user = db.session.get(User, current_user.id)
    try:
        codes = twofactor.confirm_enrolment(user, form.code.data)
    except twofactor.TwoFactorRefused as exc:
        form.code.errors = [exc.message]
        return _enrol_page(form, 422)
    session.pop(auth.MUST_ENROL, None)
    # Shown once, in the answer to this POST; only their hashes are kept.
    return render_template(
        "settings/recovery_codes.html", codes=codes, enrolled=True,
        next=auth.safe_next(request.args.get("next")),
    )  # fmt: skip


# ---- recovery codes and turning it off (both ask again when the check is old) ---------


@bp.get("/account/two-factor/recovery-codes")
def regenerate_get():
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    if not twofactor.enabled(current_user):
        return redirect(url_for("settings.account_get"))
    return render_template(
        "confirm.html", title="Make new recovery codes?",
        message="Your ten current recovery codes stop working; the new ones are shown once.",
        action=url_for("twofactor.regenerate_post"), confirm_label="Make new codes",
        back=url_for("settings.account_get"),
    )  # fmt: skip


@bp.post("/account/two-factor/recovery-codes")
def regenerate_post():
    if (redirect_ := reauth.required(url_for("twofactor.regenerate_get"))) is not None:
        return redirect_
    try:
        codes = twofactor.regenerate_recovery_codes(db.session.get(User, current_user.id))
    except twofactor.TwoFactorRefused as exc:
        flash(exc.message, "error")
        return redirect(url_for("settings.account_get"), 303)
    return render_template("settings/recovery_codes.html", codes=codes, enrolled=False, next="/")


@bp.get("/account/two-factor/disable")
def disable_get():
    if (redirect_ := reauth.required()) is not None:
        return redirect_
    if not twofactor.enabled(current_user):
        return redirect(url_for("settings.account_get"))
    return render_template(
        "confirm.html", title="Turn two-factor login off?",
        message="Logging in will ask for your password only; your recovery codes are deleted.",
        action=url_for("twofactor.disable_post"), confirm_label="Turn off",
        back=url_for("settings.account_get"),
    )  # fmt: skip


@bp.post("/account/two-factor/disable")
def disable_post():
    if (redirect_ := reauth.required(url_for("twofactor.disable_get"))) is not None:
        return redirect_
    try:
        twofactor.disable(db.session.get(User, current_user.id))
    except twofactor.TwoFactorRefused as exc:
        flash(exc.message, "error")
        return redirect(url_for("settings.account_get"), 303)
    flash("Two-factor login is off.", "success")
    return redirect(url_for("settings.account_get"), 303)
