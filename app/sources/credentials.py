"""An app's repository access: deploy keys, HTTPS tokens, pinned SSH host keys.

The private half of a deploy key and the token are stored AES-GCM encrypted
(``app.crypto``); they are decrypted only in the worker, for one clone, and
handed to ``app.sources.gitsrc`` as :class:`gitsrc.Credentials`. The SSH host key is
pinned on first use: the first clone records it, later clones refuse another.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app import audit, crypto
from app.extensions import db
from app.models import Application
from app.sources import gitsrc

KEY_CONTEXT = "deploy_key"
TOKEN_CONTEXT = "git_token"


@dataclass(frozen=True)
class HostKey:
    host: str
    key_type: str
    fingerprint: str  # SHA256:<base64>, as ssh-keygen -l prints it


def generate_deploy_key(app: Application) -> str:
    """Give the app a new ed25519 deploy key; returns the public key (OpenSSH format)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )
    app.deploy_key_private = crypto.encrypt(private, context=KEY_CONTEXT)
    app.deploy_key_public = f"{public} slipway-app-{app.id}"
    audit.record(audit.Action.DEPLOY_KEY_GENERATED, team_id=app.project.team_id, target=app)
    db.session.commit()
    return app.deploy_key_public


def set_token(app: Application, token: str, user: str) -> None:
    """Store (encrypted) or clear the HTTPS access token; the token is never shown again."""
    token = token.strip()
    if token:
        app.git_token = crypto.encrypt(token, context=TOKEN_CONTEXT)
        app.git_token_user = user.strip() or "x-access-token"
        audit.record(audit.Action.GIT_TOKEN_SET, team_id=app.project.team_id, target=app)
    else:
        app.git_token = None
        app.git_token_user = None
        audit.record(audit.Action.GIT_TOKEN_CLEARED, team_id=app.project.team_id, target=app)
    db.session.commit()


def save_push_settings(
    app: Application, watch_paths: str, deploy_tags: str | None, *, submodules: bool | None = None
) -> None:
    """Which pushes deploy: watched paths and the tag pattern (see ``sources.pushes``);
    and whether a clone fetches the repository's submodules (``None``: unchanged)."""
    app.watch_paths = watch_paths or ""
    app.deploy_tags = deploy_tags or None
    if submodules is not None:
        app.git_submodules = bool(submodules)
    audit.record(audit.Action.APP_GIT_SETTINGS_UPDATED, team_id=app.project.team_id, target=app)
    db.session.commit()


def forget_host_keys(app: Application) -> None:
    """Unpin the SSH host key: the next clone pins whatever the server presents."""
    app.git_known_hosts = None
    audit.record(audit.Action.GIT_HOST_KEY_FORGOTTEN, team_id=app.project.team_id, target=app)
    db.session.commit()


def host_keys(app: Application) -> list[HostKey]:
    """The pinned host keys with their SHA-256 fingerprints."""
    found = []
    for line in (app.git_known_hosts or "").splitlines():
        parts = line.split()
        if len(parts) < 3 or line.startswith("#"):
            continue
        try:
            blob = base64.b64decode(parts[2], validate=True)
        except ValueError:
            continue
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        found.append(HostKey(parts[0], parts[1], f"SHA256:{digest}"))
    return found


def git_credentials(app: Application) -> gitsrc.Credentials:
    """Decrypt what a clone of this app's repository needs (worker only)."""
    creds = gitsrc.Credentials(known_hosts=app.git_known_hosts or "")
    if app.deploy_key_private:
        creds.ssh_private_key = crypto.decrypt(app.deploy_key_private, context=KEY_CONTEXT)
    if app.git_token:
        creds.token = crypto.decrypt(app.git_token, context=TOKEN_CONTEXT)
        creds.token_user = app.git_token_user or "x-access-token"
    return creds


def clone_for(app: Application, ref: str, commit: str | None, dest, **options) -> gitsrc.Commit:
    """Clone the app's repository for a deployment and pin a newly seen host key.

    ``options`` are passed to :func:`gitsrc.clone` (timeouts, callbacks, allow-list).
    """
    creds = git_credentials(app)
    try:
        return gitsrc.clone(
            app.git_url or "", ref, dest, commit=commit, credentials=creds,
            submodules=app.git_submodules is not False, **options,
        )  # fmt: skip
    finally:
        if creds.known_hosts.strip() and creds.known_hosts != (app.git_known_hosts or ""):
            app.git_known_hosts = creds.known_hosts
            audit.record(audit.Action.GIT_HOST_KEY_PINNED, team_id=app.project.team_id, target=app,
                          hosts=[k.host for k in host_keys(app)])  # fmt: skip
            db.session.commit()
