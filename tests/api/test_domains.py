"""/api/v1 domains: an app's host names, as its Domains tab adds, lists, changes and
removes them (issue 15). No Traefik here: the app is not routed, so a change's route
rewrite has nothing to do; its certificate sync lands in the real Redis queue."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.extensions import db
from app.models import AuditEvent, Domain, Role
from tests.api.conftest import error_of
from tests.api.shapes import shaped
from tests.factories import make_app, make_project, make_team, team_of


@pytest.fixture
def web(owner):
    return make_app(make_project(team_of(owner), "shop"), "web")


def _rows() -> int:
    return db.session.scalar(select(func.count(Domain.id)))


def _fresh(domain_id: int) -> Domain:
    db.session.expire_all()
    return db.session.get(Domain, domain_id)


def _add(api, app_row, **fields):
    return api.post(
        f"/api/v1/apps/{app_row.id}/domains", json={"host": "shop.example.com"} | fields
    )


def test_add_an_international_name_stores_punycode_and_answers_both_forms(api, web):
    response = _add(api, web, host="Bücher.Example", path_prefix="/shop/", strip_prefix=True)
    assert response.status_code == 201, response.get_json()
    body = shaped("Domain", response.get_json())
    assert response.headers["Location"] == f"/api/v1/domains/{body['id']}"
    assert (body["host"], body["host_display"]) == ("xn--bcher-kva.example", "bücher.example")
    assert (body["path_prefix"], body["strip_prefix"]) == ("/shop", True)
    assert (body["https_mode"], body["www"], body["www_host"]) == ("redirect", "none", None)
    assert body["app_id"] == web.id and body["url"].startswith("https://xn--bcher-kva.example")
    assert body["certificate_state"] is None and body["state"]
    row = db.session.get(Domain, body["id"])
    assert (row.host, row.path_prefix) == ("xn--bcher-kva.example", "/shop")
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "domain.added"))


def test_add_with_www_and_http_only(api, web):
    response = _add(api, web, www="both", https_mode="off")
    assert response.status_code == 201
    body = response.get_json()
    assert body["www_host"] == "www.shop.example.com"
    assert body["url"].startswith("http://shop.example.com") and body["state"] == "HTTP only"


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"host": "localhost"}, "host"),
        ({"host": "127.0.0.1"}, "host"),
        ({"host": "*.example.com"}, "host"),
        ({"host": "shop.example.com`) && PathPrefix(`/`)"}, "host"),
        ({"host": "http://shop.example.com"}, "host"),
        ({"host": ""}, "host"),
        ({"host": "a" * 301}, "host"),
        ({"path_prefix": "/a/../b"}, "path_prefix"),
        ({"path_prefix": "/a%2fb"}, "path_prefix"),
        ({"path_prefix": "api"}, "path_prefix"),
        ({"https_mode": "sometimes"}, "https_mode"),
        ({"www": "maybe"}, "www"),
        ({"strip_prefix": "yes please"}, "strip_prefix"),
        ({"certificate": "x"}, "certificate"),
    ],
)
def test_add_refuses_what_the_tab_refuses(api, web, fields, field):
    response = _add(api, web, **fields)
    assert response.status_code == 422, response.get_json()
    assert field in error_of(response)["details"]["fields"], error_of(response)
    assert _rows() == 0


def test_add_needs_a_host(api, web):
    response = api.post(f"/api/v1/apps/{web.id}/domains", json={})
    assert response.status_code == 422 and "host" in error_of(response)["details"]["fields"]


def test_a_host_another_team_holds_is_taken_and_a_route_twice_is_refused(api, web):
    theirs = make_app(make_project(make_team(), "theirs"), "api")
    db.session.add(Domain(application_id=theirs.id, team_id=theirs.project.team_id,
                          host="taken.example.com"))  # fmt: skip
    db.session.commit()
    response = _add(api, web, host="taken.example.com", path_prefix="/other")
    assert error_of(response)["details"]["fields"] == {"host": "This host name is taken."}
    assert _add(api, web).status_code == 201
    again = _add(api, web)
    assert again.status_code == 422 and "already routes" in error_of(again)["message"]
    assert _rows() == 2


def test_list_pages_through_the_app_s_domains_and_get_reads_one(api, web):
    ids = [_add(api, web, host=f"h{i}.example.com").get_json()["id"] for i in range(3)]
    other = make_app(web.project, "api")
    _add(api, other, host="other.example.com")
    page = shaped("DomainPage", api.get(f"/api/v1/apps/{web.id}/domains?limit=2").get_json())
    assert [d["id"] for d in page["data"]] == [ids[2], ids[1]]
    rest = api.get(f"/api/v1/apps/{web.id}/domains?cursor={page['next_cursor']}").get_json()
    assert [d["id"] for d in rest["data"]] == [ids[0]] and rest["next_cursor"] is None
    one = api.get(f"/api/v1/domains/{ids[0]}")
    assert one.status_code == 200 and one.get_json()["host"] == "h0.example.com"
    assert one.headers["ETag"]


def test_patch_changes_how_it_is_served_not_its_host(api, web):
    domain_id = _add(api, web).get_json()["id"]
    response = api.patch(f"/api/v1/domains/{domain_id}", json={"https_mode": "only"})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert (body["https_mode"], body["www"], body["path_prefix"]) == ("only", "none", "/")
    assert response.headers["ETag"] == api.get(f"/api/v1/domains/{domain_id}").headers["ETag"]
    response = api.patch(
        f"/api/v1/domains/{domain_id}", json={"path_prefix": "/api", "strip_prefix": True}
    )
    assert response.get_json()["path_prefix"] == "/api"
    row = _fresh(domain_id)
    assert (row.https_mode, row.path_prefix, row.strip_prefix) == ("only", "/api", True)
    refused = api.patch(f"/api/v1/domains/{domain_id}", json={"host": "other.example.com"})
    assert refused.status_code == 422 and "host" in error_of(refused)["details"]["fields"]
    assert _fresh(domain_id).host == "shop.example.com"


@pytest.mark.parametrize(
    "payload",
    [{"path_prefix": "/a/../b"}, {"https_mode": None}, {"www": "sideways"},
     {"strip_prefix": None}],
)  # fmt: skip
def test_patch_refuses_bad_values_and_changes_nothing(api, web, payload):
    domain_id = _add(api, web).get_json()["id"]
    before = api.get(f"/api/v1/domains/{domain_id}").get_json()
    response = api.patch(f"/api/v1/domains/{domain_id}", json=payload)
    assert response.status_code == 422, response.get_json()
    assert error_of(response)["details"]["fields"]
    assert api.get(f"/api/v1/domains/{domain_id}").get_json() == before


def test_patch_onto_another_route_of_the_team_is_refused_and_rolled_back(api, web):
    _add(api, web, path_prefix="/api")
    domain_id = _add(api, web).get_json()["id"]
    response = api.patch(f"/api/v1/domains/{domain_id}", json={"path_prefix": "/api"})
    assert response.status_code == 422
    assert "path_prefix" in error_of(response)["details"]["fields"]
    assert _fresh(domain_id).path_prefix == "/"


def test_patch_with_a_stale_if_match_is_412_and_changes_nothing(api, web):
    created = _add(api, web)
    domain_id, etag = created.get_json()["id"], created.headers["ETag"]
    api.patch(f"/api/v1/domains/{domain_id}", json={"https_mode": "only"})
    response = api.patch(
        f"/api/v1/domains/{domain_id}", json={"https_mode": "off"}, headers={"If-Match": etag}
    )
    assert response.status_code == 412
    assert _fresh(domain_id).https_mode == "only"


def test_another_team_s_domains_are_404_and_a_read_key_403(api, api_for, web):
    theirs = make_app(make_project(make_team(), "theirs"), "api")
    row = Domain(application_id=theirs.id, team_id=theirs.project.team_id, host="their.example.com")
    db.session.add(row)
    db.session.commit()
    assert api.get(f"/api/v1/domains/{row.id}").status_code == 404
    assert api.patch(f"/api/v1/domains/{row.id}", json={"www": "both"}).status_code == 404
    assert api.delete(f"/api/v1/domains/{row.id}").status_code == 404
    assert api.get(f"/api/v1/apps/{theirs.id}/domains").status_code == 404
    assert _add(api, theirs, host="mine.example.com").status_code == 404
    assert api.get("/api/v1/domains/99999999").status_code == 404
    assert api.get("/api/v1/domains/99999999999999999999").status_code == 404
    domain_id = _add(api, web).get_json()["id"]
    reader = api_for(team=web.project.team, scopes=["read"])
    assert reader.get(f"/api/v1/domains/{domain_id}").status_code == 200
    assert reader.post(f"/api/v1/apps/{web.id}/domains", json={}).status_code == 403
    assert reader.patch(f"/api/v1/domains/{domain_id}", json={}).status_code == 403
    assert reader.delete(f"/api/v1/domains/{domain_id}").status_code == 403
    viewer = api_for(team=web.project.team, role=Role.viewer)
    assert viewer.delete(f"/api/v1/domains/{domain_id}").status_code == 403
    assert _rows() == 2 and _fresh(row.id).www == "none"


def test_delete_removes_the_domain(api, web):
    domain_id = _add(api, web).get_json()["id"]
    response = api.delete(f"/api/v1/domains/{domain_id}")
    assert response.status_code == 204
    assert _rows() == 0
    assert api.get(f"/api/v1/domains/{domain_id}").status_code == 404
    assert db.session.scalar(select(AuditEvent.id).where(AuditEvent.action == "domain.removed"))


def test_a_route_that_could_not_follow_is_said_in_a_warning_header(api, web, monkeypatch):
    from app.deploys import routing

    def down(_app):
        raise RuntimeError("traefik is away")

    monkeypatch.setattr(routing, "domains_changed", down)
    response = _add(api, web)
    assert response.status_code == 201
    warning = response.headers["Warning"]
    assert warning.startswith('199 slipway "') and "route could not be rewritten" in warning
    assert _rows() == 1  # the change is kept
