"""API test helpers: a member's key, and a client that sends it."""

from __future__ import annotations

import pytest

from app.accounts import apikeys
from app.models import Role
from tests.factories import make_user, team_of


class Api:
    """The test client with ``Authorization: Bearer <token>`` on every request."""

    def __init__(self, client, token: str):
        self.client, self.token = client, token

    def _headers(self, headers):
        return {"Authorization": f"Bearer {self.token}", **(headers or {})}

    def get(self, path, headers=None, **kw):
        return self.client.get(path, headers=self._headers(headers), **kw)

    def delete(self, path, headers=None, **kw):
        return self.client.delete(path, headers=self._headers(headers), **kw)

    def post(self, path, json=None, headers=None, **kw):
        return self.client.post(path, json=json, headers=self._headers(headers), **kw)

    def patch(self, path, json=None, headers=None, **kw):
        return self.client.patch(path, json=json, headers=self._headers(headers), **kw)

    def put(self, path, json=None, headers=None, **kw):
        return self.client.put(path, json=json, headers=self._headers(headers), **kw)


def make_key(user, team=None, scopes=("admin",), projects=None, expires_at=None, name="ci"):
    """A key of ``user`` in ``team`` (their first); returns (row, token)."""
    return apikeys.create(user, team or team_of(user), name, list(scopes), projects, expires_at)


@pytest.fixture
def api(client, owner):
    """An admin-scoped key of a team owner, as a client: ``api.get("/api/v1/me")``."""
    _, token = make_key(owner)
    return Api(client, token)


@pytest.fixture
def api_for(client):
    """``api_for(role=..., scopes=..., projects=...)``: a new member's key, as a client
    (with ``.user`` and ``.team``)."""

    def make(role=Role.owner, scopes=("admin",), projects=None, team=None, user=None):
        user = user or make_user(team=team, role=role)
        key, token = make_key(user, team, scopes, projects)
        found = Api(client, token)
        found.user, found.team, found.key = user, team or team_of(user), key
        return found

    return make


def error_of(response) -> dict:
    """The error envelope of an answer (asserting it is one)."""
    body = response.get_json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "details"}, body
    return body["error"]


# Two teams full of objects, whole-database snapshots, url_map routes with real ids: the
# security suite's fixtures, shared with the API's tests.
from tests.security.conftest import build_team, db_state, routes, team_a, team_b  # noqa: E402,F401
