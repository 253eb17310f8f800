"""app/proxy/certs.py against a real ACME server (Pebble), a real Traefik and Slipway's
web behind it: issue, serve over HTTPS, wrong DNS, a failed order and its retry."""

from __future__ import annotations

import json
import socket
import ssl
import time
from datetime import timedelta

import pytest
from cryptography import x509
from sqlalchemy import func, select

from app import crypto, jobs
from app.extensions import db
from app.models import Certificate, Domain
from app.models.base import utcnow
from app.proxy import acme_client, certs, pem, preflight, traefik
from tests.proxy.conftest import app_with_domain
from tests.proxy.test_traefik import Backend

pytestmark = pytest.mark.once


def tls_leaf(config: dict, host: str, root_file) -> x509.Certificate:
    """The certificate Traefik serves for ``host``, verified (chain and name) by a real
    TLS client that trusts only Pebble's root."""
    context = ssl.create_default_context(cafile=str(root_file))
    with socket.create_connection(("127.0.0.1", config["HTTPS_PORT"]), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname=host) as tls:
            return x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))


def wait_served(config, host, root_file, serial=None, timeout=10.0) -> x509.Certificate:
    deadline = time.monotonic() + timeout
    while True:
        try:
            leaf = tls_leaf(config, host, root_file)
            if serial is None or leaf.serial_number == serial:
                return leaf
        except (ssl.SSLError, OSError):
            if time.monotonic() > deadline:
                raise
        if time.monotonic() > deadline:
            raise AssertionError(f"{host} is not served with serial {serial}")
        time.sleep(0.05)


def https_route(app_id: int, host: str, backend_url: str) -> None:
    """A minimal HTTPS route for the test (routing's own routers are another module's)."""
    name = f"app-{app_id}"
    data = {"http": {
        "routers": {name: {"rule": f"Host(`{host}`)", "entryPoints": ["websecure"],
                           "service": name, "tls": {}}},
        "services": {name: {"loadBalancer": {"servers": [{"url": backend_url}]}}},
    }}  # fmt: skip
    traefik._write_atomic(traefik.app_route_path(app_id), data, traefik.staging_dir())


def test_a_domain_gets_a_certificate_from_the_ca_and_traefik_serves_it_over_https(acme, acme_lab):
    app_row, domain = app_with_domain(www="both")
    host = domain.host
    backend = Backend("shop")
    try:
        https_route(app_row.id, host, backend.url)
        started = time.perf_counter()
        done = certs.sync_for_app(app_row)
        took = time.perf_counter() - started
        cert = db.session.get(Certificate, domain.certificate_id)
        assert done == {cert.id: "active"}, cert.last_error
        assert cert.hosts == [host, f"www.{host}"]
        assert cert.state == "active" and cert.attempts == 0 and cert.last_error is None
        assert cert.issuer.startswith("Pebble Intermediate CA")
        lifetime = cert.not_after - cert.not_before
        assert abs(cert.renew_at - (cert.not_after - lifetime / 3)) < timedelta(seconds=1)
        assert json.loads(cert.preflight_json)["ok"] is True
        key_pem = crypto.decrypt(cert.key_ciphertext, context=certs.KEY_CONTEXT)
        assert "PRIVATE KEY" in key_pem and "PRIVATE KEY" not in cert.key_ciphertext
        assert certs.describe(cert) == f"active until {cert.not_after:%Y-%m-%d}"
        for name in (host, f"www.{host}"):
            leaf = wait_served(acme_lab.config, name, acme_lab.pebble.root_file)
            assert leaf.serial_number == pem.leaf(cert.chain_pem).serial_number
            assert set(pem.dns_names(leaf)) == {host, f"www.{host}"}
        answer = _get_https(acme_lab, host)
        assert answer == "shop\n"
        print(f"issue for 2 names: {took:.2f} s")
    finally:
        backend.stop()


