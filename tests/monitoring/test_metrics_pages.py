"""Metric pages and their JSON series: ranges, team isolation, roles, no-JS tables."""

from __future__ import annotations

from datetime import timedelta

import pytest

from app.extensions import db
from app.models import MetricSample, Role
from app.models.base import utcnow
from tests.factories import make_app, make_project, make_team, make_user

JSON = {"Accept": "application/json"}


def _samples(app_id, resolution=15, count=10, ago=timedelta(minutes=5)):
    start = utcnow() - ago
    for i in range(count):
        db.session.add(
            MetricSample(
                scope="app" if app_id else "host",
                application_id=app_id,
                resolution=resolution,
                ts=start + timedelta(seconds=resolution * i),
                containers=1,
                cpu_percent=12.5,
                mem_bytes=50 * 2**20,
                mem_limit_bytes=2**30,
                net_rx_bytes=1000 * i,
                net_tx_bytes=500 * i,
            )  # fmt: skip
        )
    db.session.commit()


@pytest.fixture
def team_app(app):
    team = make_team()
    return team, make_app(make_project(team))


def _login(auth, team, role):
    user = make_user(team, role=role)
    assert auth.login(user).status_code == 303
    return user


def test_a_viewer_sees_an_app_chart_page_with_tables(client, auth, team_app):
    team, app_row = team_app
    _samples(app_row.id)
    _login(auth, team, Role.viewer)
    page = client.get(f"/apps/{app_row.id}/metrics")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'data-series="/apps/{app_row.id}/metrics.json?range=hour"' in html
    assert "12.5 %" in html and "50.0 MiB" in html  # the summary table, no JS needed
    assert "uplot-1.6.32.iife.min.js" in html and "<script>" not in html


def test_an_app_without_samples_says_no_data_yet(client, auth, team_app):
    team, app_row = team_app
    _login(auth, team, Role.viewer)
    html = client.get(f"/apps/{app_row.id}/metrics").get_data(as_text=True)
    assert "No data yet" in html and "data-series" not in html


@pytest.mark.parametrize(
    ("range_name", "resolution", "ago"),
    [("hour", 15, timedelta(minutes=5)), ("day", 60, timedelta(hours=3)),
     ("week", 900, timedelta(days=3))],
)  # fmt: skip
def test_the_json_series_follows_the_range(client, auth, team_app, range_name, resolution, ago):
    team, app_row = team_app
    _samples(app_row.id, resolution=resolution, ago=ago)
    _samples(app_row.id, resolution=resolution, ago=timedelta(days=8))  # out of every range
    _login(auth, team, Role.viewer)
    body = client.get(f"/apps/{app_row.id}/metrics.json?range={range_name}", headers=JSON).json
    assert body["range"] == range_name and body["resolution"] == resolution
    assert len(body["t"]) == 10
    assert body["cpu_percent"] == [12.5] * 10
    assert body["net_rx_bps"][1] == pytest.approx(1000 / resolution, rel=1e-3)


def test_an_unknown_range_is_a_clear_error(client, auth, team_app):
    team, app_row = team_app
    _login(auth, team, Role.viewer)
    response = client.get(f"/apps/{app_row.id}/metrics.json?range=year", headers=JSON)
    assert response.status_code == 400
    assert response.json["error"]["code"] == "bad_range"
    page = client.get(f"/apps/{app_row.id}/metrics?range=<b>year</b>")
    assert page.status_code == 400
    assert "choose hour, day or week" in page.get_data(as_text=True)
    assert "<b>year" not in page.get_data(as_text=True)


def test_another_teams_app_is_404_for_page_and_json(client, auth, team_app):
    _, app_row = team_app
    _samples(app_row.id)
    _login(auth, make_team(), Role.owner)
    assert client.get(f"/apps/{app_row.id}/metrics").status_code == 404
    response = client.get(f"/apps/{app_row.id}/metrics.json", headers=JSON)
    assert response.status_code == 404
    assert "cpu_percent" not in response.get_data(as_text=True)


def test_anonymous_json_is_401_and_pages_redirect(client, team_app):
    _, app_row = team_app
    make_user(make_team())  # setup has happened
    assert client.get(f"/apps/{app_row.id}/metrics.json", headers=JSON).status_code == 401
    assert client.get("/server/metrics.json", headers=JSON).status_code == 401
    assert client.get("/server").status_code == 302


@pytest.mark.parametrize(("who", "status"), [
    ("installation owner", 200), ("named admin", 200), (Role.owner, 403), (Role.admin, 403),
    (Role.developer, 403), (Role.viewer, 403),
])  # fmt: skip
def test_the_server_page_is_for_the_installation_owner_and_named_admins(
    client, auth, app, who, status
):
    """A team's own owner or admin is not an installation admin (issue 17, item 11)."""
    _samples(None)
    installation_owner = make_user(make_team())  # the first account: setup's
    if who == "installation owner":
        assert auth.login(installation_owner).status_code == 303
    else:
        user = _login(auth, make_team(), Role.admin if who == "named admin" else who)
        if who == "named admin":
            user.installation_admin = True
            db.session.commit()
    page = client.get("/server")
    assert page.status_code == status
    assert client.get("/server/metrics.json", headers=JSON).status_code == status
    nav = client.get("/").get_data(as_text=True)
    assert ('href="/server"' in nav) == (status == 200)
    assert ('href="/server/admins"' in page.get_data(as_text=True)) == (who == "installation owner")
    if status == 200:
        assert "12.5 %" in page.get_data(as_text=True)
        body = client.get("/server/metrics.json?range=hour", headers=JSON).json
        assert len(body["t"]) == 10


def test_the_app_page_links_to_its_metrics(client, auth, team_app):
    team, app_row = team_app
    _login(auth, team, Role.viewer)
    html = client.get(f"/apps/{app_row.id}").get_data(as_text=True)
    assert f'href="/apps/{app_row.id}/metrics"' in html
