"""Deployment tables as partials: what live.js fetches again when a new deployment appears.

The app page and its deployments list include ``deployments/_table.html``, marked
for live.js (``data-live-list``, the app id, the address to fetch); the same
address returns the table alone to an HX-Request, team-scoped, with
``Vary: HX-Request``. The browser side is in tests/browser/test_live.py.
"""

from __future__ import annotations

import re

from app.extensions import db
from app.models import Deployment
from tests.factories import make_app, make_project, make_team, team_of

HX = {"HX-Request": "true"}


def _table_marker(body: str) -> dict[str, str]:
    found = re.search(r'<div id="deployments-table"([^>]*)>', body)
    assert found, "no deployments table"
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', found.group(1)))


def _app_with_deployments(user, count: int):
    application = make_app(make_project(team_of(user)), "web")
    deployments = [Deployment(application_id=application.id, status="running")]
    for _ in range(count - 1):
        deployments.append(Deployment(application_id=application.id, status="replaced"))
    db.session.add_all(deployments)
    db.session.commit()
    return application


def test_the_app_page_table_is_marked_and_comes_back_alone_to_htmx(logged_in):
    client, user = logged_in
    application = _app_with_deployments(user, 2)
    page = client.get(f"/apps/{application.id}").get_data(as_text=True)
    marker = _table_marker(page)
    assert marker == {
        "data-live-list": "deployments",
        "data-app-id": str(application.id),
        "data-refresh-url": f"/apps/{application.id}",
    }
    db.session.add(Deployment(application_id=application.id, status="queued", trigger="webhook"))
    db.session.commit()
    newest = max(d.id for d in db.session.query(Deployment))

    response = client.get(marker["data-refresh-url"], headers=HX)
    assert response.status_code == 200
    assert "HX-Request" in response.headers["Vary"]
    body = response.get_data(as_text=True)
    assert body.lstrip().startswith('<div id="deployments-table"')
    assert "<html" not in body and "Environment" not in body  # the table, not the page
    assert f'data-deployment-badge="{newest}"' in body and "webhook" in body
    assert _table_marker(body) == marker  # it can be fetched again the same way


def test_the_app_page_partial_keeps_the_pages_twenty_rows(logged_in):
    client, user = logged_in
    application = _app_with_deployments(user, 25)
    page = client.get(f"/apps/{application.id}").get_data(as_text=True)
    body = client.get(f"/apps/{application.id}", headers=HX).get_data(as_text=True)
    assert body.count("data-deployment-badge=") == page.count("data-deployment-badge=") == 20


def test_the_deployments_list_partial_is_its_page_with_the_pager(logged_in):
    client, user = logged_in
    application = _app_with_deployments(user, 52)
    url = f"/apps/{application.id}/deployments?page=2"
    page = client.get(url).get_data(as_text=True)
    marker = _table_marker(page)
    assert marker["data-refresh-url"] == url and marker["data-app-id"] == str(application.id)
    response = client.get(url, headers=HX)
    body = response.get_data(as_text=True)
    assert "HX-Request" in response.headers["Vary"]
    assert body.lstrip().startswith('<div id="deployments-table"') and "<html" not in body
    assert body.count("data-deployment-badge=") == 2
    assert "52 deployments" in body and ">Newer</a>" in body  # the pager is in the partial


def test_an_empty_table_is_still_marked_so_the_first_deployment_appears(logged_in):
    client, user = logged_in
    application = make_app(make_project(team_of(user)), "fresh")
    for url in (f"/apps/{application.id}", f"/apps/{application.id}/deployments"):
        body = client.get(url).get_data(as_text=True)
        assert "No deployments yet." in body
        assert _table_marker(body)["data-app-id"] == str(application.id)


def test_another_teams_table_is_a_404_without_rows(logged_in):
    client, _user = logged_in
    theirs = make_app(make_project(make_team()), "theirs")
    db.session.add(Deployment(application_id=theirs.id, status="running", commit_message="s3cr"))
    db.session.commit()
    for url in (f"/apps/{theirs.id}", f"/apps/{theirs.id}/deployments"):
        response = client.get(url, headers=HX)
        assert response.status_code == 404
        body = response.get_data(as_text=True)
        assert "deployments-table" not in body and "s3cr" not in body


def test_an_anonymous_htmx_request_gets_no_table(client, owner):
    application = make_app(make_project(team_of(owner)), "web")
    response = client.get(f"/apps/{application.id}", headers=HX)
    assert response.status_code == 401 and "HX-Redirect" in response.headers
    assert "deployments-table" not in response.get_data(as_text=True)
