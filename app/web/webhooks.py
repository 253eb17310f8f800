"""Push webhooks. Public: a delivery authenticates by its signature, not a session.

The request guard skips login and CSRF for this blueprint (``PUBLIC_BLUEPRINTS``);
nothing else may live here.
"""

from __future__ import annotations

from flask import Blueprint, abort, current_app, jsonify, request
from flask_limiter import RateLimitExceeded
from werkzeug.exceptions import RequestEntityTooLarge

from app.extensions import limiter
from app.sources import refusals, webhooks
from app.web.htmx import error_json

bp = Blueprint("webhooks", __name__)


def _known_url() -> bool:
    # Only refusals of unknown URLs are limited: a forge's shared address flooding
    # unknown URLs (anyone can point a hook anywhere) must not block real apps' pushes.
    return webhooks.app_by_token((request.view_args or {}).get("token", "")) is not None


@bp.errorhandler(RateLimitExceeded)
def refused_too_often(exc: RateLimitExceeded):
    refusals.count_unrecorded_refusal()
    answer = error_json(429, "rate_limited", "Too many deliveries to unknown webhook URLs "
                        "from this address; try again later.")  # fmt: skip
    return answer, 429, {"Retry-After": str(refusals.refusal_window())}


@bp.post("/webhooks/<provider>/<token>")
@limiter.limit(
    lambda: current_app.config["WEBHOOK_REFUSAL_LIMIT"],
    exempt_when=_known_url,
    deduct_when=lambda response: response.status_code == 404,
)
def receive(provider: str, token: str):
    if provider not in webhooks.PROVIDERS:
        abort(404)
    app = webhooks.app_by_token(token)
    if app is None:
        refusals.refuse_unknown_url(provider)
        return error_json(404, "not_found", "No such webhook."), 404
    request.max_content_length = webhooks.MAX_BODY_BYTES
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        message = webhooks.refuse_too_large(app, provider, request.content_length)
        details = {"limit": webhooks.MAX_BODY_BYTES, "size": request.content_length}
        return error_json(413, "too_large", message, details), 413
    try:
        webhooks.verify(app, provider, request.headers, body)
    except webhooks.Refused as exc:
        webhooks.refuse(app, provider, str(exc))
        return error_json(401, "bad_signature", "The signature does not match."), 401
    try:
        status, answer = webhooks.receive(app, provider, request.headers, body)
    except webhooks.BadDelivery as exc:
        details = {"delivery": request.headers.get(webhooks.HEADERS[provider][1], "")[:100]}
        return error_json(400, "bad_delivery", str(exc), details), 400
    except webhooks.NotQueued as exc:
        details = {"delivery": exc.delivery, "deployment": exc.deployment_id}
        answer = error_json(503, "not_queued", "The deployment could not be queued; "
                            "deliver again later.", details)  # fmt: skip
        return answer, 503, {"Retry-After": "60"}
    return jsonify(answer), status
