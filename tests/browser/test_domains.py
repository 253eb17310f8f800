"""The Domains tab in Chromium: a domain typed into the form gets its certificate for
real and the table turns "active until …" by itself, without a reload.

For the certificate to be issued, the dashboard's gunicorn is the Slipway web that
Traefik's ``/.well-known/`` router reaches (``SLIPWAY_WEB_UPSTREAM``), with a real
ACME server (Pebble, its DNS challtestsrv pointing every name at 127.0.0.1), a real
Traefik, and ``worker.py`` running the jobs with the very environment of the gunicorn.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from playwright.sync_api import expect
from rq.serializers import JSONSerializer
from rq.worker import Worker

from app import create_app, lanes
from app.extensions import redis
from app.proxy import traefik
from tests import lab
from tests.browser.conftest import ROOT, Server, log_in, seed, server_env, start_server
from tests.proxy.pebble import Pebble

ISSUE_TIMEOUT_MS = 30_000
ACTIVE = re.compile(r"^active until \d{4}-\d{2}-\d{2}$")
# What the state cell may say while the certificate is on its way.
ON_ITS_WAY = re.compile(r"^(Waiting for the certificate to be ordered|waiting for the DNS check"
                        r"|issuing)$")  # fmt: skip


class WorkerProcess:
    """``python worker.py`` (every lane and the scheduler), its output in ``log``."""

    def __init__(self, env: dict, log: Path):
        self.log_path = log
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=env, start_new_session=True,
            stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 30
        while len(self._lanes()) < len(lanes.LANES):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"worker.py did not start:\n{self.tail()}")
            time.sleep(0.05)

    def _lanes(self) -> list[Worker]:
        every = Worker.all(connection=redis.client, serializer=JSONSerializer)
        return [w for w in every if w.pid == self.proc.pid]

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # a warm shutdown
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


@dataclass
class HttpsLab:
    server: Server
    worker: WorkerProcess
    pebble: Pebble
    https_port: int


@pytest.fixture
def https_lab(app, base_config, tmp_path):
    """Pebble, Traefik, the dashboard's gunicorn behind Traefik's /.well-known/ router, and
    worker.py, all on the test database and Redis; stopped before the tables are emptied."""
    web_port, http_port, https_port, api_port = (lab.free_port() for _ in range(4))
    pebble = Pebble(tmp_path / "pebble", http_port, https_port)
    settings = {
        "PROXY_DIR": str(tmp_path / "traefik"),
        "HTTP_PORT": http_port,
        "HTTPS_PORT": https_port,
        "PROXY_API_PORT": api_port,
        "WEB_UPSTREAM": f"http://127.0.0.1:{web_port}",
    }
    env = {f"SLIPWAY_{name}": str(value) for name, value in settings.items()} | {
        "SLIPWAY_PUBLIC_IPS": "127.0.0.1",
        "SLIPWAY_OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
        "SLIPWAY_ACME_DIRECTORY": pebble.directory,
        "SLIPWAY_ACME_CA_BUNDLE": str(pebble.ca_file),
        "SLIPWAY_DNS_RESOLVERS": f"127.0.0.1:{pebble.dns_port}",
        "SLIPWAY_ADOPT_UNLABELLED": "0",  # never claim the engine's objects
    }
    with create_app(base_config | settings).app_context():
        static = traefik.write_static_config()
    proxy = lab.Traefik(static, tmp_path / "traefik.log")
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    started: list = [pebble, proxy]
    try:
        proxy.wait_ready(api_port)
        server = start_server(base_config, data_dir, extra_env=env, port=web_port)
        started.append(server)
        worker = WorkerProcess(server_env(base_config, data_dir, env), data_dir / "worker.log")
        started.append(worker)
        yield HttpsLab(server, worker, pebble, https_port)
    finally:
        for thing in reversed(started):
            thing.stop()


def _leaf(port: int, host: str, root_file: Path) -> x509.Certificate:
    """The certificate Traefik serves for ``host`` (SNI), verified against Pebble's root."""
    context = ssl.create_default_context(cafile=str(root_file))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def test_a_domain_typed_on_the_tab_turns_active_without_a_reload(open_page, https_lab, tmp_path):
    seeded = seed("shop", apps=("web",))
    app_id = seeded.app_ids["web"]
    host = f"shop{app_id}.example.com"
    page = open_page(https_lab.server)
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}/domains")
    table = page.locator("#domains-table")
    expect(table).to_contain_text("No domains yet")

    page.get_by_label("Host name").fill(host)
    expect(page.get_by_label("HTTPS")).to_have_value("redirect")
    started = time.monotonic()
    with page.expect_navigation():
        page.get_by_role("button", name="Add domain").click()
    expect(page.locator(".flash.success")).to_have_text(f"{host} added.")
    row = table.locator("tbody tr", has_text=host)
    state = row.locator("td.domain-state")
    expect(state).to_have_class(re.compile(r"\bpending\b"))
    expect(table).to_have_attribute("hx-trigger", "every 3s")
    page.evaluate("window.__noReload = 'still here'")
    page.screenshot(path=tmp_path / "domains-pending.png", full_page=True)

    # The table polls itself every 3 s: note each state it shows until it is active.
    seen = [state.inner_text()]
    deadline = time.monotonic() + ISSUE_TIMEOUT_MS / 1000
    while not ACTIVE.match(seen[-1]):
        assert time.monotonic() < deadline, f"never active: {seen}\n{https_lab.worker.tail()}"
        page.wait_for_timeout(100)
        shown = state.inner_text()
        if shown != seen[-1]:
            seen.append(shown)
    print(f"states on the page: {seen}; add → active shown in {time.monotonic() - started:.1f} s")
    assert all(ON_ITS_WAY.match(words) for words in seen[:-1]), seen
    assert page.evaluate("window.__noReload") == "still here"  # no reload, the fragment swapped
    expect(state).not_to_have_class(re.compile(r"\bpending\b"))
    expect(table).not_to_have_attribute("hx-trigger", "every 3s")  # settled: polling stops
    expect(row.get_by_role("button", name="Retry now")).to_have_count(0)
    expect(row.get_by_role("link", name=host)).to_have_attribute(
        "href", f"https://{host}:{https_lab.https_port}/"
    )
    # The page tells the truth: Traefik serves a certificate for the host that Pebble signed.
    leaf = _leaf(https_lab.https_port, host, https_lab.pebble.root_file)
    assert f"{leaf.not_valid_after_utc:%Y-%m-%d}" in seen[-1]

    shot = tmp_path / "domains-active.png"
    page.screenshot(path=shot, full_page=True)
    print(f"screenshot: {shot}")


def test_a_bad_host_is_shown_next_to_the_field(page, tmp_path):
    seeded = seed("shop", apps=("web",))
    app_id = seeded.app_ids["web"]
    log_in(page, seeded.email)
    page.goto(f"/apps/{app_id}/domains")
    page.get_by_label("Host name").fill("bad_host.example.com")
    with page.expect_response(lambda r: r.url.endswith(f"/apps/{app_id}/domains")) as answer:
        page.get_by_role("button", name="Add domain").click()
    assert answer.value.status == 422
    field = page.locator("#field-host")
    expect(field).to_have_class(re.compile(r"\bhas-error\b"))
    expect(field.locator("#host-error")).to_contain_text("letters, digits, '-' and dots only")
    host = page.get_by_label("Host name")
    expect(host).to_have_value("bad_host.example.com")  # what was typed stays
    expect(host).to_have_attribute("aria-invalid", "true")
    expect(host).to_have_attribute("aria-describedby", "host-error")
    expect(page.locator("#domains-table")).to_contain_text("No domains yet")
    page.screenshot(path=tmp_path / "domains-bad-host.png", full_page=True)
