"""Environment variables of an application: parsing, storing, masking, decrypting."""

from __future__ import annotations

import hashlib
import json

from app import crypto, names
from app.extensions import db
from app.models import Application, EnvVar

CONTEXT = "env_var"


def parse_dotenv(text: str) -> dict[str, str]:
    """``KEY=value`` lines (blank lines and ``#`` comments skipped) → dict, in order.

    A bad line raises ``InvalidValue`` naming its line number; a key given twice
    is an error rather than a silent override.
    """
    result: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if line.startswith("export "):
            key = key[len("export ") :].strip()
        if not sep:
            raise names.InvalidValue(f"Line {number}: expected KEY=value.")
        try:
            names.env_key(key)
            names.env_value(value)
        except names.InvalidValue as exc:
            raise names.InvalidValue(f"Line {number}: {exc}") from None
        if key in result:
            raise names.InvalidValue(f"Line {number}: {key} is given twice.")
        result[key] = value
    return result


def set_var(app: Application, key: str, value: str, *, secret: bool) -> EnvVar:
    """Create or replace one variable; a secret value is stored encrypted only."""
    var = next((v for v in app.env_vars if v.key == key), None)
    if var is None:
        var = EnvVar(key=key)
        app.env_vars.append(var)
    var.is_secret = secret
    if secret:
        var.value = None
        var.secret_value = crypto.encrypt(value, context=CONTEXT)
    else:
        var.value = value
        var.secret_value = None
    return var


def replace_plain(app: Application, plain: dict[str, str]) -> None:
    """Make the app's plain (non-secret) variables exactly ``plain``; secrets stay."""
    for var in list(app.env_vars):
        if not var.is_secret and var.key not in plain:
            app.env_vars.remove(var)
            db.session.delete(var)
    for key, value in plain.items():
        set_var(app, key, value, secret=False)


def plain_as_text(app: Application) -> str:
    return "\n".join(f"{v.key}={v.value}" for v in app.env_vars if not v.is_secret)


def display_value(var: EnvVar) -> str:
    """What a page may show: the value, or a mask for secrets."""
    return crypto.MASK if var.is_secret else (var.value or "")


def decrypted_one(var: EnvVar) -> str:
    if var.is_secret:
        return crypto.decrypt(var.secret_value or "", context=CONTEXT)
    return var.value or ""


def secret_values(app: Application) -> list[str]:
    """The app's secret values in clear, for redacting logs (build and runtime)."""
    return [decrypted_one(v) for v in app.env_vars if v.is_secret]


def decrypted(app: Application) -> dict[str, str]:
    """The full environment for a container. Only the worker calls this."""
    return {v.key: decrypted_one(v) for v in app.env_vars}


# -- a deployment's env snapshot ----------------------------------------------
SNAPSHOT_CONTEXT = "deployment_env"


def stored_digest(app: Application) -> str:
    """A digest of the env as stored (plain values, secret *ciphertexts*): equal while
    nothing was set again, so a page can tell "not applied yet" without decrypting.
    Saving a secret again, even with the same value, counts as a change."""
    rows = sorted(
        (v.key, v.is_secret, (v.secret_value if v.is_secret else v.value) or "")
        for v in app.env_vars
    )
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()


def snapshot(app: Application) -> str:
    """The app's env now, values in clear, as one ciphertext for the deployment row.
    Only the worker calls this (it decrypts the secrets)."""
    env = {v.key: [decrypted_one(v), v.is_secret] for v in app.env_vars}
    return crypto.encrypt(json.dumps(env), context=SNAPSHOT_CONTEXT)


def open_snapshot(ciphertext: str) -> dict[str, tuple[str, bool]]:
    """A snapshot's variables: key → (value, is_secret). Only the worker calls this."""
    env = json.loads(
        crypto.decrypt_stored(
            ciphertext,
            context=SNAPSHOT_CONTEXT,
            what="the env this deployment recorded",
            remedy="deploy with today's env instead (Restart, or a rollback keeping today's env)",
        )  # fmt: skip
    )
    return {key: (value, bool(secret)) for key, (value, secret) in env.items()}
