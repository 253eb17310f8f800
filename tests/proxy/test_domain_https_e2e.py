"""A domain added on the Domains tab, end to end: the tab's form posted to Slipway's web on
a real server, ``app.jobs.sync_certificates`` run by the worker's lanes, a real ACME
server (Pebble, its DNS challtestsrv) validating through the real Traefik, and then the
app served over HTTPS by that certificate, with plain HTTP redirected (or refused).

The app serves from a loopback HTTP server: it is the app's routed deployment, its one
replica at 127.0.0.1 as the engine would report it (``containers.deployment_replicas``
is the only stand-in), so every route write is Slipway's own: at the add, and again when
the certificate becomes active.
"""

from __future__ import annotations

import ssl
import threading
import time
from html.parser import HTMLParser

import pytest
import requests
from cryptography import x509
from sqlalchemy import select, update

import worker
from app import jobs
from app.deploys import routing
from app.extensions import db, redis
from app.models import Application, Certificate, Deployment, Domain
from app.proxy import pem
from app.runtime import containers
from app.runtime.replicas import ReplicaFacts
from tests.factories import PASSWORD, make_app, make_project, make_user, team_of
from tests.proxy.test_certs import tls_leaf
from tests.proxy.test_domain_routes import PERMANENT, Echo, _http, _https, _moved

pytestmark = pytest.mark.once  # Pebble, Traefik and a worker: one database run is enough

ISSUE_SECONDS = 30


class _FormFields(HTMLParser):
    """The fields the add form of the tab submits as rendered (name → value): inputs,
    checked checkboxes, and each select's selected (or first) option."""

    def __init__(self, action: str):
        super().__init__()
        self.action, self.inside, self.fields = action, False, {}
        self._select: str | None = None
        self._first: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.inside = a.get("action") == self.action
        elif self.inside and tag == "input" and a.get("name"):
            if a.get("type") in ("checkbox", "radio") and "checked" not in a:
                return
            self.fields[a["name"]] = a.get("value", "")
        elif self.inside and tag == "select":
            self._select = a["name"]
        elif self.inside and tag == "option" and self._select:
            self._first.setdefault(self._select, a.get("value", ""))
            if "selected" in a:
                self.fields[self._select] = a.get("value", "")

    def handle_endtag(self, tag):
        if tag == "select" and self._select:
            self.fields.setdefault(self._select, self._first.get(self._select, ""))
            self._select = None
        elif tag == "form":
            self.inside = False


class Dashboard:
    """A browser-like session on the lab's real web server, logged in as the owner."""

    def __init__(self, url: str, email: str):
        self.url = url
        self.http = requests.Session()
        token = self._token("/login")
        login = {"csrf_token": token, "email": email, "password": PASSWORD}
        answer = self.http.post(f"{url}/login", data=login, allow_redirects=False, timeout=10)
        assert answer.status_code == 303, answer.text

    def _token(self, path: str) -> str:
        page = self.http.get(f"{self.url}{path}", timeout=10).text
        start = page.index('name="csrf-token" content="') + len('name="csrf-token" content="')
        return page[start : page.index('"', start)]

    def add_domain(self, app_id: int, **typed: str) -> requests.Response:
        """Fill in the tab's form as rendered, change what ``typed`` says, submit it."""
        tab = f"/apps/{app_id}/domains"
        page = self.http.get(f"{self.url}{tab}", timeout=10)
        assert page.status_code == 200
        form = _FormFields(tab)
        form.feed(page.text)
        assert {"csrf_token", "host", "path_prefix", "https_mode", "www"} <= set(form.fields)
        assert set(typed) <= set(form.fields) | {"strip_prefix"}
        return self.http.post(f"{self.url}{tab}", data=form.fields | typed, timeout=10,
                              allow_redirects=False)  # fmt: skip

    def table(self, app_id: int) -> str:
        """The table fragment, as the tab's htmx poll asks for it."""
        answer = self.http.get(f"{self.url}/apps/{app_id}/domains", timeout=10,
                               headers={"HX-Request": "true"})  # fmt: skip
        assert answer.status_code == 200
        return answer.text


@pytest.fixture
def lanes(acme):
    """The worker's lanes in a thread of the test (as ``worker.py`` runs them), on the
    lab's settings; stopped (warm) after the test."""
    stop = threading.Event()
    thread = threading.Thread(target=worker.serve_all, args=(acme, stop),
                              kwargs={"schedule": False}, daemon=True)  # fmt: skip
    thread.start()
    deadline = time.monotonic() + 10
    while not redis.client.keys("rq:worker:*.default-*"):
        assert time.monotonic() < deadline, "the lanes did not start"
        time.sleep(0.05)
    yield
    stop.set()
    thread.join(30)
    assert not thread.is_alive()
    jobs.bind(acme)


@pytest.fixture
def serving_app(acme, monkeypatch):
    """(app row, its backend): an app whose routed deployment is a loopback server."""
    backend = Echo("shop")
    port = int(backend.url.rsplit(":", 1)[1])
    owner = make_user()
    app_row = make_app(make_project(team_of(owner), "shop"), "web")
    deployment = Deployment(application_id=app_row.id, status="running")
    db.session.add(deployment)
    db.session.flush()
    db.session.execute(update(Application).where(Application.id == app_row.id).values(
        routed_deployment_id=deployment.id, routed_replicas=1, routed_port=port))  # fmt: skip
    db.session.commit()
    replica = ReplicaFacts(id="c0", name="web-0", replica="0", state="running",
                           address="127.0.0.1")  # fmt: skip

    def replicas(app_id, deployment_id, ids=None):
        return [replica] if (app_id, deployment_id) == (app_row.id, deployment.id) else []

    monkeypatch.setattr(containers, "deployment_replicas", replicas)
    yield app_row, owner.email, backend
    backend.stop()


