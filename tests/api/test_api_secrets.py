"""SECURITY.md case 19 on the API: no secret the team stored comes back in any API body.

Every GET operation of /api/v1 (from ``url_map``, so a new one is covered the day it is
added) is read with an admin key of the team's owner, on the team's own objects, and
its body and headers are searched for every secret the team holds: the secret env
value, the S3 secret key, the database password, the webhook secret, the API key
itself. Streams are read without ``follow``.
"""

from __future__ import annotations

from app.extensions import db
from app.models import Application
from tests.api.conftest import Api, make_key


def _canaries(world, token: str) -> dict[str, str]:
    from app.sources import webhooks

    label = world.team.name.removesuffix("-team")
    app = db.session.get(Application, world.application.id)
    webhook_secret = webhooks.rotate_secret(app)
    db.session.commit()
    return {
        "secret env value": f"{label}-secret-value",
        "S3 secret key": f"{label}-s3-secret",
        "database password": f"{label}-db-password",
        "API key secret": token.split("_", 2)[2],
        "webhook secret": webhook_secret,
    }


def test_no_api_read_returns_a_stored_secret(app, client, team_a, routes):
    _, token = make_key(team_a.user, team_a.team, scopes=["admin"])
    api = Api(client, token)
    canaries = _canaries(team_a, token)
    read = 0
    for endpoint, _, url in routes(app, team_a, methods=("GET",)):
        if not endpoint.startswith("api."):
            continue
        response = api.get(url)
        read += 1
        everything = response.get_data(as_text=True) + str(response.headers)
        for what, secret in canaries.items():
            assert secret not in everything, (what, url)
        assert response.status_code < 500, (url, response.status_code)
    assert read >= 2
