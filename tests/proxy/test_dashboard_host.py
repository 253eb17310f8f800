"""The dashboard's own host over HTTPS (issue 13 item 6): SLIPWAY_PUBLIC_URL https://…
gets a certificate from the CA and Traefik serves Slipway itself on that host."""

from __future__ import annotations

import importlib.util
import json
import socket
import ssl
import time

import pytest
import requests

from app import jobs
from app.config import ROOT
from app.extensions import db
from app.models import Certificate
from app.proxy import dashboard
from tests.conftest import running_app
from tests.proxy.test_certs import wait_served


def _run_script():
    """scripts/run.py (make run's supervisor) as a module."""
    spec = importlib.util.spec_from_file_location("slipway_run", ROOT / "scripts" / "run.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pytestmark = pytest.mark.once

HOST = "dash.example.com"


@pytest.fixture
def dash(acme_lab):
    with running_app(acme_lab.config | {"PUBLIC_URL": f"https://{HOST}/"}) as app:
        yield app
        for cert in db.session.scalars(db.select(Certificate)).all():
            db.session.delete(cert)
        db.session.commit()
    with running_app(acme_lab.config):
        dashboard.sync()  # no https:// PUBLIC_URL: the route goes


def _get(config, root_file, path: str) -> tuple[int, str]:
    """GET over HTTPS through Traefik's websecure port with SNI and Host = the host."""
    context = ssl.create_default_context(cafile=str(root_file))
    with socket.create_connection(("127.0.0.1", config["HTTPS_PORT"]), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=HOST) as tls:
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n"
                        .encode())  # fmt: skip
            data = b""
            while chunk := tls.recv(65536):
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split()[1]), body.decode()


def test_the_dashboard_host_gets_a_certificate_and_is_served_over_https(dash, acme_lab):
    config = acme_lab.config
    plain = f"http://127.0.0.1:{config['HTTP_PORT']}/healthz"
    assert dashboard.host() == HOST
    jobs.bind(dash)
    jobs.certificate_tick()  # what the scheduler runs every minute
    cert = dashboard.certificate()
    assert cert is not None and cert.application_id is None, cert
    assert cert.state == "active", cert.last_error
    wait_served(config, HOST, acme_lab.pebble.root_file)
    deadline = time.monotonic() + 10
    while True:
        status, body = _get(config, acme_lab.pebble.root_file, "/healthz")
        if status == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    # What make run checks before it prints the https:// URL (scripts/run.py).
    context = ssl.create_default_context(cafile=str(acme_lab.pebble.root_file))
    status = _run_script().http_status(
        "127.0.0.1", config["HTTPS_PORT"], "/healthz", context=context, host=HOST
    )
    assert status == 200
    # Plain HTTP of that host now redirects to HTTPS, path and port kept.
    moved = requests.get(plain + "?x=1", headers={"Host": HOST}, allow_redirects=False, timeout=5)
    assert moved.status_code in (301, 308)
    assert moved.headers["Location"] == f"https://{HOST}:{config['HTTPS_PORT']}/healthz?x=1"
    # Another tick keeps the same certificate (nothing ordered again).
    jobs.certificate_tick()
    assert dashboard.certificate().id == cert.id


def test_no_https_public_url_means_no_dashboard_route_and_no_certificate(acme_lab):
    with running_app(acme_lab.config | {"PUBLIC_URL": "http://dash.example.com/"}):
        assert dashboard.host() is None
        assert dashboard.sync() is None
        assert db.session.scalars(db.select(Certificate)).all() == []
