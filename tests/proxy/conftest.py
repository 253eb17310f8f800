"""Fixtures of the app/proxy tests. ``proxy``: a real Traefik on a fresh proxy folder.
Certificates: a real Traefik, Slipway's web on a real HTTP server behind
it (``WEB_UPSTREAM``), and a real ACME server (Pebble) whose DNS is challtestsrv, so
Pebble → Traefik → Slipway's ``/.well-known/acme-challenge/`` really happens."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
from werkzeug.serving import WSGIRequestHandler, make_server

from app import create_app, crypto, notify
from app.extensions import db
from app.models import Application, Domain, NotificationChannel
from app.proxy import traefik
from tests import lab
from tests.conftest import running_app
from tests.factories import make_app, make_project, make_team
from tests.proxy.pebble import Pebble


class _Quiet(WSGIRequestHandler):
    def log_request(self, *args, **kwargs):
        pass


class WebServer:
    """Slipway's web app on a real threaded HTTP server; can be stopped and started
    again on the same port (a fault test)."""

    def __init__(self, config: dict, port: int):
        self.app = create_app(config)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.server = None
        self.start()

    def start(self) -> None:
        self.server = make_server(
            "127.0.0.1", self.port, self.app, threaded=True, request_handler=_Quiet
        )
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@dataclass
class AcmeLab:
    config: dict
    pebble: Pebble
    web: WebServer
    root: Path


@pytest.fixture(scope="session")
def acme_lab(tmp_path_factory, base_config):
    root = tmp_path_factory.mktemp("acme")
    web_port = lab.free_port()
    config = base_config | {
        "PROXY_DIR": str(root / "traefik"),
        "HTTP_PORT": lab.free_port(),
        "HTTPS_PORT": lab.free_port(),
        "PROXY_API_PORT": lab.free_port(),
        "WEB_UPSTREAM": f"http://127.0.0.1:{web_port}",
        "PUBLIC_IPS": ("127.0.0.1",),
        "OUTBOUND_ALLOWED_HOSTS": ("127.0.0.1",),
    }
    pebble = Pebble(root / "pebble", config["HTTP_PORT"], config["HTTPS_PORT"])
    config |= {
        "ACME_DIRECTORY": pebble.directory,
        "ACME_CA_BUNDLE": str(pebble.ca_file),
        "DNS_RESOLVERS": (f"127.0.0.1:{pebble.dns_port}",),
    }
    with running_app(config):
        static = traefik.write_static_config()
    proxy = lab.Traefik(static, root / "traefik.log")
    web = WebServer(config, web_port)
    try:
        proxy.wait_ready(config["PROXY_API_PORT"])
        yield AcmeLab(config, pebble, web, root)
    finally:
        web.stop()
        proxy.stop()
        pebble.stop()


@pytest.fixture
def acme(acme_lab):
    """A test's app on the lab's settings; its certificate files are removed after it."""
    with running_app(acme_lab.config) as app:
        yield app
    for path in (Path(acme_lab.config["PROXY_DIR"]) / "dynamic").glob("*.yml"):
        if path.name != "_slipway.yml":
            path.unlink()


_serial = iter(range(1, 100_000))


def app_with_domain(host: str | None = None, **fields) -> tuple[Application, Domain]:
    """An app with one domain (HTTPS redirect unless ``https_mode`` says otherwise)."""
    n = next(_serial)
    team = make_team(f"team{n}")
    project = make_project(team, f"shop{n}")
    app_row = make_app(project, "web")
    domain = Domain(application_id=app_row.id, team_id=team.id,
                    host=host or f"shop{n}.example.com", **fields)  # fmt: skip
    db.session.add(domain)
    db.session.commit()
    return app_row, domain


class Receiver:
    """A webhook channel's receiving end: records each JSON body."""

    def __init__(self):
        self.received: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                outer.received.append(
                    json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                )
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self) -> list[str]:
        return [m["event"] for m in self.received]


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.server.shutdown()


def subscribe(team_id: int, url: str, *events: str) -> None:
    db.session.add(NotificationChannel(
        team_id=team_id, name="ops", kind="webhook", events=list(events), settings={},
        secret=crypto.encrypt(url, context=notify.SECRET_CONTEXT),
    ))  # fmt: skip
    db.session.commit()


@pytest.fixture
def proxy(base_config, tmp_path):
    """An app whose PROXY_DIR is fresh, and a Traefik on the static config it writes."""
    config = base_config | {
        "PROXY_DIR": str(tmp_path / "traefik"),
        "HTTP_PORT": lab.free_port(),
        "HTTPS_PORT": lab.free_port(),
        "PROXY_API_PORT": lab.free_port(),
    }
    with running_app(config) as app:
        static = traefik.write_static_config()
        server = lab.Traefik(static, tmp_path / "traefik.log")
        try:
            server.wait_ready(config["PROXY_API_PORT"])
            yield app, server, static
        finally:
            server.stop()