def _get_https(acme_lab, host: str, retry: bool = True) -> str:
    """GET / over HTTPS to Traefik on loopback, the name checked against Pebble's root;
    until it answers 200 (the route is loaded) unless ``retry`` is off."""
    context = ssl.create_default_context(cafile=str(acme_lab.pebble.root_file))
    port = acme_lab.config["HTTPS_PORT"]
    deadline = time.monotonic() + 10
    while True:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname=host) as tls:
                tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
                data = b""
                while chunk := tls.recv(65536):
                    data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 200") or not retry or time.monotonic() > deadline:
            assert head.startswith(b"HTTP/1.1 200"), head
            return body.decode()
        time.sleep(0.05)


def test_wrong_dns_waits_in_pending_dns_with_the_reason_and_orders_nothing(acme, acme_lab):
    app_row, domain = app_with_domain()
    acme_lab.pebble.point(domain.host, "203.0.113.9")
    orders_before = acme_lab.pebble.orders()
    try:
        certs.sync_for_app(app_row)
    finally:
        acme_lab.pebble.unpoint(domain.host)
    cert = db.session.get(Certificate, domain.certificate_id)
    assert cert.state == "pending_dns" and cert.attempts == 1
    seen = json.loads(cert.preflight_json)
    assert seen["check"] == "dns" and seen["addresses"] == ["203.0.113.9"]
    words = certs.describe(cert)
    assert words.startswith(
        f"waiting for DNS: {domain.host} resolves to 203.0.113.9, this server is 127.0.0.1"
    ), words
    assert "next try at" in words
    assert timedelta(seconds=50) < cert.next_attempt_at - utcnow() <= timedelta(minutes=1)
    assert acme_lab.pebble.orders() == orders_before
    assert not traefik.certificate_route_path(cert.id).exists()


def test_a_failed_order_backs_off_and_tick_issues_it_once_the_fault_is_cleared(
    acme, acme_lab, monkeypatch
):
    """The fault: Slipway's web server stops after the preflight passed, so the CA's
    HTTP-01 request gets Traefik's 502. Then it comes back; no restart of anything else."""
    app_row, domain = app_with_domain()
    real_run = preflight.run

    def preflight_then_web_down(hosts):
        result = real_run(hosts)
        acme_lab.web.stop()
        return result

    monkeypatch.setattr(preflight, "run", preflight_then_web_down)
    orders_before = acme_lab.pebble.orders()
    try:
        certs.sync_for_app(app_row)
    finally:
        acme_lab.web.start()
    monkeypatch.setattr(preflight, "run", real_run)
    cert = db.session.get(Certificate, domain.certificate_id)
    assert acme_lab.pebble.orders() == orders_before + 1
    assert cert.state == "failed" and cert.attempts == 1
    print(cert.last_error)
    assert "urn:ietf:params:acme:error:" in cert.last_error and domain.host in cert.last_error
    assert cert.next_attempt_at > utcnow()
    assert certs.describe(cert).startswith(f"failed: {cert.last_error}; next try at ")
    assert not traefik.certificate_route_path(cert.id).exists()

    assert certs.tick() == {}  # not due yet
    assert certs.tick(now=cert.next_attempt_at + timedelta(seconds=1)) == {cert.id: "active"}
    db.session.expire_all()
    cert = db.session.get(Certificate, cert.id)
    assert cert.state == "active" and cert.attempts == 0 and cert.next_attempt_at is None
    wait_served(acme_lab.config, domain.host, acme_lab.pebble.root_file)


def test_retry_now_runs_a_failed_certificate_at_once(acme, acme_lab):
    app_row, domain = app_with_domain()
    acme_lab.pebble.point(domain.host, "203.0.113.9")
    try:
        certs.sync_for_app(app_row)
    finally:
        acme_lab.pebble.unpoint(domain.host)
    cert_id = domain.certificate_id
    assert db.session.get(Certificate, cert_id).state == "pending_dns"
    jobs.bind(acme)
    assert jobs.retry_certificate(cert_id) == "active"
    db.session.expire_all()
    assert db.session.get(Certificate, cert_id).state == "active"


