"""The policy form's managed targets: the team's own databases and app volumes only
(SECURITY case 8: an id of another team's database or volume is refused)."""

from __future__ import annotations

from app import crypto
from app.databases import links
from app.extensions import db
from app.models import BackupPolicy, Database, Volume
from tests.backups.test_pages import _policy_form, _team, admin  # noqa: F401 - the fixture
from tests.conftest import csrf_token
from tests.factories import make_app, make_destination, make_project, make_team


def _database(team, name="main"):
    project = make_project(team)
    d = Database(project_id=project.id, name=name, engine="redis", version="7",
                 image="slipway-test/redis:7", username="default", database_name="0",
                 password=crypto.encrypt("pw", context=links.PASSWORD_CONTEXT))  # fmt: skip
    db.session.add(d)
    db.session.commit()
    return d


def _volume(team, label="uploads"):
    application = make_app(make_project(team))
    vol = Volume(project_id=application.project_id, application_id=application.id, label=label,
                 mount_path="/srv/uploads", docker_name=f"slipway-test-v-{label}")  # fmt: skip
    db.session.add(vol)
    db.session.commit()
    return vol


def test_a_policy_of_the_teams_database_and_volume(app, client, admin, moto, bucket):  # noqa: F811
    team = _team(admin)
    dest, mine, vol = make_destination(team, moto.url, bucket), _database(team), _volume(team)
    page = client.get("/backups/policies/new").get_data(as_text=True)
    assert f"/ {mine.name} (redis)" in page and ": uploads" in page
    token = csrf_token(client, "/backups/")
    form = _policy_form(token, dest, target_type="database", database_url="",
                        database_id=str(mine.id), name="db")  # fmt: skip
    assert client.post("/backups/policies/new", data=form).status_code == 303
    form = _policy_form(token, dest, target_type="volume", database_url="", name="vol",
                        volume_id=str(vol.id), stop_app="y")  # fmt: skip
    assert client.post("/backups/policies/new", data=form).status_code == 303
    by_name = {p.name: p for p in db.session.query(BackupPolicy)}
    assert (by_name["db"].database_id, by_name["db"].volume_id) == (mine.id, None)
    assert by_name["db"].database_url is None and not by_name["db"].stop_app
    assert (by_name["vol"].volume_id, by_name["vol"].stop_app) == (vol.id, True)
    assert "Managed database #" in client.get("/backups/").get_data(as_text=True)


def test_another_teams_database_or_volume_is_refused(app, client, admin, moto, bucket):  # noqa: F811
    team = _team(admin)
    dest = make_destination(team, moto.url, bucket)
    _database(team), _volume(team)
    other = make_team()
    theirs, their_vol = _database(other, "theirs"), _volume(other, "secret")
    page = client.get("/backups/policies/new").get_data(as_text=True)
    assert "theirs" not in page and "secret" not in page
    token = csrf_token(client, "/backups/")
    for changes, field in (({"target_type": "database", "database_id": str(theirs.id)},
                            "database_id"),
                           ({"target_type": "volume", "volume_id": str(their_vol.id)},
                            "volume_id"),
                           ({"target_type": "database", "database_id": "x"}, "database_id"),
                           ({"target_type": "database"}, "database_id")):  # fmt: skip
        response = client.post(
            "/backups/policies/new", data=_policy_form(token, dest, database_url="", **changes)
        )
        assert response.status_code == 422, changes
        body = response.get_data(as_text=True)
        assert 'class="error"' in body[body.index(f'id="field-{field}"') :][:1500]
    assert db.session.query(BackupPolicy).count() == 0
