"""The app's Domains tab (app/web/domains.py): list, add with errors, retry, remove, roles."""

from __future__ import annotations

import re

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from app.extensions import db, queue, redis
from app.models import Certificate, Domain, Role
from app.proxy import domains
from tests.conftest import Auth, csrf_token
from tests.factories import make_app, make_project, make_team, make_user, team_of

FORM = {"host": "shop.example.com", "path_prefix": "/", "https_mode": "redirect", "www": "none"}


@pytest.fixture
def web(logged_in):
    client, user = logged_in
    return client, make_app(make_project(team_of(user), "shop"), "web")


def _add(client, app_row, **changes):
    data = FORM | {"csrf_token": csrf_token(client, "/")} | changes
    return client.post(f"/apps/{app_row.id}/domains", data=data)


def _rows() -> int:
    return db.session.scalar(select(func.count(Domain.id)))


def _field_error(body: str, field: str) -> str:
    found = re.search(rf'id="{field}-error"[^>]*>(.*?)</div>', body, re.S)
    assert found, f"no error block for {field}"
    return found.group(1)


def test_the_tab_is_linked_from_the_app_page_and_lists_nothing_yet(web):
    client, app_row = web
    page = client.get(f"/apps/{app_row.id}").get_data(as_text=True)
    assert f'href="/apps/{app_row.id}/domains"' in page
    tab = client.get(f"/apps/{app_row.id}/domains")
    assert tab.status_code == 200
    body = tab.get_data(as_text=True)
    assert "No domains yet" in body and 'name="host"' in body
    assert 'aria-current="page">Domains' in body


def test_adding_an_international_name_stores_punycode_and_shows_unicode(web):
    client, app_row = web
    response = _add(client, app_row, host="Bücher.Example", path_prefix="/shop/")
    assert response.status_code == 303
    assert response.headers["Location"].endswith(f"/apps/{app_row.id}/domains")
    row = db.session.scalar(select(Domain))
    assert (row.host, row.path_prefix) == ("xn--bcher-kva.example", "/shop")
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert "bücher.example" in body and "xn--bcher-kva.example" in body
    assert "bücher.example/shop added." in body
    app_page = client.get(f"/apps/{app_row.id}").get_data(as_text=True)
    port = client.application.config["HTTPS_PORT"]
    link = f"https://xn--bcher-kva.example{'' if port == 443 else f':{port}'}/shop/"
    assert f'href="{link}"' in app_page and "bücher.example/shop</a>" in app_page
    jobs = [Job.fetch(i, connection=redis.client, serializer=JSONSerializer)
            for i in queue("default").job_ids]  # fmt: skip
    assert [(j.func_name, j.args) for j in jobs] == [("app.jobs.sync_certificates", [app_row.id])]


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"host": "a..b"}, "host", "empty label"),
        ({"host": "<img src=x onerror=alert(1)>.com"}, "host", "letters, digits"),
        ({"host": "shop.example.com`) && PathPrefix(`/`)"}, "host", "host name alone"),
        ({"host": "127.0.0.1"}, "host", "not an IP address"),
        ({"host": ""}, "host", "Enter a host name"),
        ({"path_prefix": "/a/../b"}, "path_prefix", "cannot contain"),
        ({"path_prefix": "/a%2fb"}, "path_prefix", "no %-encoding"),
        ({"https_mode": "sometimes"}, "https_mode", "Not a valid choice"),
        ({"host": "www.com", "www": "to_apex"}, "www", "no www twin"),
    ],
)
def test_a_refused_domain_re_renders_the_form_with_the_error_next_to_the_field(
    web, changes, field, words
):
    client, app_row = web
    response = _add(client, app_row, **changes)
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert words in _field_error(body, field)
    assert "<img src=x" not in body  # the typed value comes back escaped
    assert _rows() == 0 and queue("default").count == 0


def test_another_teams_host_is_taken_without_naming_it(web):
    client, app_row = web
    theirs = make_app(make_project(make_team("secret-team"), "covert"), "private")
    domains.add_domain(theirs, "shop.example.com", "/internal")
    queue("default").empty()
    response = _add(client, app_row, host="www.shop.example.com")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert "This host name is taken." in _field_error(body, "host")
    for word in ("secret-team", "covert", "private", "/internal"):
        assert word not in body
    assert _rows() == 1 and queue("default").count == 0


