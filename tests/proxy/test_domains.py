"""app/proxy/domains.py: what a domain may be, whose it is, and what a change sets off.

No Traefik here (see test_domain_routes.py); the app is not routed, so a change's route
rewrite has nothing to do, and its certificate sync lands in the real Redis queue."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer
from sqlalchemy import func, select

from app.deploys import routing
from app.extensions import db, queue, redis
from app.models import AuditEvent, Certificate, Domain
from app.proxy import domains
from tests import lab
from tests.factories import make_app, make_project, make_team

HOSTILE_HOSTS = [
    "a..b",
    "-a.com",
    "a-.com",
    "a_b.com",
    "*.x.com",
    "x.com/../y",
    "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 62 + ".com",  # 254+
    "a" * 64 + ".com",
    "localhost",
    "127.0.0.1",
    "[::1]",
    "::1",
    "2130706433",
    "shop example.com",
    "shop.example.com\nX-Injected: 1",
    "shop\t.example.com",
    "shop.`example`.com",
    "shop.'example'.com",
    'shop."example".com',
    "shop.example.com`) && PathPrefix(`/`)",
    "http://shop.example.com",
    "shop.example.com:8080",
    "xn--zz.example.com",
    "",
    "   ",
]
HOSTILE_PREFIXES = ["/a/../b", "/..", "/a%2fb", "/%2e%2e", "//a", "/a//b", "api", "/a b", "/a`b",
                    "/a\nb", "/" + "a" * 255, "/./a", "/a?b=1", "/a#b"]  # fmt: skip


@pytest.fixture
def web(app):
    return make_app(make_project(make_team("alpha"), "shop"), "web")


def _rows() -> int:
    return db.session.scalar(select(func.count(Domain.id)))


def _audits() -> list[AuditEvent]:
    return list(db.session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def _jobs() -> list[Job]:
    ids = queue("default").job_ids
    return [Job.fetch(i, connection=redis.client, serializer=JSONSerializer) for i in ids]


def test_an_international_name_is_stored_in_punycode_and_shown_in_unicode(web):
    domain = domains.add_domain(web, "  Bücher.Example. ").domain
    assert domain.host == "xn--bcher-kva.example"
    assert domains.view(domain).host == "bücher.example"
    again = domains.add_domain(web, "xn--bcher-kva.example", "/shop").domain
    assert domains.view(again).host == "bücher.example"


def test_a_host_is_trimmed_lowered_and_loses_its_trailing_dot(web):
    assert domains.add_domain(web, " Shop.EXAMPLE.com. ").domain.host == "shop.example.com"


@pytest.mark.parametrize("host", HOSTILE_HOSTS)
def test_a_hostile_host_is_refused_on_its_field_and_nothing_changes(web, host):
    with pytest.raises(domains.DomainRefused) as refused:
        domains.add_domain(web, host)
    assert refused.value.field == "host"
    assert str(refused.value)  # words for the person who typed it
    assert _rows() == 0 and _audits() == [] and queue("default").count == 0


@pytest.mark.parametrize("prefix", HOSTILE_PREFIXES)
def test_a_hostile_path_prefix_is_refused_on_its_field_and_nothing_changes(web, prefix):
    with pytest.raises(domains.DomainRefused) as refused:
        domains.add_domain(web, "shop.example.com", prefix)
    assert refused.value.field == "path_prefix"
    assert _rows() == 0 and _audits() == [] and queue("default").count == 0


@pytest.mark.parametrize(("given", "stored"), [("", "/"), ("/", "/"), ("/v2/", "/v2"),
                                              ("/a/b.c/~d-e_f", "/a/b.c/~d-e_f")])  # fmt: skip
def test_a_path_prefix_is_normalised(web, given, stored):
    assert domains.add_domain(web, "shop.example.com", given).domain.path_prefix == stored


def test_a_host_of_another_team_is_taken_without_naming_the_team_or_the_app(app):
    victim = make_app(make_project(make_team("victim-team"), "vproj"), "vapp")
    domains.add_domain(victim, "shop.example.com", "/private", www="both")
    thief = make_app(make_project(make_team("thief-team"), "tproj"), "tapp")
    attempts = [("shop.example.com", "/"), ("shop.example.com", "/other"),
                ("www.shop.example.com", "/"), ("SHOP.example.com.", "/private")]  # fmt: skip
    for host, prefix in attempts:
        with pytest.raises(domains.DomainRefused) as refused:
            domains.add_domain(thief, host, prefix)
        message = str(refused.value)
        assert message == domains.TAKEN
        assert not any(word in message for word in ("victim", "vproj", "vapp", "/private"))
    # The www twin of a host of another team is taken too, even without the www option.
    domains.add_domain(victim, "blog.example.org")
    with pytest.raises(domains.DomainRefused, match="taken"):
        domains.add_domain(thief, "www.blog.example.org")
    theirs = select(func.count(Domain.id)).where(Domain.team_id == thief.project.team_id)
    assert db.session.scalar(theirs) == 0


def test_two_apps_of_one_team_share_a_host_under_different_prefixes(app):
    team = make_team()
    site, api = (make_app(make_project(team, f"p{n}"), n) for n in ("site", "api"))
    domains.add_domain(site, "shop.example.com")
    domains.add_domain(api, "shop.example.com", "/api")
    with pytest.raises(domains.DomainRefused, match="already routes to the app site") as same:
        domains.add_domain(api, "shop.example.com", "/")
    assert same.value.field == "host"
    with pytest.raises(domains.DomainRefused, match="already routes to this app") as again:
        domains.add_domain(api, "shop.example.com", "/api/")
    assert again.value.field == "path_prefix"
    # The www twin counts as claimed once the option is on, either way round.
    domains.add_domain(site, "www.shop.example.com", "/blog")
    with pytest.raises(domains.DomainRefused, match="already routes"):
        domains.add_domain(api, "shop.example.com", "/blog", www="both")
    assert _rows() == 3


def test_the_database_refuses_a_second_row_of_one_host_and_prefix_under_a_race(
    app, web, monkeypatch
):
    """Both checks passed (a race): the unique constraint refuses, and the words are right."""
    other = make_app(make_project(make_team("beta"), "blog"), "web")
    domains.add_domain(other, "shop.example.com", "/x")
    monkeypatch.setattr(domains, "_check_claims", lambda *a, **k: None)
    with pytest.raises(domains.DomainRefused) as refused:
        domains.add_domain(web, "shop.example.com", "/x")
    assert str(refused.value) == domains.TAKEN
    mate = make_app(web.project, "api")
    domains.add_domain(mate, "own.example.com", "/y")
    with pytest.raises(domains.DomainRefused, match="just added"):
        domains.add_domain(web, "own.example.com", "/y")
    assert _rows() == 2


def test_another_apps_default_address_and_the_dashboards_host_are_refused(app, web):
    other = make_app(make_project(make_team("beta"), "blog"), "site")
    base = app.config["BASE_DOMAIN"]
    with pytest.raises(domains.DomainRefused, match="taken"):
        domains.add_domain(other, f"web.shop.{base}")
    with pytest.raises(domains.DomainRefused, match="taken"):
        domains.add_domain(other, f"www.web.shop.{base}")  # its twin is that address
    with pytest.raises(domains.DomainRefused, match="default address already"):
        domains.add_domain(web, f"web.shop.{base}")
    app.config["PUBLIC_URL"] = "https://Slipway.Example.net:8443/"
    with pytest.raises(domains.DomainRefused, match="Slipway's own address"):
        domains.add_domain(web, "slipway.example.net", "/app")
    assert _rows() == 0
    # A free name under the base domain is fine.
    assert domains.add_domain(web, f"promo.{base}.example.com").domain


def test_a_host_without_a_www_twin_cannot_take_the_www_option(web):
    with pytest.raises(domains.DomainRefused) as refused:
        domains.add_domain(web, "www.com", www="to_apex")
    assert refused.value.field == "www"
    assert domains.add_domain(web, "www.com").domain.www == "none"


@pytest.mark.parametrize(("field", "values"), [("https_mode", {"https_mode": "sometimes"}),
                                               ("www", {"www": "always"})])  # fmt: skip
def test_unknown_modes_are_refused(web, field, values):
    with pytest.raises(domains.DomainRefused) as refused:
        domains.add_domain(web, "shop.example.com", **values)
    assert refused.value.field == field
    assert _rows() == 0


def test_a_change_is_audited_and_has_the_certificates_synced(web):
    domain = domains.add_domain(web, "shop.example.com", "/api", strip_prefix=True,
                                https_mode="only", www="both").domain  # fmt: skip
    assert (domain.strip_prefix, domain.https_mode, domain.www) == (True, "only", "both")
    domains.update_domain(domain, strip_prefix=False, https_mode="off", www="none")
    assert (domain.strip_prefix, domain.https_mode, domain.www) == (False, "off", "none")
    domains.remove_domain(domain)
    assert _rows() == 0
    events = [(e.action, e.details["host"]) for e in _audits()]
    assert events == [("domain.added", "shop.example.com"), ("domain.updated", "shop.example.com"),
                      ("domain.removed", "shop.example.com")]  # fmt: skip
    jobs = _jobs()
    assert [(j.func_name, j.args) for j in jobs] == [("app.jobs.sync_certificates", [web.id])] * 3


def test_a_redis_that_does_not_answer_loses_nothing_and_says_so(app, web, monkeypatch):
    """No claim lock, no route rewrite (its lock is in Redis), no job: the domain stays."""
    nobody = redis_lib.Redis(port=lab.free_port(), socket_connect_timeout=1)
    monkeypatch.setitem(app.extensions, "slipway_redis", nobody)
    outcome = domains.add_domain(web, "shop.example.com")
    assert outcome.warnings == [domains.ROUTE_DOWN, domains.QUEUE_DOWN]
    db.session.expire_all()
    assert [d.host for d in db.session.scalars(select(Domain))] == ["shop.example.com"]


def test_a_route_that_cannot_be_written_loses_nothing_and_says_so(web, monkeypatch):
    def broken(app):
        raise routing.traefik.ProxyError("Traefik is not reachable")

    monkeypatch.setattr(routing, "domains_changed", broken)
    outcome = domains.add_domain(web, "shop.example.com")
    assert outcome.warnings == [domains.ROUTE_DOWN]
    db.session.expire_all()
    assert _rows() == 1


def test_retry_asks_for_the_certificate_or_the_apps_sync(web):
    domain = domains.add_domain(web, "shop.example.com").domain
    queue("default").empty()
    assert domains.retry_certificate(domain) == []
    cert = Certificate(application_id=web.id, hosts_json='["shop.example.com"]', state="failed")
    db.session.add(cert)
    db.session.flush()
    domain.certificate_id = cert.id
    db.session.commit()
    assert domains.retry_certificate(domain) == []
    assert [(j.func_name, j.args) for j in _jobs()] == [
        ("app.jobs.sync_certificates", [web.id]),
        ("app.jobs.retry_certificate", [cert.id]),
    ]


def test_the_state_in_words(web):
    domain = domains.add_domain(web, "shop.example.com").domain
    plain = domains.add_domain(web, "plain.example.com", https_mode="off").domain
    assert (domains.view(plain).state, domains.view(plain).settled) == ("HTTP only", True)
    waiting = domains.view(domain)
    assert (waiting.settled, waiting.can_retry) == (False, True)  # the sync never ran
    when = datetime(2030, 1, 2, 3, 4, tzinfo=UTC)
    cert = Certificate(application_id=web.id, hosts_json="[]", state="failed",
                       last_error="DNS points elsewhere", next_attempt_at=when)  # fmt: skip
    db.session.add(cert)
    db.session.flush()
    domain.certificate_id = cert.id
    db.session.commit()
    db.session.refresh(domain)
    words = domains.certificate_words(cert)
    assert "DNS points elsewhere" in words and "2030-01-02 03:04" in words
    assert domains.view(domain).can_retry and not domains.view(domain).settled
    cert.state, cert.not_after = "active", datetime(2031, 5, 6, tzinfo=UTC)
    cert.last_error = cert.next_attempt_at = None
    db.session.commit()
    assert domains.view(domain).settled and "2031-05-06" in domains.certificate_words(cert)
    for state in ("pending_dns", "issuing", "renewing"):
        cert.state = state
        assert domains.certificate_words(cert)


def test_routing_sees_prefixes_modes_and_usable_certificates(app, web):
    domain = domains.add_domain(web, "shop.example.com", "/api", strip_prefix=True,
                                www="to_www").domain  # fmt: skip
    base = app.config["BASE_DOMAIN"]
    found = routing.routes(web)
    assert found[0] == routing.traefik.Route(f"web.shop.{base}")
    assert found[1] == routing.traefik.Route("shop.example.com", "/api", True, "redirect",
                                             "to_www", tls_ready=False)  # fmt: skip
    for state, usable in (("issuing", False), ("active", True), ("renewing", True),
                          ("failed", False)):  # fmt: skip
        cert = Certificate(application_id=web.id, hosts_json="[]", state=state)
        db.session.add(cert)
        db.session.flush()
        domain.certificate_id = cert.id
        db.session.commit()
        db.session.refresh(domain)
        assert routing.routes(web)[1].tls_ready is usable, state
