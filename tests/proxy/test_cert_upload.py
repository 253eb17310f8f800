"""Uploaded certificates (made here with cryptography), served by the real Traefik; the
daily watch of what Traefik serves; expiry warnings once per threshold."""

from __future__ import annotations

import datetime
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from sqlalchemy import func, select

from app.extensions import db
from app.models import Certificate, Domain
from app.models.base import utcnow
from app.proxy import certs, pem, traefik
from tests.backups.conftest import work_notifications
from tests.proxy.conftest import app_with_domain, subscribe

pytestmark = pytest.mark.once


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()  # fmt: skip


class OwnCA:
    """A private CA that signs leaf certificates for the tests' uploads."""

    def __init__(self, tmp_path):
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Upload Test CA")])
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(self.key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now + datetime.timedelta(days=400))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        self.file = tmp_path / "own-ca.pem"
        self.file.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    def issue(self, names: list[str], days: float = 60, start_days: float = -1):
        """(chain PEM, key PEM) for ``names``, valid from ``start_days`` to ``days``."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        leaf = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + datetime.timedelta(days=start_days))
            .not_valid_after(now + datetime.timedelta(days=days))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )  # fmt: skip
        chain = (leaf.public_bytes(serialization.Encoding.PEM)
                 + self.cert.public_bytes(serialization.Encoding.PEM)).decode()  # fmt: skip
        return chain, _pem(key)


@pytest.fixture
def own_ca(tmp_path):
    return OwnCA(tmp_path)


def served(config, host, ca_file, serial, timeout=10.0) -> x509.Certificate:
    """The leaf Traefik serves for ``host``, verified against ``ca_file``, once it has
    the wanted serial."""
    context = ssl.create_default_context(cafile=str(ca_file))
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", config["HTTPS_PORT"]), timeout=5) as raw:
                with context.wrap_socket(raw, server_hostname=host) as tls:
                    leaf = x509.load_der_x509_certificate(tls.getpeercert(binary_form=True))
            if leaf.serial_number == serial:
                return leaf
        except (ssl.SSLError, OSError):
            pass
        assert time.monotonic() < deadline, f"{host} is not served with {serial}"
        time.sleep(0.05)


def test_an_uploaded_certificate_is_served_never_renewed_and_replaces_the_acme_one(
    acme, acme_lab, own_ca
):
    app_row, domain = app_with_domain(host="shop.uploads.example.com", www="both")
    certs.sync_for_app(app_row)  # an ACME certificate first
    ordered_id = domain.certificate_id
    assert db.session.get(Certificate, ordered_id).state == "active"
    chain, key = own_ca.issue(["*.uploads.example.com", "uploads.example.com"])
    # www.shop.uploads.example.com is not covered by the wildcard (two labels): refused.
    with pytest.raises(certs.UploadError, match="does not cover www.shop.uploads.example.com"):
        certs.upload(app_row, ["shop.uploads.example.com"], chain, key)
    domain.www = "none"
    db.session.commit()
    cert = certs.upload(app_row, ["shop.uploads.example.com"], chain, key)
    assert cert.source == "uploaded" and cert.state == "active" and cert.renew_at is None
    assert cert.issuer == "Upload Test CA" and "PRIVATE" not in cert.key_ciphertext
    assert db.session.get(Domain, domain.id).certificate_id == cert.id
    assert db.session.get(Certificate, ordered_id) is None
    assert not traefik.certificate_route_path(ordered_id).exists()
    assert certs.describe(cert) == f"uploaded, valid until {cert.not_after:%Y-%m-%d}"
    serial = pem.leaf(chain).serial_number
    served(acme_lab.config, "shop.uploads.example.com", own_ca.file, serial)
    # The next sync keeps it, and no tick ever renews it.
    assert certs.sync_for_app(app_row) == {}
    assert db.session.get(Domain, domain.id).certificate_id == cert.id
    assert certs.tick(now=cert.not_after) == {}


def test_an_unusable_upload_is_refused_with_the_reason_and_nothing_is_stored(acme, own_ca):
    app_row, domain = app_with_domain(host="shop.refused.example.com")
    host = domain.host
    chain, key = own_ca.issue([host])
    _, other_key = own_ca.issue([host])
    expired_chain, expired_key = own_ca.issue([host], days=-1, start_days=-30)
    cases = [
        (chain, other_key, [host], "The private key does not belong to the certificate."),
        (expired_chain, expired_key, [host], "The certificate expired on "),
        (own_ca.issue(["other.example.com"])[0], None, [host], f"does not cover {host}"),
        ("not a certificate", key, [host], "not a PEM certificate chain"),
        (chain, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", [host],
         "not a PEM private key"),
        (chain, key, ["elsewhere.example.com"], "is not a domain of this app"),
        (chain, key, ["bad host`"], "must be a host name"),
    ]  # fmt: skip
    for case_chain, case_key, hosts, message in cases:
        if case_key is None:  # the key of that very certificate
            case_chain, case_key = own_ca.issue(["other.example.com"])
        with pytest.raises(certs.UploadError) as caught:
            certs.upload(app_row, hosts, case_chain, case_key)
        assert message in str(caught.value), (message, str(caught.value))
    assert db.session.scalar(select(func.count(Certificate.id))) == 0
    assert list(traefik.dynamic_dir().glob("cert-*.yml")) == []


def test_the_watch_writes_a_certificate_again_when_traefik_does_not_serve_it(
    acme, acme_lab, own_ca
):
    app_row, domain = app_with_domain(host="shop.watched.example.com")
    chain, key = own_ca.issue([domain.host])
    cert = certs.upload(app_row, [domain.host], chain, key)
    serial = pem.leaf(chain).serial_number
    served(acme_lab.config, domain.host, own_ca.file, serial)
    assert certs.watch() == {"checked": 1, "rewritten": [], "warned": {}}
    traefik.remove_certificate(cert.id)  # lost: Traefik falls back to its default one
    time.sleep(0.5)
    assert certs.watch()["rewritten"] == [cert.id]
    served(acme_lab.config, domain.host, own_ca.file, serial)


def test_expiry_is_notified_once_per_threshold(acme, acme_lab, own_ca, receiver):
    app_row, domain = app_with_domain(host="shop.expiring.example.com")
    subscribe(app_row.project.team_id, receiver.url, "certificate.expiring")
    chain, key = own_ca.issue([domain.host], days=20)
    cert = certs.upload(app_row, [domain.host], chain, key)
    now = utcnow()
    week = datetime.timedelta(days=7)
    assert certs.watch(now)["warned"] == {cert.id: 21}
    assert certs.watch(now)["warned"] == {}
    assert certs.watch(now + week)["warned"] == {cert.id: 14}
    assert certs.watch(now + week)["warned"] == {}
    assert certs.watch(now + 2 * week)["warned"] == {cert.id: 7}
    assert certs.watch(now + 2 * week + week / 7)["warned"] == {}
    work_notifications()
    assert receiver.events() == ["certificate.expiring"] * 3
    assert f"expires on {cert.not_after:%Y-%m-%d}" in receiver.received[0]["subject"]
    # A new certificate (a new not_after) is warned about afresh.
    chain, key = own_ca.issue([domain.host], days=5)
    fresh = certs.upload(app_row, [domain.host], chain, key)
    assert certs.watch(now)["warned"] == {fresh.id: 7}
