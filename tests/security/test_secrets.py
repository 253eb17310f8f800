"""SECURITY.md case 19: a canary secret env value never leaves the server.

It is entered every way the UI allows (env form, htmx env form, the app form's
secret textarea, on create and on edit), then searched for in every page,
fragment, error, header and session cookie, every database row, every Redis
key, and all log output. The database holds ciphertext that decrypts to it,
and neither encryption key nor secret key is stored in the database.
"""

from __future__ import annotations

import base64
import json
import logging
from types import SimpleNamespace

import pytest
import redis as redis_lib
from sqlalchemy import select, text

from app import crypto
from app.extensions import db
from app.models import Application, Deployment, EnvVar, Role
from app.projects import envvars
from tests.conftest import TEST_KEY, csrf_token

CANARY = "canary-7f3a9c1e-d0-not-leak"


def _everything_in(response) -> str:
    """Body, headers, and the decoded session cookie of one response."""
    parts = [response.get_data(as_text=True), str(response.headers)]
    for header in response.headers.getlist("Set-Cookie"):
        parts.append(header)
    return "\n".join(parts)


def _session_contents(flask_app, client) -> str:
    cookie = client.get_cookie(flask_app.config["SESSION_COOKIE_NAME"])
    if cookie is None:
        return ""
    serializer = flask_app.session_interface.get_signing_serializer(flask_app)
    return json.dumps(serializer.loads(cookie.value), default=str)


def _database_text() -> str:
    """Every row of every table, as text."""
    db.session.commit()
    dump = []
    with db.engine.connect() as conn:
        for table in db.metadata.sorted_tables:
            for row in conn.execute(select(table)):
                dump.append(repr(tuple(row)))
    return "\n".join(dump)


def _redis_text(flask_app) -> str:
    r = redis_lib.Redis.from_url(flask_app.config["REDIS_URL"])
    dump = []
    for key in r.scan_iter():
        kind = r.type(key)
        if kind == b"string":
            dump.append(repr(r.get(key)))
        elif kind == b"hash":
            dump.append(repr(r.hgetall(key)))
        elif kind == b"list":
            dump.append(repr(r.lrange(key, 0, -1)))
        elif kind == b"set":
            dump.append(repr(r.smembers(key)))
        elif kind == b"zset":
            dump.append(repr(r.zrange(key, 0, -1)))
        dump.append(repr(key))
    return "\n".join(dump)


@pytest.fixture
def all_logs(caplog):
    """Capture every log record, SQL statements and their parameters included."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")
    return caplog


@pytest.fixture
def developer_client(client, member):
    member(Role.developer)
    return client


def _app_form(world, **changes) -> dict:
    return {
        "name": "canary-app",
        "description": "",
        "environment_id": str(world.project.environments[0].id),
        "source_type": "image",
        "image": "nginx:1.27",
        "container_port": "80",
        "replicas": "1",
        "health_check_path": "/",
        **changes,
    }


def _every_get_page(flask_app, client, routes, world) -> list:
    """Every GET route, filled with the canary app's ids, as HTML, htmx and JSON."""
    responses = []
    for _, _, url in routes(flask_app, world, methods=("GET",)):
        for headers in ({}, {"HX-Request": "true"}, {"Accept": "application/json"}):
            responses.append(client.get(url, headers=headers))
    return responses


def _assert_sealed_in_database(application_id: int) -> None:
    var = db.session.scalar(
        select(EnvVar).where(EnvVar.application_id == application_id, EnvVar.is_secret)
    )
    assert var.value is None
    assert var.secret_value and CANARY not in var.secret_value
    # Real ciphertext of the canary, not a placeholder: it decrypts with the key.
    assert crypto.decrypt(var.secret_value, context=envvars.CONTEXT) == CANARY
    with db.engine.connect() as conn:
        raw = conn.execute(
            text("SELECT secret_value FROM env_vars WHERE id = :id"), {"id": var.id}
        ).scalar_one()
    assert raw == var.secret_value and CANARY not in raw


