"""AES-256-GCM with a key id per ciphertext; rotation; context binding."""

import base64

import pytest

from app import config, crypto


def test_round_trip_and_ciphertext_hides_plaintext(app):
    token = crypto.encrypt("hunter2-canary", context="env_var")
    assert "hunter2" not in token
    assert token.startswith("k1:")
    assert crypto.decrypt(token, context="env_var") == "hunter2-canary"


def test_same_plaintext_encrypts_differently_each_time(app):
    assert crypto.encrypt("x", context="c") != crypto.encrypt("x", context="c")


def test_wrong_context_does_not_decrypt(app):
    token = crypto.encrypt("x", context="env_var")
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(token, context="webhook_secret")


def test_tampered_ciphertext_is_refused(app):
    token = crypto.encrypt("x", context="c")
    key_id, body = token.split(":")
    raw = bytearray(base64.b64decode(body))
    raw[-1] ^= 1
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(f"{key_id}:{base64.b64encode(bytes(raw)).decode()}", context="c")


@pytest.mark.parametrize("body", ["not base64 at all!", "", "AAAA", "QUJD"])
def test_a_garbled_ciphertext_body_is_a_secret_error(app, body):
    """Not base64, empty, or shorter than a nonce: the same SecretError callers handle."""
    key_id = crypto.encrypt("x", context="c").split(":")[0]
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(f"{key_id}:{body}", context="c")


def test_rotation_new_key_encrypts_old_key_still_decrypts(app):
    old = crypto.encrypt("before rotation", context="c")
    new_key = "k2:" + base64.b64encode(b"\x02" * 32).decode()
    old_keys = app.config["ENCRYPTION_KEYS"]
    app.config["ENCRYPTION_KEYS"] = config.parse_encryption_keys(
        new_key + "," + "k1:" + base64.b64encode(old_keys["k1"]).decode()
    )
    try:
        assert crypto.decrypt(old, context="c") == "before rotation"
        assert crypto.encrypt("after", context="c").partition(":")[0] == "k2"
    finally:
        app.config["ENCRYPTION_KEYS"] = old_keys


def test_unknown_key_id_is_refused(app):
    with pytest.raises(crypto.SecretError, match="k9"):
        crypto.decrypt("k9:AAAA", context="c")
