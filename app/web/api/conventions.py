"""The API's conventions that are not one resource's: cursors, ETags, Idempotency-Key.

**Idempotency-Key** (a POST's header, 1-200 visible characters): the first request with
a key claims it in Redis (``SET NX``, per API key, kept ``SLIPWAY_API_IDEMPOTENCY_SECONDS``)
together with a fingerprint of its method, path and body. Its answer is stored when it
is not a 5xx; a retry with the same key and the same request gets that answer again
(``Idempotent-Replayed: true``), and acts on nothing. A retry that arrives while the
first is still running waits for it (up to 30 s, then 409). The same key with another
request is a 422. A 5xx answer frees the key, so a retry runs again.

**ETag**: a resource's ETag is the SHA-256 of its JSON representation (sorted keys), so
a GET and the ``If-Match`` check of an update compute it the same way.

**Cursors** are opaque to clients: the last row's id, base64url-encoded.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from datetime import UTC
from typing import Any

from flask import current_app, g, request
from sqlalchemy import select

from app.extensions import db, redis
from app.web.api.errors import fail

IDEMPOTENCY_WAIT_SECONDS = 30
_KEY_CHARS = set(map(chr, range(0x21, 0x7F)))
_STORED_HEADERS = ("Location", "ETag", "Content-Type")


# ---- ETag / If-Match --------------------------------------------------------


def etag_of(data: Any) -> str:
    encoded = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()
    return '"' + hashlib.sha256(encoded).hexdigest()[:32] + '"'


def check_if_match(current: Any) -> None:
    wanted = request.headers.get("If-Match")
    if wanted is None:
        return
    tags = {tag.strip().removeprefix("W/") for tag in wanted.split(",")}
    if "*" in tags or etag_of(current) in tags:
        return
    fail(
        412, "precondition_failed",
        "The resource changed since you read it: fetch it again and retry.",
        {"etag": etag_of(current)},
    )  # fmt: skip


# ---- cursors ----------------------------------------------------------------


def encode_cursor(row_id: int) -> str:
    return base64.urlsafe_b64encode(str(row_id).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        text = ""
    if not text.isdigit() or len(text) > 18:
        fail(422, "invalid", "This cursor is not one the API gave.",
                    {"fields": {"cursor": "Not a cursor from a previous page."}})  # fmt: skip
    return int(text)


def paginate(statement, id_column, limit: int, cursor: str | None, newest_first: bool,
             *, scalars: bool = True):  # fmt: skip
    """(rows, next cursor or None) of one page of ``statement`` ordered by ``id_column``.
    ``scalars=False``: the rows are the statement's tuples (with an ``id`` column)."""
    if cursor:
        after = decode_cursor(cursor)
        statement = statement.where(id_column < after if newest_first else id_column > after)
    statement = statement.order_by(id_column.desc() if newest_first else id_column.asc())
    run = db.session.scalars if scalars else db.session.execute
    rows = list(run(statement.limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1].id) if more and rows else None)


def count(statement) -> int:
    from sqlalchemy import func

    return db.session.scalar(select(func.count()).select_from(statement.subquery())) or 0


# ---- Idempotency-Key --------------------------------------------------------


def _fingerprint() -> str:
    digest = hashlib.sha256()
    digest.update(request.method.encode() + b" " + request.full_path.encode() + b"\n")
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(stored: dict):
    response = current_app.response_class(base64.b64decode(stored["body"]), status=stored["status"])
    for name, value in stored["headers"].items():
        response.headers[name] = value
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotency_start():
    """Before a POST handler: claim the request's key, or answer what its first use did."""
    header = request.headers.get("Idempotency-Key")
    if request.method != "POST" or header is None:
        return None
    if not 1 <= len(header) <= 200 or not set(header) <= _KEY_CHARS:
        fail(400, "invalid_idempotency_key",
                    "Idempotency-Key must be 1 to 200 visible ASCII characters.")  # fmt: skip
    credential = g.api_credential
    name = f"slipway:idem:{credential.key_id}:" + hashlib.sha256(header.encode()).hexdigest()
    fingerprint = _fingerprint()
    ttl = current_app.config["API_IDEMPOTENCY_SECONDS"]
    client = redis.client
    pending = json.dumps({"state": "pending", "fingerprint": fingerprint})
    deadline = time.monotonic() + IDEMPOTENCY_WAIT_SECONDS
    pause = 0.005  # a retry racing its first request gets the answer soon after it exists
    while not client.set(name, pending, nx=True, ex=ttl):
        raw = client.get(name)
        if raw is None:
            continue  # freed between our two calls: claim it again
        stored = json.loads(raw)
        if stored["fingerprint"] != fingerprint:
            fail(422, "idempotency_key_reused",
                        "This Idempotency-Key was used for another request.")  # fmt: skip
        if stored["state"] == "done":
            return _replay(stored)
        if time.monotonic() > deadline:
            message = "A request with this Idempotency-Key is still running: retry later."
            fail(409, "idempotency_in_progress", message)
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    g.idempotency = (name, fingerprint, ttl)
    return None


def _shown_once_stand_in(response):
    """For an operation whose success holds a secret shown once: what a replay answers
    instead of the secret (a 409 naming what the first request made), else None."""
    from app.web.api import spec

    operation = spec.OPERATIONS.get(request.endpoint or "")
    if operation is None or not operation.shown_once or not 200 <= response.status_code < 300:
        return None
    made = (response.get_json(silent=True) or {}).get("id")
    stand_in = current_app.response_class(
        json.dumps({"error": {
            "code": "shown_once",
            "message": "The first request with this Idempotency-Key succeeded; its answer "
            "held a secret shown only then, so it is not repeated. If it was lost, revoke "
            "what was made and make another.",
            "details": {"id": made, "location": response.headers.get("Location")},
        }}),
        status=409, mimetype="application/json",
    )  # fmt: skip
    return stand_in


def idempotency_finish(response):
    """After a POST handler that claimed a key: keep its answer, or free the key on a 5xx."""
    claimed = g.pop("idempotency", None)
    if claimed is None:
        return response
    name, fingerprint, ttl = claimed
    if response.status_code >= 500 or response.is_streamed:
        redis.client.delete(name)
        return response
    kept = _shown_once_stand_in(response) or response
    stored = {
        "state": "done",
        "fingerprint": fingerprint,
        "status": kept.status_code,
        "headers": {h: kept.headers[h] for h in _STORED_HEADERS if h in kept.headers},
        "body": base64.b64encode(kept.get_data()).decode(),
    }
    redis.client.set(name, json.dumps(stored), ex=ttl)
    return response


def iso(value) -> str | None:
    """A timestamp as the API writes it: ISO 8601 in UTC (``2026-12-03T16:20:00Z``)."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
