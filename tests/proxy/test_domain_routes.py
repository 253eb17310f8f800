"""App domains through the real Traefik: prefixes (longest wins, strip or not), the HTTPS
modes with a certificate Traefik picks by SNI, and the www twin."""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import time

import pytest
import requests
import yaml

from app.deploys import routing
from app.extensions import db
from app.models import Certificate
from app.proxy import domains, traefik
from tests import lab
from tests.factories import make_app, make_project, make_team

pytestmark = pytest.mark.once  # a real Traefik: one database run is enough

SHOP = "shop.example.com"


class Echo(lab.LoopbackHTTP):
    """A loopback HTTP server answering its name and the path (with query) it was asked."""

    def __init__(self, name: str):
        super().__init__(lambda path: (200, f"{name} {path}".encode()))


@pytest.fixture
def echoes():
    made: list[Echo] = []

    def make(name: str) -> Echo:
        made.append(Echo(name))
        return made[-1]

    yield make
    for echo in made:
        echo.stop()


def _http(app, host: str, path: str = "/", method: str = "GET") -> requests.Response:
    url = f"http://127.0.0.1:{app.config['HTTP_PORT']}{path}"
    return requests.request(method, url, headers={"Host": host}, timeout=5, allow_redirects=False)


# Traefik's permanent redirects: 301 to a GET, 308 (method and body kept) to the rest.
PERMANENT = {"GET": 301, "POST": 308}


def _moved(app, host: str, path: str) -> str:
    """The Location a permanent redirect of ``host``/``path`` gives, the same for both."""
    found = set()
    for method, status in PERMANENT.items():
        answer = _http(app, host, path, method)
        assert answer.status_code == status, (method, answer.status_code, answer.text)
        found.add(answer.headers["Location"])
    assert len(found) == 1, found
    return found.pop()


class _SNIConnection(http.client.HTTPSConnection):
    """HTTPS to Traefik's loopback port, sending ``host`` as SNI and Host."""

    def connect(self):
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


def _https(app, host: str, path: str = "/", ca_pem: str | None = None):
    context = (
        ssl.create_default_context(cadata=ca_pem) if ca_pem else ssl._create_unverified_context()
    )
    conn = _SNIConnection(host, app.config["HTTPS_PORT"], context=context, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read().decode()
    finally:
        conn.close()


def _self_signed(*hosts: str) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(h) for h in hosts]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()  # fmt: skip
    return cert.public_bytes(serialization.Encoding.PEM).decode(), key_pem


def _routers(app) -> dict[str, dict]:
    api = f"http://127.0.0.1:{app.config['PROXY_API_PORT']}/api/http/routers"
    return {r["name"]: r for r in requests.get(api, timeout=5).json()}


def _route(app, app_row, servers: list[str]) -> None:
    """Write the app's route as routing computes it; wait until Traefik runs it all."""
    path = traefik.write_app_routes(app_row.id, routing.routes(app_row), servers)
    written = yaml.safe_load(path.read_text())["http"]["routers"]
    # A rewrite may keep the router names and change only their middlewares (the redirect
    # once a certificate is usable), so wait for those too, not only for the names.
    wanted = {
        f"{n}@file": sorted(f"{m}@file" for m in r.get("middlewares", []))
        for n, r in written.items()
    }
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = _routers(app)
        mine = {
            n: sorted(r.get("middlewares", []))
            for n, r in found.items()
            if n.startswith(f"{traefik.route_name(app_row.id)}-")
        }
        if mine == wanted and all(found[n].get("status") == "enabled" for n in wanted):
            return
        time.sleep(0.02)
    raise AssertionError(f"Traefik did not load {sorted(wanted)}")


def _app(team=None, name="web"):
    team = team or make_team()
    return make_app(make_project(team, f"p{name}"), name)