def test_the_backoff_doubles_up_to_six_hours_and_the_budget_stops_orders(acme, acme_lab):
    assert [certs._backoff(n).total_seconds() for n in (1, 2, 3, 4)] == [60, 120, 240, 480]
    assert certs._backoff(20) == timedelta(hours=6)
    app_row, domain = app_with_domain(host="a.budget.example.net")
    for _ in range(certs.BUDGET_FAILED):
        certs.record_failed_order(["x.example.net"])  # the same registered domain
    orders_before = acme_lab.pebble.orders()
    certs.sync_for_app(app_row)
    cert = db.session.get(Certificate, domain.certificate_id)
    assert acme_lab.pebble.orders() == orders_before
    assert cert.state == "pending_dns" and cert.preflight_json is None
    assert "orders for example.net failed in the last hour" in cert.last_error
    assert cert.next_attempt_at > utcnow() + timedelta(minutes=59)
    assert certs.describe(cert).startswith("waiting: 3 orders for example.net failed in the last")


def test_a_certificate_no_domain_needs_is_removed_with_its_file(acme, acme_lab):
    app_row, domain = app_with_domain()
    certs.sync_for_app(app_row)
    cert_id = domain.certificate_id
    assert traefik.certificate_route_path(cert_id).exists()
    domain.https_mode = "off"
    db.session.commit()
    assert certs.sync_for_app(app_row) == {}
    assert db.session.get(Certificate, cert_id) is None
    assert not traefik.certificate_route_path(cert_id).exists()
    assert db.session.get(Domain, domain.id).certificate_id is None


def test_hostile_host_names_never_reach_the_ca_or_a_file_name(acme, acme_lab):
    orders_before = acme_lab.pebble.orders()
    for hostile in ("evil.example.com`) || Host(`x", "a.example.com\nb", "../../etc/passwd",
                    "-x.example.com", "$(id).example.com"):  # fmt: skip
        app_row, _ = app_with_domain(host=hostile)
        assert certs.sync_for_app(app_row) == {}
        with pytest.raises(acme_client.AcmeError) as caught:
            acme_client.order([hostile])
        assert caught.value.ordered is False and caught.value.reason.startswith("not ordering")
    assert db.session.scalar(select(func.count(Certificate.id))) == 0
    assert acme_lab.pebble.orders() == orders_before
    dynamic = traefik.dynamic_dir()
    assert all(p.name == "_slipway.yml" or p.name.startswith(("app-", "cert-"))
               for p in dynamic.iterdir())  # fmt: skip


def test_the_domains_tab_job_runs_from_the_queue_by_its_name(acme, acme_lab):
    """The Domains tab enqueues ``app.jobs.sync_certificates(app_id)`` on ``default``."""
    from app.extensions import queue
    from tests.backups.conftest import work

    app_row, domain = app_with_domain()
    queue("default").enqueue("app.jobs.sync_certificates", app_row.id)
    work("default")
    db.session.expire_all()
    cert = db.session.get(Domain, domain.id).certificate
    assert cert is not None and cert.state == "active", cert and cert.last_error


def test_a_certificate_another_worker_holds_is_not_ordered_twice(acme, acme_lab):
    app_row, domain = app_with_domain()
    cert = Certificate(application_id=app_row.id, hosts=[domain.host])
    db.session.add(cert)
    db.session.flush()
    domain.certificate_id = cert.id
    db.session.commit()
    lock = certs._lock(cert.id)
    assert lock.acquire(blocking=False)
    orders_before = acme_lab.pebble.orders()
    try:
        assert certs.sync_for_app(app_row) == {cert.id: "busy"}
        assert certs.tick() == {cert.id: "busy"}
    finally:
        lock.release()
    assert acme_lab.pebble.orders() == orders_before
    db.session.expire_all()
    assert db.session.get(Certificate, cert.id).state == "pending_dns"


def test_an_order_whose_worker_died_is_set_back_with_the_reason(acme, acme_lab):
    app_row, domain = app_with_domain(https_mode="off")
    cert = Certificate(application_id=app_row.id, hosts=[domain.host], state="issuing")
    db.session.add(cert)
    db.session.commit()
    assert certs.tick() == {}
    db.session.expire_all()
    cert = db.session.get(Certificate, cert.id)
    assert cert.state == "failed" and cert.last_error == "the worker stopped during the order"
    assert cert.next_attempt_at > utcnow()
