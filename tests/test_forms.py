"""Limits on free text: one character over is refused with 422, the limit beside the
field, and nothing stored; no form hands the browser a ``maxlength`` that would cut a
long paste without a word."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select
from wtforms import PasswordField, StringField, TextAreaField
from wtforms.validators import EqualTo

from app import forms as app_forms
from app.backups import forms as backup_forms
from app.extensions import db
from app.models.base import Base
from tests.conftest import csrf_token
from tests.factories import make_app, make_destination, make_project, team_of

APP = {
    "name": "web", "source_type": "git", "git_url": "https://github.com/acme/web.git",
    "git_branch": "main", "build_context": ".", "dockerfile_path": "Dockerfile",
    "container_port": "8000", "replicas": "1", "health_check_path": "/",
}  # fmt: skip
DESTINATION = {
    "name": "primary", "endpoint_url": "http://127.0.0.1:9", "region": "us-east-1",
    "bucket": "backups", "prefix": "prod", "access_key_id": "testing",
    "secret_access_key": "s3-secret",
}  # fmt: skip
POLICY = {
    "name": "main-db", "target_type": "postgres", "cron": "0 2 * * *",
    "database_url": "postgresql://slipway:pw@127.0.0.1:5432/somedb", "keep_local_days": "7",
    "keep_daily": "30", "keep_weekly": "12",
}  # fmt: skip
WEBHOOK = {"name": "ops", "kind": "webhook", "events": ["backup.failed"],
           "url": "https://hooks.example.com/x"}  # fmt: skip
EMAIL = {"name": "mail", "kind": "email", "events": ["backup.failed"],
         "smtp_host": "mail.example.com", "smtp_port": "587", "sender": "a@example.com",
         "to": "b@example.com"}  # fmt: skip


def _long_url(prefix: str, length: int) -> str:
    return prefix + "a" * (length - len(prefix) - 4) + ".git"


# (page, base form, field, value one over the limit, the limit as the message states it)
CASES = [
    ("project", {"name": "shop"}, "description", "d" * 2001, "2,000"),
    ("app", APP, "description", "d" * 2001, "2,000"),
    ("app", APP, "git_url", _long_url("https://github.com/acme/", 501), "500"),
    ("app", APP, "git_branch", "b" * 256, "255"),
    ("app", APP, "build_context", "c" * 256, "255"),
    ("app", APP, "dockerfile_path", "f" * 256, "255"),
    ("app", APP, "health_check_path", "/" + "h" * 255, "255"),
    ("app", APP | {"source_type": "image", "image": "nginx:1"}, "image", "n" * 256, "255"),
    ("env", {"value": "v"}, "key", "K" * 256, "255"),
    ("git", {}, "watch_paths", "w" * 201, "200"),
    ("git", {}, "watch_paths", "\n".join(f"p{i}" for i in range(51)), "50"),
    ("git", {}, "deploy_tags", "v" * 256, "255"),
    ("token", {"token": "t"}, "user", "u" * 101, "100"),
    ("token", {}, "token", "t" * 501, "500"),
    ("destination", DESTINATION, "endpoint_url", "http://127.0.0.1:9/" + "e" * 482, "500"),
    ("destination", DESTINATION, "region", "r" * 33, "32"),
    ("destination", DESTINATION, "prefix", "p" * 201, "200"),
    ("destination", DESTINATION, "access_key_id", "a" * 201, "200"),
    ("destination", DESTINATION, "secret_access_key", "s" * 501, "500"),
    ("policy", POLICY, "database_url", "postgresql://u:" + "p" * 480 + "@127.0.0.1/db", "500"),
    ("policy", POLICY, "cron", "0 2 * * " + "*" * 93, "100"),
    ("channel", WEBHOOK, "url", "https://hooks.example.com/" + "x" * 475, "500"),
    ("channel", EMAIL, "smtp_host", "m" * 254, "253"),
    ("channel", EMAIL, "smtp_username", "u" * 201, "200"),
    ("channel", EMAIL, "smtp_password", "p" * 501, "500"),
    ("channel", EMAIL, "sender", "a@" + "s" * 253, "254"),
    ("channel", EMAIL, "to", "b@" + "t" * 253, "254"),
    ("password", {"password": "x" * 20, "confirm": "x" * 20}, "current", "c" * 201, "200"),
    ("password", {"current": "whatever-it-is"}, "password", "n" * 201, "200"),
]


def _everything() -> dict:
    """Every row of every table: what "nothing stored" is checked against."""
    db.session.expire_all()
    return {t.name: sorted(map(repr, db.session.execute(select(t)).all()))
            for t in Base.metadata.sorted_tables}  # fmt: skip


def _path(page: str, user) -> str:
    team = team_of(user)
    if page == "project":
        return "/projects/new"
    if page in ("destination", "policy", "channel"):
        return {"destination": "/backups/destinations/new", "policy": "/backups/policies/new",
                "channel": "/notifications/"}[page]  # fmt: skip
    if page == "password":
        return "/account/password"
    project = make_project(team, "shop")
    if page == "app":
        return f"/projects/{project.id}/apps/new"
    row = make_app(project, "web")
    return {"env": f"/apps/{row.id}/env", "git": f"/apps/{row.id}/git/settings",
            "token": f"/apps/{row.id}/git/token"}[page]  # fmt: skip


@pytest.mark.parametrize(
    "page,base,field,value,limit", CASES, ids=[f"{c[0]}-{c[2]}-{c[4]}" for c in CASES]
)
def test_one_over_the_limit_is_refused_with_the_limit(
    app, logged_in, page, base, field, value, limit
):
    client, user = logged_in
    app.config["BACKUP_ALLOWED_HOSTS"] = app.config["OUTBOUND_ALLOWED_HOSTS"] = ("127.0.0.1",)
    path = _path(page, user)
    data = dict(base)
    if page == "app":
        data["environment_id"] = str(db.session.scalar(select(Base.metadata.tables[
            "environments"].c.id)))  # fmt: skip
    if page == "policy":
        data["destination_id"] = str(make_destination(team_of(user), "http://127.0.0.1:9",
                                                      "backups").id)  # fmt: skip
    db.session.close()
    token = csrf_token(client, "/")
    before = _everything()
    response = client.post(path, data={"csrf_token": token, **data, field: value})
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    dom_id = "access_token" if (page, field) == ("token", "token") else field
    beside = body[body.index(f'id="field-{dom_id}"') :]
    beside = beside[: (beside.find('id="field-', 10) + 1 or len(beside) + 1) - 1]
    errors = " ".join(re.findall(r'<span class="error">([^<]*)</span>', beside))
    assert re.search(rf"\b{re.escape(limit)}\b", errors), errors
    outside_fields = re.sub(r"<textarea[^>]*>[^<]*</textarea>|value=\"[^\"]*\"", "", body)
    assert value not in outside_fields, "the refused value is echoed outside its field"
    assert _everything() == before


@pytest.mark.parametrize("module", [app_forms, backup_forms], ids=["app.forms", "backups.forms"])
def test_every_text_field_has_a_limit_and_no_maxlength(app, module):
    """A new text field without a limit fails here; ``maxlength`` would cut pastes silently."""
    text_fields = (StringField, TextAreaField, PasswordField)
    with app.test_request_context():
        for name in dir(module):
            form_class = getattr(module, name)
            if not (isinstance(form_class, type) and issubclass(form_class, app_forms.FlaskForm)):
                continue
            if form_class is app_forms.FlaskForm:
                continue
            form = form_class(meta={"csrf": False})
            for field in form:
                if not isinstance(field, text_fields) or field.type == "HiddenField":
                    continue
                if any(isinstance(v, EqualTo) for v in field.validators):
                    continue  # a repeated password: equal to one that has a limit
                limits = [v for v in field.validators if isinstance(v, app_forms.Length)]
                assert limits, f"{name}.{field.name} has no length limit"
                assert "maxlength" not in field(), f"{name}.{field.name} renders maxlength"


@pytest.mark.parametrize("region", ["US East", "us-east-1\r\nX-Evil: 1", "eu/central", "-x"])
def test_a_region_that_is_not_one_is_refused(app, logged_in, region):
    client, _ = logged_in
    app.config["BACKUP_ALLOWED_HOSTS"] = app.config["OUTBOUND_ALLOWED_HOSTS"] = ("127.0.0.1",)
    token = csrf_token(client, "/")
    before = _everything()
    response = client.post(
        "/backups/destinations/new", data={"csrf_token": token, **DESTINATION, "region": region}
    )
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "A region is 1–32 lowercase letters" in body[body.index('id="field-region"') :][:1500]
    assert _everything() == before
