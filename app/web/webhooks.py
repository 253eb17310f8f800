"""Push webhooks. Public: a delivery authenticates by its signature, not a session.

The request guard skips login and CSRF for this blueprint (``PUBLIC_BLUEPRINTS``);
nothing else may live here.
"""

from __future__ import annotations

from flask import Blueprint, abort, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from app.sources import webhooks
from app.web.htmx import error_json

bp = Blueprint("webhooks", __name__)


@bp.post("/webhooks/<provider>/<token>")
def receive(provider: str, token: str):
    if provider not in webhooks.PROVIDERS:
        abort(404)
    app = webhooks.app_by_token(token)
    if app is None:
        webhooks.refuse(None, provider, "unknown webhook URL")
        return error_json(404, "not_found", "No such webhook."), 404
    request.max_content_length = webhooks.MAX_BODY_BYTES
    try:
        body = request.get_data(cache=False)
    except RequestEntityTooLarge:
        return error_json(413, "too_large", "The delivery is larger than 2 MiB."), 413
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
