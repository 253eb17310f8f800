"""Deliveries to webhook URLs no app has: limited per source address, audited per burst.

Flask-Limiter refuses them per client address (``WEBHOOK_REFUSAL_LIMIT``, counted on
the 404s only, known URLs exempt; see ``app/web/webhooks.py``) with a 429. Each is
audited at most once per address and window: the first refusal of a burst writes the
``webhook.refused`` row, the others (and the 429s) are only counted in Redis, and the
address's next row carries that count (``unrecorded_before``). A flood therefore costs
one audit row per address per window, whatever tokens it guesses.
"""

from __future__ import annotations

from flask import current_app
from limits import parse_many
from redis.exceptions import RedisError

from app import audit
from app.extensions import client_address, db, redis

_BURST_KEY = "slipway:webhook-refusals:burst:{}"
_UNRECORDED_KEY = "slipway:webhook-refusals:unrecorded:{}"
_UNRECORDED_TTL = 24 * 3600  # a count older than this is dropped with its key


def refusal_window() -> int:
    """Seconds of the shortest window of ``WEBHOOK_REFUSAL_LIMIT``: one burst."""
    items = parse_many(current_app.config["WEBHOOK_REFUSAL_LIMIT"])
    return min(item.get_expiry() for item in items)


def refuse_unknown_url(provider: str) -> None:
    """Audit a delivery to an unknown webhook URL, once per source address and burst.

    ``SET NX EX`` decides which refusal opens a burst (the first one after the window
    passed); the row says how many refusals since the address's previous row were not
    recorded (``unrecorded_before``). Without Redis every refusal is recorded."""
    address, window = client_address(), refusal_window()
    try:
        if not redis.client.set(_BURST_KEY.format(address), 1, nx=True, ex=window):
            count_unrecorded_refusal()
            return
        pipe = redis.client.pipeline()  # MULTI: read and reset the count at once
        pipe.get(_UNRECORDED_KEY.format(address))
        pipe.delete(_UNRECORDED_KEY.format(address))
        unrecorded: int | None = int(pipe.execute()[0] or 0)
    except RedisError:
        unrecorded = None
    audit.record(
        audit.Action.WEBHOOK_REFUSED,
        provider=provider,
        reason="unknown webhook URL",
        burst_seconds=window,
        unrecorded_before=unrecorded,
    )
    db.session.commit()


def count_unrecorded_refusal() -> None:
    """Count a refusal of an unknown URL that is not audited (a burst's later ones, and
    those answered 429) towards the address's next audit row."""
    key = _UNRECORDED_KEY.format(client_address())
    try:
        pipe = redis.client.pipeline()
        pipe.incr(key)
        pipe.expire(key, _UNRECORDED_TTL)
        pipe.execute()
    except RedisError:
        pass  # a lost count is not worth failing the answer for
