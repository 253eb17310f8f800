"""``/metrics``: Prometheus text, off unless ``SLIPWAY_METRICS_TOKEN`` is set.

With a token, a scrape must send ``Authorization: Bearer <token>``; no session,
no CSRF (GET only). The request timer below runs for every request while the
endpoint is on, so durations cover the whole installation's pages.
"""

from __future__ import annotations

import hmac
import time

from flask import Blueprint, Response, abort, current_app, g, request

# app.monitoring.prometheus (prometheus_client, 12 MiB) is imported only while the
# endpoint is on, where it is used: a web process without a token never loads it.

bp = Blueprint("prometheus", __name__)


def _enabled() -> bool:
    return bool(current_app.config.get("METRICS_TOKEN"))


@bp.before_app_request
def _start_timer() -> None:
    g.request_started = time.perf_counter()


@bp.after_app_request
def _observe(response: Response) -> Response:
    started = g.pop("request_started", None)
    if started is not None and _enabled():
        endpoint = request.url_rule.endpoint if request.url_rule else "unmatched"
        seconds = time.perf_counter() - started
        from app.monitoring import prometheus

        prometheus.observe_request(request.method, endpoint, response.status_code, seconds)
    return response


def _authorised() -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = current_app.config["METRICS_TOKEN"].encode()
    # compare_digest: the time taken does not tell how much of the token matched.
    return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected)


@bp.get("/metrics")
def scrape():
    if not _enabled():
        abort(404)
    if not _authorised():
        return Response(
            "a valid bearer token is required\n", 401,
            {"WWW-Authenticate": 'Bearer realm="slipway-metrics"'}, mimetype="text/plain",
        )  # fmt: skip
    from app.monitoring import prometheus

    return Response(prometheus.scrape(), 200, {"Content-Type": prometheus.CONTENT_TYPE})
