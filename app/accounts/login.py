"""Signing in and out, passwords and sessions: the writes behind the login pages."""

from __future__ import annotations

from sqlalchemy import func, select

from app import audit
from app.extensions import db
from app.models import User
from app.models.accounts import burn_password_check
from app.models.base import utcnow


def check_login(email: str, password: str) -> User | None:
    """The user with this email and password, or None (audited either way).

    An unknown email costs the same password hash as a wrong password, so the answer's
    timing does not tell which accounts exist."""
    email = email.lower()
    user = db.session.scalar(select(User).where(func.lower(User.email) == email))
    if user is None:
        burn_password_check(password)
    if user is None or not user.check_password(password):
        audit.record(audit.Action.LOGIN_FAILED, email=email[:254])
        db.session.commit()
        return None
    user.last_login_at = utcnow()
    audit.record(audit.Action.LOGIN_SUCCEEDED, user_id=user.id, target=user)
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
