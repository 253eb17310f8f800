"""A domain added or removed on a running app: the route changes at once, no deploy, and
not one request to the app fails meanwhile (the real engine and Traefik)."""

from __future__ import annotations

import threading
import time

import requests

from app.proxy import domains
from tests import lab
from tests.deploys.conftest import _deploy, _host, _web_app

LOOP_SECONDS_AFTER = 0.5


def _status(port: int, host: str) -> int | str:
    try:
        url = f"http://127.0.0.1:{port}/"
        return requests.get(url, headers={"Host": host}, timeout=5).status_code
    except requests.RequestException as exc:
        return type(exc).__name__


def _wait_for(port: int, host: str, wanted: int, timeout: float = 5) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if _status(port, host) == wanted:
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"{host} did not answer {wanted} in {timeout} s")


def test_adding_and_removing_a_domain_fails_no_request(app, repo, infra):
    repo.commit(lab.web_files("v1"), "v1")
    app_row = _web_app(repo)
    assert _deploy(app_row).status == "running"
    port = infra["config"]["HTTP_PORT"]
    kept = f"kept{app_row.id}.example.com"
    domains.add_domain(app_row, kept, https_mode="off")
    _wait_for(port, kept, 200)
    watched = [_host(app_row), kept]
    answers: list[int | str] = []
    stop = threading.Event()

    def loop():
        while not stop.is_set():
            for host in watched:
                answers.append(_status(port, host))

    thread = threading.Thread(target=loop)
    thread.start()
    try:
        added = f"added{app_row.id}.example.com"
        time.sleep(0.3)
        domain = domains.add_domain(app_row, added, "/", https_mode="off").domain
        assert _wait_for(port, added, 200) < 1  # at once, without a deploy
        time.sleep(0.3)
        outcome = domains.remove_domain(domain)
        assert outcome.warnings == []
        _wait_for(port, added, 404)
        time.sleep(LOOP_SECONDS_AFTER)
    finally:
        stop.set()
        thread.join()
    failed = [a for a in answers if a != 200]
    assert len(answers) > 50 and failed == [], (len(answers), failed[:10])
