"""``/.well-known/acme-challenge/<token>`` and ``/.well-known/slipway/<token>``: public,
plain text, GET only. Traefik sends these paths of every host on its ``web`` entrypoint
here, ahead of the apps' routes (``app.proxy.traefik``)."""

from __future__ import annotations

from flask import Blueprint, Response, abort, request

from app.proxy import challenges

bp = Blueprint("wellknown", __name__)


def _text(body: str | None) -> Response:
    if body is None:
        abort(404)
    return Response(body, 200, mimetype="text/plain", headers={"Cache-Control": "no-store"})


@bp.get("/.well-known/acme-challenge/<token>")
def acme_challenge(token: str):
    return _text(challenges.acme_answer(token, request.host))


@bp.get("/.well-known/slipway/<token>")
def probe(token: str):
    return _text(challenges.probe_answer(token))
