"""app/proxy/traefik.py against the real Traefik binary: switches, restarts, boundaries."""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest
import requests
import yaml

from app.proxy import traefik
from tests import lab

HOST = "web.shop.localhost"


class Backend(lab.LoopbackHTTP):
    """A loopback HTTP server answering its name on every path."""

    def __init__(self, name: str):
        self.body = f"{name}\n"
        super().__init__(lambda path: (200, self.body.encode()))


@pytest.fixture
def backends():
    pair = Backend("blue"), Backend("green")
    yield pair
    for backend in pair:
        backend.stop()


def _through(app, path: str = "/", host: str = HOST) -> requests.Response:
    url = f"http://127.0.0.1:{app.config['HTTP_PORT']}{path}"
    return requests.get(url, headers={"Host": host}, timeout=5)


def test_a_switch_is_confirmed_through_the_api_and_served_within_100ms(proxy, backends):
    """The median switch, from the file write to the API naming the new server, is well
    under Traefik's old reload time (150-450 ms: a new RSA key per reload)."""
    app, _, _ = proxy
    blue, green = backends
    traefik.write_app_routes(7, [HOST], [blue.url])
    traefik.wait_until_served(7, [blue.url])
    times = []
    for i in range(9):
        target = green if i % 2 == 0 else blue
        time.sleep(0.15)  # past the throttle of the previous reload
        started = time.perf_counter()
        traefik.write_app_routes(7, [HOST], [target.url])
        traefik.wait_until_served(7, [target.url])
        times.append(time.perf_counter() - started)
        assert _through(app).text == target.body  # confirmed means served
    assert statistics.median(times) < 0.1, times


def test_temporary_files_are_never_written_in_the_watched_folder(proxy, monkeypatch):
    renames = []
    real_replace = os.replace

    def spy(src, dst):
        renames.append((Path(src), sorted(p.name for p in traefik.dynamic_dir().iterdir())))
        return real_replace(src, dst)

    monkeypatch.setattr(traefik.os, "replace", spy)
    traefik.write_app_routes(8, [HOST], ["http://127.0.0.1:9"])
    (src, watched_before_rename), *_ = renames
    assert src.parent == traefik.staging_dir()
    assert all(name.endswith(".yml") for name in watched_before_rename)
    assert traefik.app_route_path(8).stat().st_mode & 0o077 == 0


def test_the_default_certificate_is_made_once_private_and_named_in_the_dynamic_config(proxy):
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    internal = yaml.safe_load((traefik.dynamic_dir() / "_slipway.yml").read_text())
    files = internal["tls"]["stores"]["default"]["defaultCertificate"]
    cert_file, key_file = Path(files["certFile"]), Path(files["keyFile"])
    first = cert_file.read_bytes(), key_file.read_bytes()
    traefik.write_static_config()  # every start writes the static config again
    assert (cert_file.read_bytes(), key_file.read_bytes()) == first
    for path in (cert_file, key_file):
        assert path.stat().st_mode & 0o077 == 0
    cert = x509.load_pem_x509_certificate(first[0])
    key = serialization.load_pem_private_key(first[1], password=None)
    assert cert.public_key().public_numbers() == key.public_key().public_numbers()


def test_routes_survive_a_traefik_restart(proxy, backends, tmp_path):
    """The routes are files: a new Traefik process reads them without Slipway's help."""
    app, server, static = proxy
    blue, _ = backends
    traefik.write_app_routes(9, [HOST], [blue.url])
    traefik.wait_until_served(9, [blue.url])
    server.stop()
    again = lab.Traefik(static, tmp_path / "traefik-again.log")
    try:
        again.wait_ready(app.config["PROXY_API_PORT"])
        traefik.wait_until_served(9, [blue.url], timeout=5)
        assert _through(app).text == blue.body
    finally:
        again.stop()


def test_the_api_answers_only_on_the_loopback_entrypoint(proxy):
    app, _, static = proxy
    entrypoints = yaml.safe_load(static.read_text())["entryPoints"]
    assert entrypoints[traefik.INTERNAL_ENTRYPOINT]["address"].startswith("127.0.0.1:")
    api = f"http://127.0.0.1:{app.config['PROXY_API_PORT']}/api/http/routers"
    assert requests.get(api, timeout=5).status_code == 200
    for host in (HOST, "localhost", "127.0.0.1"):
        assert _through(app, "/api/http/routers", host).status_code == 404


def test_a_hostile_host_name_never_becomes_a_rule(proxy):
    with pytest.raises(traefik.ProxyError):
        traefik.write_app_routes(10, ["web.localhost`) || PathPrefix(`/"], ["http://127.0.0.1:9"])
    assert not traefik.app_route_path(10).exists()
    assert list(traefik.staging_dir().glob(".tmp-*")) == []


def test_removed_routes_are_no_longer_served(proxy, backends):
    app, _, _ = proxy
    blue, _ = backends
    traefik.write_app_routes(11, [HOST], [blue.url])
    traefik.wait_until_served(11, [blue.url])
    traefik.remove_app_routes(11)
    deadline = time.monotonic() + 5
    while traefik.served_by(11) is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert traefik.served_by(11) is None
    assert _through(app).status_code == 404
