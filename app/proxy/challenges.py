"""Answers Slipway serves on ``/.well-known/`` for a while: the ACME HTTP-01 key
authorizations (``acme-challenge``) and the preflight's self-probe tokens (``slipway``).

Both are kept in Redis with a time to live, so every web process answers, whichever one
Traefik picks, and nothing outlives the order or the probe that made it. Tokens are
URL-safe base64 (RFC 8555 8.3: ``[A-Za-z0-9_-]``); anything else is never looked up.
An ACME answer is kept with the host it was issued for and given only to a request for
that host (SECURITY.md 26): another name pointed at this server cannot read it.
"""

from __future__ import annotations

import re

from app.extensions import redis

ACME_KEY = "slipway:acme-challenge:{}"
PROBE_KEY = "slipway:probe:{}"
ACME_TTL = 600  # an order's authorization is answered within minutes
PROBE_TTL = 60
TOKEN = re.compile(r"[A-Za-z0-9_-]{16,128}")


def valid_token(token: str) -> bool:
    return TOKEN.fullmatch(token) is not None


def _put(key: str, token: str, value: str, ttl: int) -> None:
    if not valid_token(token):
        raise ValueError("not a well-known token")
    redis.client.set(key.format(token), value, ex=ttl)


def _get(key: str, token: str) -> str | None:
    if not valid_token(token):
        return None
    value = redis.client.get(key.format(token))
    return value.decode() if value is not None else None


def _host_only(host: str) -> str:
    """``Host`` header → the name alone: lower case, no port, no trailing dot."""
    name = host.strip().lower()
    if name.startswith("["):
        return name.split("]")[0] + "]"
    return name.rsplit(":", 1)[0].rstrip(".") if ":" in name else name.rstrip(".")


def put_acme(token: str, key_authorization: str, *, host: str) -> None:
    """Answer ``token`` with ``key_authorization``, to requests for ``host`` only."""
    _put(ACME_KEY, token, f"{_host_only(host)} {key_authorization}", ACME_TTL)


def drop_acme(token: str) -> None:
    redis.client.delete(ACME_KEY.format(token))


def acme_answer(token: str, host: str) -> str | None:
    """The key authorization of ``token`` if it was issued for ``host`` (a Host header)."""
    stored = _get(ACME_KEY, token)
    if stored is None:
        return None
    issued_for, _, answer = stored.partition(" ")
    return answer if issued_for == _host_only(host) else None


def put_probe(token: str) -> None:
    _put(PROBE_KEY, token, token, PROBE_TTL)


def drop_probe(token: str) -> None:
    redis.client.delete(PROBE_KEY.format(token))


def probe_answer(token: str) -> str | None:
    return _get(PROBE_KEY, token)