def test_two_apps_share_a_host_by_prefix_and_the_longest_prefix_wins(proxy, echoes):
    app, _, _ = proxy
    team = make_team()
    site, api, v2 = _app(team, "site"), _app(team, "api"), _app(team, "apiv2")
    domains.add_domain(site, SHOP, "/", https_mode="off")
    domains.add_domain(api, SHOP, "/api", https_mode="off")
    domains.add_domain(v2, SHOP, "/api/v2/", https_mode="off")
    for row, name in ((site, "site"), (api, "api"), (v2, "v2")):
        _route(app, row, [echoes(name).url])
    cases = {
        "/": "site /", "/about": "site /about", "/apix": "site /apix", "/api": "api /api",
        "/api/users?q=1": "api /api/users?q=1", "/api/v2": "v2 /api/v2",
        "/api/v2/items?x=y": "v2 /api/v2/items?x=y", "/api/v20": "api /api/v20",
    }  # fmt: skip
    for path, answer in cases.items():
        assert _http(app, SHOP, path).text == answer, path
    # The default addresses keep answering as before.
    assert _http(app, f"api.papi.{app.config['BASE_DOMAIN']}", "/x").text == "api /x"


def test_strip_prefix_removes_the_prefix_and_pass_through_keeps_it(proxy, echoes):
    app, _, _ = proxy
    team = make_team()
    stripped, kept = _app(team, "strip"), _app(team, "keep")
    domains.add_domain(stripped, SHOP, "/s", strip_prefix=True, https_mode="off")
    domains.add_domain(kept, SHOP, "/k", https_mode="off")
    _route(app, stripped, [echoes("strip").url])
    _route(app, kept, [echoes("keep").url])
    assert _http(app, SHOP, "/s/users?id=7").text == "strip /users?id=7"
    assert _http(app, SHOP, "/s").text == "strip /"
    assert _http(app, SHOP, "/k/users?id=7").text == "keep /k/users?id=7"


def _certified(app, app_row, domain, *hosts, state="active") -> str:
    """A self-signed certificate for ``hosts`` given to Traefik, the domain's row set."""
    chain, key = _self_signed(*hosts)
    cert = Certificate(application_id=app_row.id, hosts_json="[]", state=state, chain_pem=chain)
    cert.hosts = list(hosts)
    db.session.add(cert)
    db.session.flush()
    domain.certificate_id = cert.id
    db.session.commit()
    db.session.refresh(app_row)
    traefik.write_certificate(cert.id, chain, key)
    return chain


def _wait_for_certificate(app, host, chain) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            _https(app, host, "/", chain)
            return
        except ssl.SSLError:
            time.sleep(0.02)
    raise AssertionError("Traefik does not serve the certificate")


def test_redirect_mode_sends_http_to_https_with_path_and_query_once_the_certificate_is_usable(
    proxy, echoes
):
    app, _, _ = proxy
    row = _app()
    domain = domains.add_domain(row, SHOP, https_mode="redirect").domain
    server = echoes("tls").url
    # Until the certificate is usable the site keeps serving plain HTTP.
    chain = _certified(app, row, domain, SHOP, state="issuing")
    _route(app, row, [server])
    assert _http(app, SHOP, "/a/b?x=1&y=2").text == "tls /a/b?x=1&y=2"
    domain.certificate.state = "active"
    db.session.commit()
    _route(app, row, [server])
    port = app.config["HTTPS_PORT"]
    assert _moved(app, SHOP, "/a/b?x=1&y=2") == f"https://{SHOP}:{port}/a/b?x=1&y=2"
    _wait_for_certificate(app, SHOP, chain)
    status, _, body = _https(app, SHOP, "/a/b?x=1&y=2", chain)
    assert (status, body) == (200, "tls /a/b?x=1&y=2")
    # The default address stays plain HTTP.
    assert _http(app, f"web.pweb.{app.config['BASE_DOMAIN']}", "/").status_code == 200


def test_https_only_answers_404_on_http_and_200_on_https(proxy, echoes):
    app, _, _ = proxy
    row = _app()
    domain = domains.add_domain(row, SHOP, https_mode="only").domain
    chain = _certified(app, row, domain, SHOP)
    _route(app, row, [echoes("only").url])
    assert _http(app, SHOP, "/page").status_code == 404
    _wait_for_certificate(app, SHOP, chain)
    assert _https(app, SHOP, "/page", chain)[::2] == (200, "only /page")


