"""Renewals against a real Pebble: a short-lived certificate is renewed at a third of its
life left while a steady HTTPS client sees no failure; a failed renewal keeps the old
certificate serving, says why, and tells the team once per streak."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Certificate
from app.models.base import utcnow
from app.proxy import acme_client, certs, pem, preflight
from tests.backups.conftest import work_notifications
from tests.proxy.conftest import app_with_domain, subscribe
from tests.proxy.pebble import Pebble
from tests.proxy.test_certs import _get_https, https_route, tls_leaf, wait_served
from tests.proxy.test_traefik import Backend

pytestmark = pytest.mark.once
VALIDITY = 21  # seconds: renewal is due 14 s after issue


@pytest.fixture(scope="module")
def short_pebble(acme_lab):
    """A second Pebble whose certificates live VALIDITY seconds."""
    server = Pebble(acme_lab.root / "pebble-short", acme_lab.config["HTTP_PORT"],
                    acme_lab.config["HTTPS_PORT"], validity_seconds=VALIDITY)  # fmt: skip
    yield server
    server.stop()


class SteadyClient:
    """New TLS connections one after the other, the chain and name checked each time."""

    def __init__(self, lab, host):
        self.lab, self.host = lab, host
        self.ok = 0
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stop.is_set():
            try:
                assert _get_https(self.lab, self.host, retry=False) == "shop\n"
                self.ok += 1
            except Exception as exc:  # noqa: BLE001 - every failure is counted
                self.failures.append(repr(exc))
            time.sleep(0.01)

    def end(self):
        self.stop.set()
        self.thread.join(5)


def test_a_certificate_is_renewed_at_a_third_of_its_life_without_a_failed_request(
    acme, acme_lab, short_pebble, monkeypatch
):
    acme.config.update(ACME_DIRECTORY=short_pebble.directory,
                       ACME_CA_BUNDLE=str(short_pebble.ca_file))  # fmt: skip
    lab = type(acme_lab)(acme_lab.config, short_pebble, acme_lab.web, acme_lab.root)
    app_row, domain = app_with_domain()
    backend = Backend("shop")
    try:
        https_route(app_row.id, domain.host, backend.url)
        certs.sync_for_app(app_row)
        cert = db.session.get(Certificate, domain.certificate_id)
        assert cert.state == "active", cert.last_error
        first = pem.leaf(cert.chain_pem).serial_number
        assert cert.not_after - cert.not_before <= timedelta(seconds=VALIDITY + 1)
        wait_served(acme_lab.config, domain.host, short_pebble.root_file, first)
        client = SteadyClient(lab, domain.host)
        assert certs.tick() == {}  # not due yet

        seen_during_order = {}
        real_order = acme_client.order

        def watching_order(hosts, *args, **kwargs):
            seen_during_order["state"] = db.session.scalar(
                select(Certificate.state).where(Certificate.id == cert.id)
            )
            leaf = tls_leaf(acme_lab.config, domain.host, short_pebble.root_file)
            seen_during_order["served"] = leaf.serial_number
            return real_order(hosts, *args, **kwargs)

        monkeypatch.setattr(acme_client, "order", watching_order)
        while utcnow() < cert.renew_at:
            time.sleep(0.1)
        started = time.perf_counter()
        assert certs.tick() == {cert.id: "active"}
        renewal = time.perf_counter() - started
        assert seen_during_order == {"state": "renewing", "served": first}
        db.session.expire_all()
        cert = db.session.get(Certificate, cert.id)
        second = pem.leaf(cert.chain_pem).serial_number
        assert second != first and cert.state == "active" and cert.renew_at > utcnow()
        wait_served(acme_lab.config, domain.host, short_pebble.root_file, second)
        time.sleep(0.3)
        client.end()
        assert client.failures == [] and client.ok > 20, (client.ok, client.failures[:3])
        print(f"renewal {renewal:.2f} s, {client.ok} requests, 0 failed")
    finally:
        backend.stop()


def test_a_failed_renewal_keeps_the_old_certificate_serving_and_notifies_once(
    acme, acme_lab, receiver, monkeypatch
):
    app_row, domain = app_with_domain()
    subscribe(app_row.project.team_id, receiver.url, "certificate.failed")
    certs.sync_for_app(app_row)
    cert = db.session.get(Certificate, domain.certificate_id)
    serial = pem.leaf(cert.chain_pem).serial_number
    not_after = cert.not_after
    real_run = preflight.run

    def preflight_then_web_down(hosts):
        result = real_run(hosts)
        acme_lab.web.stop()
        return result

    monkeypatch.setattr(preflight, "run", preflight_then_web_down)
    for attempt in (1, 2):
        cert.renew_at = utcnow() - timedelta(seconds=1)
        cert.next_attempt_at = None
        db.session.commit()
        try:
            assert certs.tick() == {cert.id: "active"}
        finally:
            acme_lab.web.start()
        db.session.expire_all()
        cert = db.session.get(Certificate, cert.id)
        assert cert.state == "active" and cert.attempts == attempt
        assert cert.not_after == not_after and pem.leaf(cert.chain_pem).serial_number == serial
        assert cert.next_attempt_at > utcnow()
        words = certs.describe(cert)
        assert words.startswith("renewal failed: ") and "502" in words, words
        assert "; next try at " in words
        assert tls_leaf(acme_lab.config, domain.host, acme_lab.pebble.root_file).serial_number == (
            serial
        )
    work_notifications()
    assert receiver.events() == ["certificate.failed"]
    assert domain.host in receiver.received[0]["text"]

    monkeypatch.setattr(preflight, "run", real_run)
    assert certs.retry(cert.id) == "active"
    db.session.expire_all()
    cert = db.session.get(Certificate, cert.id)
    assert cert.last_error is None and pem.leaf(cert.chain_pem).serial_number != serial
    assert certs.describe(cert) == f"active until {cert.not_after:%Y-%m-%d}"
