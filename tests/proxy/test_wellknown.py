"""``/.well-known/``: ACME HTTP-01 answers and probe tokens, public, from Redis, through
Traefik's top-priority router on the web entrypoint ahead of any app's route."""

from __future__ import annotations

import secrets

from app.proxy import challenges


def test_an_acme_answer_is_served_without_a_session_then_forgotten(app):
    client = app.test_client()
    token = secrets.token_urlsafe(32)
    assert client.get(f"/.well-known/acme-challenge/{token}").status_code == 404
    challenges.put_acme(token, f"{token}.thumbprint", host="shop.example.com")
    answer = client.get(
        f"/.well-known/acme-challenge/{token}", headers={"Host": "Shop.Example.com.:8080"}
    )
    assert answer.status_code == 200
    assert answer.get_data(as_text=True) == f"{token}.thumbprint"
    assert answer.mimetype == "text/plain"
    challenges.drop_acme(token)
    answer = client.get(
        f"/.well-known/acme-challenge/{token}", headers={"Host": "shop.example.com"}
    )
    assert answer.status_code == 404


def test_an_acme_answer_is_given_only_for_the_host_being_ordered(app):
    """SECURITY.md 26: another name pointed at this server cannot read the answer."""
    client = app.test_client()
    token = secrets.token_urlsafe(32)
    challenges.put_acme(token, f"{token}.thumbprint", host="shop.example.com")
    for other in ("evil.example.net", "localhost", "shop.example.com.evil.net", "example.com"):
        answer = client.get(f"/.well-known/acme-challenge/{token}", headers={"Host": other})
        assert answer.status_code == 404, other


def test_a_probe_token_answers_itself(app):
    client = app.test_client()
    token = secrets.token_urlsafe(24)
    challenges.put_probe(token)
    assert client.get(f"/.well-known/slipway/{token}").get_data(as_text=True) == token


def test_tokens_outside_the_base64url_alphabet_are_never_looked_up(app):
    client = app.test_client()
    for hostile in ("a*", "x" * 200, "short", "%00" * 20, "a" * 20 + "%0d%0aX:1"):
        assert client.get(f"/.well-known/acme-challenge/{hostile}").status_code == 404
    for hostile in ("../../secret_key", "a*", "x" * 200, "short", "a" * 20 + "\r\n"):
        assert not challenges.valid_token(hostile)
    # A path separator matches no route at all: the login redirect, never a file.
    traversal = client.get("/.well-known/acme-challenge/..%2f..%2fsecret_key")
    assert traversal.status_code == 302
