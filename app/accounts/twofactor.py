"""Two-factor login: TOTP enrolment, codes checked once, recovery codes, the check again.

Enrolment: :func:`start_enrolment` makes a base32 secret and keeps it, encrypted with
``app.crypto``, in Redis under the user's id for ``ENROL_SECONDS`` (not in the
cookie: the secret never leaves the server but on the enrolment page, and a pending
enrolment dies on its own). :func:`confirm_enrolment` stores it on the user, again
encrypted, once a code made from it checks out, and returns ten recovery codes, shown
once; only their SHA-256 is stored.

A code is good once: :func:`verify` accepts the steps ``now - 1 .. now + 1`` and
stores the matched step with an UPDATE that only succeeds while the stored step is
older, so a replayed code, even one sent twice at the same moment, fails. A recovery
code is spent by an UPDATE that only succeeds while ``used_at`` is NULL.

pyotp and segno are imported inside the functions that use them: web and worker
start-up never load them (``bench/idle.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from sqlalchemy import delete, exists, func, select, update

from app import audit, crypto
from app.extensions import client_address, db, redis
from app.models import Membership, RecoveryCode, Team, User
from app.models.base import utcnow

ISSUER = "Slipway"
SECRET_CONTEXT = "totp_secret"
ENROL_CONTEXT = "totp_enrolment"
ENROL_SECONDS = 900
STEP_SECONDS = 30
RECOVERY_CODE_COUNT = 10
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"  # base32: no 0/O, 1/I/L confusion
_RECOVERY_LENGTH = 10


class TwoFactorRefused(Exception):
    """A two-factor change that cannot happen; ``message`` says why, for the page."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# ---- state -------------------------------------------------------------------------


def enabled(user: User) -> bool:
    return user.totp_enabled_at is not None and bool(user.totp_secret)


def required_by_team(user: User) -> bool:
    """Whether any team the user belongs to makes two-factor login mandatory."""
    return bool(
        db.session.scalar(
            select(
                exists().where(
                    Membership.user_id == user.id,
                    Membership.team_id == Team.id,
                    Team.require_2fa.is_(True),
                )
            )
        )
    )


def has_password(user: User) -> bool:
    """Whether the user's password may answer a check: False when its hash is not an
    Argon2 hash (no password), or when password login is off for the user (everyone but
    owners, ``app.accounts.sso.password_allowed``)."""
    from app.accounts import sso

    return (user.password_hash or "").startswith("$argon2") and sso.password_allowed(user)


def sign_in_providers(user: User) -> list[tuple[str, str]]:
    """(slug, name) of the enabled single sign-on providers the user is linked to: signing
    in again through one of them answers the check too (it ends in start_session)."""
    from app.models.sso import OidcIdentity, OidcProvider

    rows = db.session.execute(
        select(OidcProvider.slug, OidcProvider.name)
        .join(OidcIdentity, OidcIdentity.provider_id == OidcProvider.id)
        .where(OidcIdentity.user_id == user.id, OidcProvider.enabled.is_(True))
        .order_by(OidcProvider.name)
    )
    return [(slug, name) for slug, name in rows]


def recovery_codes_left(user: User) -> int:
    return db.session.scalar(
        select(func.count(RecoveryCode.id)).where(
            RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None)
        )
    )


# ---- enrolment ---------------------------------------------------------------------


def _enrol_key(user: User) -> str:
    return f"slipway:totp-enrol:{user.id}"


def pending_secret(user: User, *, create: bool = False) -> str | None:
    """The secret of the user's enrolment under way (made when ``create``), or None."""
    stored = redis.client.get(_enrol_key(user))
    if stored:
        try:
            return crypto.decrypt(stored.decode(), context=ENROL_CONTEXT)
        except crypto.SecretError:
            pass  # a rotated key: start over
    if not create:
        return None
    import pyotp

    secret = pyotp.random_base32()
    sealed = crypto.encrypt(secret, context=ENROL_CONTEXT)
    redis.client.set(_enrol_key(user), sealed, ex=ENROL_SECONDS)
    return secret


def provisioning_uri(user: User, secret: str) -> str:
    import pyotp

    return pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=ISSUER)


def qr_data_uri(uri: str) -> str:
    """The QR code of ``uri`` as an SVG ``data:`` URI (CSP allows ``img-src data:``)."""
    import segno

    return segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#111")


def start_enrolment(user: User) -> dict:
    """What the enrolment page shows: the secret (grouped for typing), its QR code."""
    secret = pending_secret(user, create=True)
    return {
        "secret": " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)),
        "qr": qr_data_uri(provisioning_uri(user, secret)),
    }


