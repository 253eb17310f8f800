"""Password resets: one-time links by mail ("Forgot password?") or from the operator's
command (``flask --app app users reset-password EMAIL``).

A token is 32 random bytes (URL-safe); only its SHA-256 is stored. A link lasts an
hour and works once; using it sets the password, ends every session of the user
(``session_version``) and closes the user's other open links. Asking for a link
answers the same whether or not the account exists, and mail is sent by a job, so
the answer does not wait on SMTP either.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import current_app
from limits import parse_many
from sqlalchemy import func, select, update

from app import audit, mail
from app.extensions import db, limiter, queue
from app.models import PasswordReset, User
from app.models.base import utcnow

log = logging.getLogger("slipway.accounts")
LIFETIME = timedelta(hours=1)


class ResetRefused(Exception):
    """The link cannot be used; ``message`` says why, ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def find_user(email: str) -> User | None:
    email = email.strip().lower()
    return db.session.scalar(select(User).where(func.lower(User.email) == email))


def mail_available() -> bool:
    """Links can be mailed: an SMTP server and sender, and the public URL links point at.

    Without SLIPWAY_PUBLIC_URL a link would have to be built from the request's Host
    header, which whoever asks for the reset chooses."""
    return mail.installation_server() is not None and bool(current_app.config["PUBLIC_URL"])


def reset_path(token: str) -> str:
    return f"/password/reset/{token}"


def reset_url(token: str) -> str | None:
    """The absolute link, or None without SLIPWAY_PUBLIC_URL."""
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    return f"{base}{reset_path(token)}" if base else None


def issue(user: User, via: str) -> str:
    """A new link for ``user`` (audited); returns the token, which is stored only hashed."""
    token = secrets.token_urlsafe(32)
    db.session.add(
        PasswordReset(
            user_id=user.id, token_hash=_digest(token), via=via, expires_at=utcnow() + LIFETIME
        )
    )
    audit.record(audit.Action.PASSWORD_RESET_REQUESTED, target=user, via=via)
    db.session.commit()
    return token


def _within_mail_limit(email: str) -> bool:
    """At most PASSWORD_RESET_LIMIT_ACCOUNT mails to one address, counted for every
    address asked for, known or not, so the limit tells nothing either."""
    key = ("slipway-rl", "password-reset", email.strip().lower()[:254])
    items = parse_many(current_app.config["PASSWORD_RESET_LIMIT_ACCOUNT"])
    return all([limiter.limiter.hit(item, *key) for item in items])


def request_by_email(email: str) -> None:
    """ "Forgot password?": queue a mail with a link if the account exists and mail can
    be sent. Nothing here depends on whether it exists, except the enqueue."""
    if not mail_available() or not _within_mail_limit(email):
        return
    user = find_user(email)
    if user is not None:
        queue("default").enqueue(
            "app.jobs.send_password_reset", user.id, failure_ttl=86400, job_timeout=60
        )


def send_mail(user_id: int) -> str:
    """The job: make a link for the user and mail it. Returns the outcome."""
    user = db.session.get(User, user_id)
    server = mail.installation_server()
    if user is None or server is None or not current_app.config["PUBLIC_URL"]:
        return "not sent"
    token = issue(user, via="email")
    text = (
        f"Someone, probably you, asked to set a new password for {user.email} on Slipway.\n\n"
        f"Open this link within an hour to choose one (it works once):\n\n"
        f"{reset_url(token)}\n\n"
        "Setting it logs out every session of the account. If you did not ask, ignore "
        "this mail: your password stays as it is.\n"
    )
    try:
        mail.send(server, current_app.config["SMTP_SENDER"], user.email,
                  "Set a new Slipway password", text)  # fmt: skip
    except mail.MailError as exc:
        log.warning("password reset mail for user %s not sent: %s", user_id, exc)
        return "failed"
    return "sent"


def check(token: str) -> PasswordReset:
    """The open link for ``token``; raises :class:`ResetRefused` saying why not."""
    row = db.session.scalar(select(PasswordReset).where(PasswordReset.token_hash == _digest(token)))
    if row is None:
        raise ResetRefused(
            "This reset link is not valid. Check that it was copied whole, or ask for a new one.",
            404,
        )
    if row.used_at is not None:
        raise ResetRefused(
            "This reset link was already used (or another link of the account was used "
            "since). Ask for a new one if you still need it.",
            410,
        )
    if row.expires_at <= utcnow():
        raise ResetRefused(
            "This reset link has expired: links last an hour. Ask for a new one.", 410
        )
    return row


def _set_password(user: User, password: str, via: str) -> None:
    user.set_password(password)
    user.end_all_sessions()
    db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.user_id == user.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )
    audit.record(audit.Action.PASSWORD_RESET, target=user, user_id=user.id, via=via)
    db.session.commit()


def complete(token: str, password: str) -> User:
    """Use the link: set the password, end every session, close every open link."""
    row = check(token)
    # The link is claimed in one conditional UPDATE: of two requests racing with the
    # same link, one changes the password, the other is told it was used.
    claimed = db.session.execute(
        update(PasswordReset)
        .where(PasswordReset.id == row.id, PasswordReset.used_at.is_(None))
        .values(used_at=utcnow())
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise ResetRefused("This reset link was already used. Ask for a new one.", 410)
    user = db.session.get(User, row.user_id)
    _set_password(user, password, via="link")
    return user


def set_password(user: User, password: str) -> None:
    """The operator's command with ``--password-stdin``: set it now, same effects."""
    _set_password(user, password, via="cli")
