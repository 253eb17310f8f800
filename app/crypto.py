"""AES-256-GCM for secrets at rest, with a key id in every ciphertext.

A token looks like ``k1:<base64(nonce || ciphertext+tag)>``. The first key of
``SLIPWAY_ENCRYPTION_KEYS`` encrypts; any listed key decrypts, so keys can be
rotated by prepending a new one. The purpose (``context``) is bound as associated
data: an env-var ciphertext pasted into a webhook-secret column will not decrypt.
"""

from __future__ import annotations

import base64
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import current_app

MASK = "••••••••"


class SecretError(Exception):
    """A ciphertext could not be decrypted (unknown key id, tampering, wrong context)."""


def _keys() -> dict[str, bytes]:
    return current_app.config["ENCRYPTION_KEYS"]


def encrypt(plaintext: str, *, context: str) -> str:
    """Encrypt ``plaintext`` with the current key; ``context`` names its purpose."""
    key_id, key = next(iter(_keys().items()))
    nonce = os.urandom(12)
    sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
    return f"{key_id}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(token: str, *, context: str) -> str:
    """Decrypt a token made by :func:`encrypt` with the same ``context``."""
    key_id, sep, body = token.partition(":")
    key = _keys().get(key_id)
    if not sep or key is None:
        raise SecretError(f"no encryption key with id {key_id!r}")
    try:
        raw = base64.b64decode(body, validate=True)
        return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode()).decode()
    except (InvalidTag, ValueError) as exc:  # binascii.Error and a short nonce are ValueErrors
        raise SecretError("ciphertext failed authentication") from exc


def decrypt_stored(token: str, *, context: str, what: str, remedy: str) -> str:
    """:func:`decrypt` for a stored secret, whose failure a person must be able to act on.

    A secret stored under a key that was rotated away raises :class:`SecretError`
    saying which secret (``what``) and what to do (``remedy``)."""
    try:
        return decrypt(token, context=context)
    except SecretError:
        raise SecretError(
            f"{what} cannot be decrypted (the encryption key it was stored with is no longer "
            f"configured); {remedy}"
        ) from None