def test_a_secret_set_through_every_form_never_leaves_the_server(
    app, developer_client, team_a, all_logs, capfd, routes
):
    client = developer_client
    token = csrf_token(client, "/")
    seen = []

    # 1. The app form's secret textarea, on create.
    response = client.post(
        f"/projects/{team_a.project.id}/apps/new",
        data={**_app_form(team_a), "csrf_token": token, "secret_env_text": f"DB_PASS={CANARY}"},
    )
    assert response.status_code == 303
    seen.append(response)
    application = db.session.scalar(select(Application).where(Application.name == "canary-app"))
    _assert_sealed_in_database(application.id)
    seen.append(client.get(response.location))

    # 2. The env form (plain POST and htmx), replacing the secret.
    env_url = f"/apps/{application.id}/env"
    form = {"csrf_token": token, "key": "DB_PASS", "value": CANARY, "is_secret": "y"}
    seen.append(client.post(env_url, data=form))
    seen.append(client.post(env_url, data=form, headers={"HX-Request": "true"}))
    # 3. The app form on edit.
    response = client.post(
        f"/apps/{application.id}/edit",
        data={**_app_form(team_a), "csrf_token": token, "secret_env_text": f"DB_PASS={CANARY}"},
    )
    assert response.status_code == 303
    seen.append(response)
    db.session.expire_all()
    _assert_sealed_in_database(application.id)

    # Every page and fragment that exists, as HTML, htmx and JSON, aimed at the canary app.
    deployment = Deployment(application_id=application.id, status="failed", trigger="manual")
    db.session.add(deployment)
    db.session.commit()
    canary_world = SimpleNamespace(
        ids=lambda: {
            **team_a.ids(),
            "app_id": application.id,
            "application_id": application.id,
            "var_id": application.env_vars[0].id,
            "deployment_id": deployment.id,
            "filename": "app.js",
        }
    )
    seen.extend(_every_get_page(app, client, routes, canary_world))

    for response in seen:
        assert CANARY not in _everything_in(response), response.request.path
    assert CANARY not in _session_contents(app, client)
    assert CANARY not in _database_text()
    assert CANARY not in _redis_text(app)
    assert CANARY not in all_logs.text
    assert "INSERT INTO env_vars" in all_logs.text  # the capture does see SQL parameters
    out, err = capfd.readouterr()
    assert CANARY not in out and CANARY not in err
    assert "DB_PASS" in client.get(f"/apps/{application.id}").get_data(as_text=True)


def test_refused_forms_do_not_echo_a_secret_value(app, developer_client, team_a, all_logs):
    """422 answers (a bad key, a bad name, a too-long value) come back without the secret."""
    client = developer_client
    token = csrf_token(client, "/")
    env_url = f"/apps/{team_a.application.id}/env"
    responses = []
    for data in (
        {"key": "BAD KEY", "value": CANARY, "is_secret": "y"},
        {"key": "OK_KEY", "value": CANARY + "\x00", "is_secret": "y"},
        {"key": "OK_KEY", "value": CANARY + "x" * 33 * 1024, "is_secret": "y"},
    ):
        for headers in ({}, {"HX-Request": "true"}):
            response = client.post(env_url, data={**data, "csrf_token": token}, headers=headers)
            assert response.status_code == 422
            responses.append(response)
    for url in (f"/projects/{team_a.project.id}/apps/new", f"/apps/{team_a.application.id}/edit"):
        for bad in ({"name": "Bad Name"}, {"image": "bad image"}):
            data = {
                **_app_form(team_a, **bad),
                "csrf_token": token,
                "secret_env_text": f"DB_PASS={CANARY}\n",
            }
            response = client.post(url, data=data)
            assert response.status_code == 422
            responses.append(response)
        data = {
            **_app_form(team_a, name=team_a.application.name),
            "csrf_token": token,
            "secret_env_text": f"DB_PASS={CANARY}\nbad line",
        }
        response = client.post(url, data=data)
        assert response.status_code == 422
        responses.append(response)
    for response in responses:
        assert CANARY not in _everything_in(response), response.request.path
    assert CANARY not in _database_text()
    assert CANARY not in all_logs.text


def test_the_edit_form_does_not_echo_stored_secrets(app, developer_client, team_a):
    page = developer_client.get(f"/apps/{team_a.application.id}/edit").get_data(as_text=True)
    assert "alpha-secret-value" not in page
    assert team_a.secret_var.secret_value not in page
    assert "API_TOKEN" in page  # the key is listed; the value is not
    assert "alpha-plain-value" in page  # the control: plain values are in the form


def test_audit_events_name_keys_never_values(app, developer_client, team_a):
    client = developer_client
    token = csrf_token(client, "/")
    url = f"/apps/{team_a.application.id}/env"
    client.post(
        url, data={"csrf_token": token, "key": "AUDITED", "value": CANARY, "is_secret": "y"}
    )
    var = db.session.scalar(select(EnvVar).where(EnvVar.key == "AUDITED"))
    client.post(f"{url}/{var.id}/delete", data={"csrf_token": token})
    with db.engine.connect() as conn:
        rows = conn.execute(text("SELECT action, details FROM audit_events")).all()
    actions = [row[0] for row in rows]
    assert "env.set" in actions and "env.deleted" in actions
    assert CANARY not in repr(rows)
    assert "AUDITED" in repr(rows)


def test_the_keys_are_not_in_the_database(app, team_a, build_team):
    dump = _database_text()
    key_id, _, key_b64 = TEST_KEY.partition(":")
    raw_key = base64.b64decode(key_b64)
    assert key_b64 not in dump
    assert raw_key.hex() not in dump
    assert repr(raw_key) not in dump
    assert app.config["SECRET_KEY"] not in dump
    # Every ciphertext names its key by id only.
    with db.engine.connect() as conn:
        tokens = conn.execute(
            text("SELECT secret_value FROM env_vars WHERE secret_value IS NOT NULL")
        ).scalars()
        for token in tokens:
            assert token.partition(":")[0] == key_id
            assert key_b64 not in token


def test_ciphertexts_of_the_same_secret_differ_and_are_bound_to_their_purpose(app):
    one = crypto.encrypt(CANARY, context=envvars.CONTEXT)
    two = crypto.encrypt(CANARY, context=envvars.CONTEXT)
    assert one != two
    with pytest.raises(crypto.SecretError):
        crypto.decrypt(one, context="webhook_secret")