def _wait_active(host: str) -> tuple[list[str], float]:
    """The certificate states the domain went through (read every 10 ms) until active."""
    seen: list[str] = []
    started = time.monotonic()
    while time.monotonic() - started < ISSUE_SECONDS:
        state = db.session.scalar(
            select(Certificate.state).join(Domain, Domain.certificate_id == Certificate.id)
            .where(Domain.host == host)
        )  # fmt: skip
        db.session.rollback()  # no read transaction left open (SQLite's writer waits for it)
        if state is not None and (not seen or seen[-1] != state):
            seen.append(state)
        if state == "active":
            return seen, time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"{host} never became active: {seen}")


def _eventually(probe, wanted_prefix: str = "shop ", timeout: float = 5):
    """``probe()`` until it starts with ``wanted_prefix`` (Traefik loads a new route in
    milliseconds, not at once); its last answer."""
    deadline = time.monotonic() + timeout
    while not (answer := probe()).startswith(wanted_prefix) and time.monotonic() < deadline:
        time.sleep(0.02)
    return answer


def _served(acme, host: str, path: str, root_pem: str) -> tuple[int, dict, str]:
    """GET over HTTPS until the route with TLS is loaded (Traefik's 404 before)."""
    deadline = time.monotonic() + 10
    while True:
        try:
            status, headers, body = _https(acme, host, path, root_pem)
            if status == 200 or time.monotonic() > deadline:
                return status, headers, body
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
        time.sleep(0.05)


def test_a_domain_added_on_the_tab_is_issued_and_served_over_https_with_http_redirected(
    acme, acme_lab, serving_app, lanes
):
    app_row, email, backend = serving_app
    host = f"shop{app_row.id}.example.com"
    twin = f"www.{host}"
    root_pem = acme_lab.pebble.root_file.read_text()
    dashboard = Dashboard(acme_lab.web.url, email)
    started = time.monotonic()
    added = dashboard.add_domain(app_row.id, host=host, www="both")
    assert added.status_code == 303, added.text
    # Until the certificate is usable the site serves plain HTTP (the add's own route).
    assert _eventually(lambda: _http(acme, host, "/early").text) == "shop /early"
    seen, took = _wait_active(host)
    print(f"add → active: {time.monotonic() - started:.2f} s (states {seen}, {took:.2f} s)")
    assert seen[-1] == "active" and set(seen[:-1]) <= {"pending_dns", "issuing"}, seen

    cert = db.session.scalar(select(Certificate).join(Domain).where(Domain.host == host))
    assert cert.hosts == [host, twin] and cert.issuer.startswith("Pebble Intermediate CA")
    fragment = dashboard.table(app_row.id)
    assert f"active until {cert.not_after:%Y-%m-%d}" in fragment, fragment
    assert "every 3s" not in fragment and "Retry now" not in fragment  # settled: no polling

    for name in (host, twin):
        status, _, body = _served(acme, name, "/a/b?x=1&y=2", root_pem)
        assert (status, body) == (200, "shop /a/b?x=1&y=2"), name
        leaf = tls_leaf(acme.config, name, acme_lab.pebble.root_file)  # SNI = the name
        assert leaf.serial_number == pem.leaf(cert.chain_pem).serial_number
        names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert set(names.get_values_for_type(x509.DNSName)) == {host, twin}
        port = acme.config["HTTPS_PORT"]
        assert _moved(acme, name, "/a/b?x=1&y=2") == f"https://{name}:{port}/a/b?x=1&y=2"
    # A client that does not trust Pebble's root, or asks for another name, gets no page.
    with pytest.raises(ssl.SSLCertVerificationError):
        _https(acme, host, "/", ca_pem=acme_lab.pebble.ca_file.read_text())
    with pytest.raises(ssl.SSLCertVerificationError):
        _https(acme, f"other{app_row.id}.example.com", "/", ca_pem=root_pem)


def test_https_only_serves_over_https_once_issued_and_http_gets_404(
    acme, acme_lab, serving_app, lanes
):
    app_row, email, _ = serving_app
    host = f"only{app_row.id}.example.com"
    root_pem = acme_lab.pebble.root_file.read_text()
    dashboard = Dashboard(acme_lab.web.url, email)
    assert dashboard.add_domain(app_row.id, host=host, https_mode="only").status_code == 303
    assert _http(acme, host, "/page").status_code == 404  # never plain HTTP, even before
    seen, took = _wait_active(host)
    print(f"only: states {seen} in {took:.2f} s")
    status, _, body = _served(acme, host, "/page?q=1", root_pem)
    assert (status, body) == (200, "shop /page?q=1")
    for method in PERMANENT:
        assert _http(acme, host, "/page", method).status_code == 404, method
    assert "active until" in dashboard.table(app_row.id)
    # The app's default address stays plain HTTP, to the same backend.
    default = routing.hosts(app_row)[0]
    assert _http(acme, default, "/x").text == "shop /x"