def confirm_enrolment(user: User, code: str) -> list[str]:
    """Turn two-factor login on with the pending secret, if ``code`` is one of its codes.

    Returns the ten recovery codes (the only time they exist in clear). Raises
    :class:`TwoFactorRefused` for a wrong code, an expired enrolment, or an account
    where it is on already (two confirmations racing: one wins)."""
    secret = pending_secret(user)
    if secret is None:
        raise TwoFactorRefused("This enrolment has expired. Scan the new code below.")
    step = _matching_step(secret, code)
    if step is None:
        _failed(user, "enrolment")
        db.session.commit()
        raise TwoFactorRefused("That code is not right. Check the clock of your device.")
    claimed = db.session.execute(
        update(User)
        .where(User.id == user.id, User.totp_enabled_at.is_(None))
        .values(
            totp_secret=crypto.encrypt(secret, context=SECRET_CONTEXT),
            totp_enabled_at=utcnow(),
            # The confirming code is spent too: it cannot log in within its step.
            totp_last_step=step,
        )
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        raise TwoFactorRefused("Two-factor login is on already.")
    codes = _replace_recovery_codes(user)
    audit.record(audit.Action.TWO_FACTOR_ENABLED, target=user, user_id=user.id)
    db.session.commit()
    redis.client.delete(_enrol_key(user))
    db.session.refresh(user)
    return codes


# ---- codes -------------------------------------------------------------------------


def _matching_step(secret: str, code: str) -> int | None:
    """The time step (now - 1 .. now + 1) whose code is ``code``, or None."""
    import pyotp

    code = "".join(code.split())
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = int(time.time()) // STEP_SECONDS
    found = None
    for step in (now - 1, now, now + 1):
        # Compare all three, constant-time, so the answer's timing says nothing.
        if hmac.compare_digest(totp.generate_otp(step), code):
            found = step
    return found


def _secret(user: User) -> str:
    return crypto.decrypt_stored(
        user.totp_secret, context=SECRET_CONTEXT, what="The two-factor secret",
        remedy="turn two-factor login off for the user and enrol again",
    )  # fmt: skip


def verify(user: User, code: str) -> bool:
    """Whether ``code`` is the user's current TOTP code and not used before.

    The matched step is stored atomically: the UPDATE succeeds only while the stored
    step is older, so of two requests with the same code (or any older code) only one
    gets a row. Commits."""
    if not enabled(user):
        return False
    step = _matching_step(_secret(user), code)
    if step is None:
        return False
    result = db.session.execute(
        update(User)
        .where(
            User.id == user.id,
            (User.totp_last_step.is_(None)) | (User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return result.rowcount == 1


def normalise_recovery_code(code: str) -> str:
    return "".join(c for c in code.upper() if c.isalnum())


def _hash(code: str) -> str:
    return hashlib.sha256(normalise_recovery_code(code).encode()).hexdigest()


def _new_recovery_code() -> str:
    raw = "".join(secrets.choice(_ALPHABET) for _ in range(_RECOVERY_LENGTH))
    return f"{raw[:5]}-{raw[5:]}"


def _replace_recovery_codes(user: User) -> list[str]:
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    codes = [_new_recovery_code() for _ in range(RECOVERY_CODE_COUNT)]
    db.session.add_all(RecoveryCode(user_id=user.id, code_hash=_hash(c)) for c in codes)
    return codes


def use_recovery_code(user: User, code: str) -> bool:
    """Spend one of the user's recovery codes: True once per code, then never. Commits."""
    if not enabled(user) or len(normalise_recovery_code(code)) != _RECOVERY_LENGTH:
        return False
    result = db.session.execute(
        update(RecoveryCode)
        .where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == _hash(code),
            RecoveryCode.used_at.is_(None),
        )
        .values(used_at=utcnow())
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        db.session.rollback()
        return False
    audit.record(
        audit.Action.RECOVERY_CODE_USED, target=user, user_id=user.id,
        left=recovery_codes_left(user),
    )  # fmt: skip
    db.session.commit()
    return True


def check_login_code(user: User, code: str) -> str | None:
    """The second step of a login: a TOTP code or a recovery code. Returns which one
    worked (``"totp"``, ``"recovery_code"``) or None, audited as a failure."""
    compact = "".join(code.split())
    if compact.isdigit():
        if verify(user, compact):
            return "totp"
    elif use_recovery_code(user, compact):
        return "recovery_code"
    _failed(user, "login")
    db.session.commit()
    return None


def _failed(user: User, stage: str) -> None:
    # At most one row per (user, address) a minute, with the count (a flood of guesses).
    audit.record_counted(
        audit.Action.TWO_FACTOR_FAILED, key=f"{user.id}|{client_address()}",
        user_id=user.id, stage=stage,
    )  # fmt: skip


# ---- changes after enrolment -------------------------------------------------------


def regenerate_recovery_codes(user: User) -> list[str]:
    """Ten new recovery codes; every earlier one stops working. Commits."""
    if not enabled(user):
        raise TwoFactorRefused("Two-factor login is not on.")
    codes = _replace_recovery_codes(user)
    audit.record(audit.Action.RECOVERY_CODES_REGENERATED, target=user)
    db.session.commit()
    return codes


def disable(user: User) -> None:
    """Turn two-factor login off, unless one of the user's teams requires it. Commits."""
    if not enabled(user):
        raise TwoFactorRefused("Two-factor login is not on.")
    if required_by_team(user):
        raise TwoFactorRefused(
            "A team you belong to requires two-factor login: it cannot be turned off."
        )
    user.totp_secret = None
    user.totp_enabled_at = None
    db.session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    audit.record(audit.Action.TWO_FACTOR_DISABLED, target=user)
    db.session.commit()


def check_again(user: User, *, password: str = "", code: str = "") -> bool:
    """The "ask again" check before a sensitive action: the password, or a TOTP code
    when the user has two-factor login. Audited either way; commits."""
    ok = False
    if password and has_password(user):
        ok = user.check_password(password)
    elif code and enabled(user):
        ok = verify(user, code)
    if ok:
        audit.record(audit.Action.REAUTH_SUCCEEDED, target=user, user_id=user.id)
    else:
        audit.record_counted(
            audit.Action.REAUTH_FAILED, key=f"{user.id}|{client_address()}", user_id=user.id,
            method="password" if password else "code",
        )  # fmt: skip
    db.session.commit()
    return ok
