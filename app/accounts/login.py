"""Signing in and out, passwords and sessions: the writes behind the login pages.

Failed logins are limited three ways (the limits are Flask-Limiter's, on Redis): per
client address, per account from one address (both refuse with 429), and per account
from everywhere. The account-wide one never refuses: past it the account is *under
pressure*, and an address that fails for it from then on must wait
``LOGIN_SLOW_SECONDS`` before its next try (``app.web.auth``). An address that has not
failed is never slowed, so a guesser cannot lock the owner out.
"""

from __future__ import annotations

from flask import current_app
from limits import parse_many
from sqlalchemy import func, select

from app import audit
from app.accounts import sso
from app.extensions import client_address, db, limiter
from app.models import User
from app.models.accounts import burn_password_check
from app.models.base import utcnow


def check_login(email: str, password: str) -> User | None:
    """The user with this email and password, or None (audited either way).

    An unknown email costs the same password hash as a wrong password, so the answer's
    timing does not tell which accounts exist."""
    email = email.lower()
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    # With password login off (``app.accounts.sso``), only owners' passwords are checked:
    # anyone else's answer must not tell whether the password was right.
    refused = user is not None and not sso.password_allowed(user)
    if user is None or refused:
        burn_password_check(password)
    if user is None or refused or not user.check_password(password):
        _count_account_failure(email)
        # At most one row per (account, address) a minute, with the count of failures.
        details = {"password_login_off": True} if refused else {}
        if user is not None:
            details["target"] = user  # the account's team sees it on its Audit log
        audit.record_counted(
            audit.Action.LOGIN_FAILED,
            key=f"{email[:254]}|{client_address()}",
            email=email[:254],
            **details,
        )
        db.session.commit()
        return None
    user.last_login_at = utcnow()
    # With two-factor login on, this is the password step only: the session starts after
    # the code (app.web.auth), and a wrong code adds two_factor.failed.
    details = {"second_factor": "pending"} if user.totp_enabled_at else {}
    audit.record(audit.Action.LOGIN_SUCCEEDED, user_id=user.id, target=user, **details)
    db.session.commit()
    return user


def log_out(user: User) -> None:
    """Bump the session version: every copy of this user's cookie is dead too."""
    user.end_all_sessions()
    audit.record(audit.Action.LOGOUT, target=user)
    db.session.commit()


def change_password(user: User, new_password: str) -> None:
    """Set a new password and end every other session of the user."""
    user.set_password(new_password)
    user.end_all_sessions()
    audit.record(audit.Action.PASSWORD_CHANGED, target=user)
    db.session.commit()


def end_other_sessions(user: User) -> None:
    user.end_all_sessions()
    audit.record(audit.Action.SESSIONS_REVOKED, target=user)
    db.session.commit()


def _account_limits():
    return parse_many(current_app.config["LOGIN_LIMIT_ACCOUNT"])


def _account_key(email: str) -> tuple[str, ...]:
    return ("slipway-rl", "login-account", email.strip().lower()[:254])


def _count_account_failure(email: str) -> None:
    for item in _account_limits():
        limiter.limiter.hit(item, *_account_key(email))


def account_under_pressure(email: str) -> bool:
    """More failed logins for this account, from all addresses, than LOGIN_LIMIT_ACCOUNT."""
    return any(not limiter.limiter.test(item, *_account_key(email)) for item in _account_limits())