def test_https_off_serves_plain_http_only(proxy, echoes):
    app, _, _ = proxy
    row = _app()
    domains.add_domain(row, SHOP, https_mode="off")
    _route(app, row, [echoes("plain").url])
    assert _http(app, SHOP, "/x").text == "plain /x"
    assert _https(app, SHOP, "/x")[0] == 404


def test_www_both_serves_both_names(proxy, echoes):
    app, _, _ = proxy
    row = _app()
    domains.add_domain(row, SHOP, https_mode="off", www="both")
    _route(app, row, [echoes("both").url])
    assert _http(app, SHOP, "/p").text == "both /p"
    assert _http(app, f"www.{SHOP}", "/p").text == "both /p"


@pytest.mark.parametrize(
    ("added", "www", "serving", "moved"),
    [
        (SHOP, "to_apex", SHOP, f"www.{SHOP}"),
        (f"www.{SHOP}", "to_apex", SHOP, f"www.{SHOP}"),
        (SHOP, "to_www", f"www.{SHOP}", SHOP),
    ],
)
def test_www_redirects_to_the_chosen_name_keeping_path_and_query(
    proxy, echoes, added, www, serving, moved
):
    app, _, _ = proxy
    row = _app()
    domains.add_domain(row, added, "/shop", https_mode="off", www=www)
    _route(app, row, [echoes("www").url])
    assert _http(app, serving, "/shop/cart?id=3").text == "www /shop/cart?id=3"
    port = app.config["HTTP_PORT"]
    assert _moved(app, moved, "/shop/cart?id=3") == f"http://{serving}:{port}/shop/cart?id=3"
    assert _http(app, moved, "/elsewhere").status_code == 404  # only the prefix moves


def test_www_redirect_goes_straight_to_https_when_the_certificate_is_usable(proxy, echoes):
    app, _, _ = proxy
    row = _app()
    domain = domains.add_domain(row, SHOP, https_mode="redirect", www="to_apex").domain
    chain = _certified(app, row, domain, SHOP, f"www.{SHOP}")
    _route(app, row, [echoes("w").url])
    port = app.config["HTTPS_PORT"]
    for host in (SHOP, f"www.{SHOP}"):
        assert _moved(app, host, "/q?a=b") == f"https://{SHOP}:{port}/q?a=b"
    _wait_for_certificate(app, SHOP, chain)
    status, headers, _ = _https(app, f"www.{SHOP}", "/q?a=b", chain)
    assert (status, headers["Location"]) == (301, f"https://{SHOP}:{port}/q?a=b")


@pytest.mark.parametrize(
    "route",
    [
        traefik.Route("shop.example.com`) || Path(`/"),
        traefik.Route(SHOP, "/x`) || Path(`/"),
        traefik.Route(SHOP, "/a/../b"),
        traefik.Route(SHOP, "/x/"),  # not the stored (normalised) form
        traefik.Route(SHOP, https_mode="sometimes"),
        traefik.Route(SHOP, www="everything"),
    ],
)
def test_a_route_part_that_is_not_valid_never_becomes_a_rule(proxy, route):
    with pytest.raises(traefik.ProxyError):
        traefik.write_app_routes(12, [traefik.Route("web.shop.localhost"), route], ["http://x:1"])
    assert not traefik.app_route_path(12).exists()


def test_the_default_address_keeps_its_plain_route(proxy):
    app, _, _ = proxy
    path = traefik.write_app_routes(13, ["web.shop.localhost"], ["http://127.0.0.1:9"])
    routers = yaml.safe_load(path.read_text())["http"]["routers"]
    assert list(routers.values()) == [{
        "rule": "Host(`web.shop.localhost`)", "entryPoints": ["web"], "service": "app-13",
        "priority": traefik.ROUTE_PRIORITY + 1,
    }]  # fmt: skip


def test_priorities_stay_below_the_well_known_router():
    assert traefik.route_priority("/" + "a" * 254) < traefik.WELL_KNOWN_PRIORITY


def test_port_443_uses_redirect_scheme(app):
    app.config["HTTPS_PORT"] = 443
    assert traefik._to_https() == {"redirectScheme": {"scheme": "https", "permanent": True}}