def test_the_table_polls_while_a_certificate_is_on_its_way_and_stops_when_all_are_settled(web):
    client, app_row = web
    url = f"/apps/{app_row.id}/domains"
    _add(client, app_row, host="plain.example.com", https_mode="off")
    fragment = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert fragment.startswith('<div id="domains-table"') and "every 3s" not in fragment
    assert "HTTP only" in fragment and "<html" not in fragment
    _add(client, app_row, host="secure.example.com")
    fragment = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert 'hx-trigger="every 3s"' in fragment and "Retry now" in fragment
    secure = db.session.scalar(select(Domain).where(Domain.host == "secure.example.com"))
    cert = Certificate(application_id=app_row.id, hosts_json="[]", state="active")
    db.session.add(cert)
    db.session.flush()
    secure.certificate_id = cert.id
    db.session.commit()
    fragment = client.get(url, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert "every 3s" not in fragment and "Retry now" not in fragment


def test_retry_now_queues_the_certificates_retry(web):
    client, app_row = web
    _add(client, app_row)
    domain = db.session.scalar(select(Domain))
    cert = Certificate(application_id=app_row.id, hosts_json="[]", state="failed",
                       last_error="no A record")  # fmt: skip
    db.session.add(cert)
    db.session.flush()
    domain.certificate_id = cert.id
    db.session.commit()
    queue("default").empty()
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert "no A record" in body
    response = client.post(f"/apps/{app_row.id}/domains/{domain.id}/retry",
                           data={"csrf_token": csrf_token(client, "/")})  # fmt: skip
    assert response.status_code == 303
    job = Job.fetch(queue("default").job_ids[0], connection=redis.client,
                    serializer=JSONSerializer)  # fmt: skip
    assert (job.func_name, job.args) == ("app.jobs.retry_certificate", [cert.id])


def test_remove_asks_first_then_removes(web):
    client, app_row = web
    _add(client, app_row, host="gone.example.com")
    domain = db.session.scalar(select(Domain))
    url = f"/apps/{app_row.id}/domains/{domain.id}/remove"
    confirm = client.get(url)
    assert confirm.status_code == 200 and "Remove gone.example.com?" in confirm.get_data(True)
    assert client.post(url, data={"csrf_token": csrf_token(client, "/")}).status_code == 303
    assert _rows() == 0
    assert "gone.example.com removed." in client.get(f"/apps/{app_row.id}/domains").get_data(True)


def test_a_viewer_sees_the_list_read_only(app, client):
    team = make_team()
    app_row = make_app(make_project(team, "shop"), "web")
    domain = domains.add_domain(app_row, "shop.example.com").domain
    assert Auth(client).login(make_user(team, Role.viewer)).status_code == 303
    body = client.get(f"/apps/{app_row.id}/domains").get_data(as_text=True)
    assert "shop.example.com" in body
    assert 'name="host"' not in body and "Retry now" not in body and "Remove" not in body
    token = csrf_token(client, "/")
    assert _add(client, app_row, host="mine.example.com").status_code == 403
    for action in ("retry", "remove"):
        url = f"/apps/{app_row.id}/domains/{domain.id}/{action}"
        assert client.post(url, data={"csrf_token": token}).status_code == 403
    assert client.get(f"/apps/{app_row.id}/domains/{domain.id}/remove").status_code == 403
    assert _rows() == 1


def test_a_developer_may_add_and_remove(app, client):
    team = make_team()
    app_row = make_app(make_project(team, "shop"), "web")
    assert Auth(client).login(make_user(team, Role.developer)).status_code == 303
    assert _add(client, app_row).status_code == 303
    domain = db.session.scalar(select(Domain))
    url = f"/apps/{app_row.id}/domains/{domain.id}/remove"
    assert client.post(url, data={"csrf_token": csrf_token(client, "/")}).status_code == 303


def test_another_teams_app_and_domain_are_404(web):
    client, mine = web
    theirs = make_app(make_project(make_team("other"), "elsewhere"), "web")
    their_domain = domains.add_domain(theirs, "theirs.example.com").domain
    own_domain = domains.add_domain(mine, "mine.example.com").domain
    token = csrf_token(client, "/")
    assert client.get(f"/apps/{theirs.id}/domains").status_code == 404
    assert _add(client, theirs, host="x.example.com").status_code == 404
    # Their domain through my app, and my domain through their app.
    for app_id, domain_id in ((mine.id, their_domain.id), (theirs.id, own_domain.id)):
        for action in ("retry", "remove"):
            url = f"/apps/{app_id}/domains/{domain_id}/{action}"
            assert client.post(url, data={"csrf_token": token}).status_code == 404
        assert client.get(f"/apps/{app_id}/domains/{domain_id}/remove").status_code == 404
    assert _rows() == 2
