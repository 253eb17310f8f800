"""Where a backup goes: a destination with its secret, ready for the S3 client.

Runs, retention, restores and the pages all reach S3 through :func:`s3_target`;
it lives below them so that none of them imports another to get it.
"""

from __future__ import annotations

from flask import current_app

from app import crypto
from app.backups import storage
from app.models import BackupDestination

S3_SECRET = "backup-destination-secret"


def s3_target(dest: BackupDestination) -> storage.S3Target:
    """The destination with its secret decrypted (worker, Test connection, downloads).

    A secret stored under an encryption key that was rotated away raises
    :class:`crypto.SecretError` with a message a person can act on.
    """
    secret = crypto.decrypt_stored(
        dest.secret_access_key, context=S3_SECRET, what="the secret key",
        remedy=f"enter it again on the edit page of destination {dest.name}",
    )  # fmt: skip
    return storage.S3Target(
        endpoint_url=dest.endpoint_url, region=dest.region, bucket=dest.bucket,
        prefix=dest.prefix, access_key_id=dest.access_key_id, secret_access_key=secret,
        path_style=dest.path_style, timeout=current_app.config["S3_TIMEOUT_SECONDS"],
    )  # fmt: skip
