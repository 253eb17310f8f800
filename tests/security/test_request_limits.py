"""Request bodies are capped for every route, not only webhooks: a form post of a few
megabytes is a 413 before anything reads it, and changes nothing."""

from __future__ import annotations

from sqlalchemy import func, select

from app.extensions import db
from app.models import Project
from tests.conftest import csrf_token


def test_an_oversized_form_post_is_413_and_changes_nothing(logged_in):
    client, _ = logged_in
    token = csrf_token(client, "/")
    response = client.post(
        "/projects/new",
        data={"csrf_token": token, "name": "big", "description": "x" * (3 * 1024 * 1024)},
    )
    assert response.status_code == 413
    assert db.session.scalar(select(func.count(Project.id))) == 0


def test_a_form_under_the_cap_is_read_as_usual(logged_in):
    client, _ = logged_in
    token = csrf_token(client, "/")
    response = client.post("/projects/new", data={"csrf_token": token, "name": "small"})
    assert response.status_code == 303
