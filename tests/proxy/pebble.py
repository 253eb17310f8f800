"""A real ACME server for tests: Debian's Pebble, with pebble-challtestsrv as its DNS.

Pebble listens with a TLS certificate made here (a CA and a leaf for 127.0.0.1 and
localhost); its HTTP-01 validations go to ``http_port`` (the test's Traefik ``web``
entrypoint) of whatever address challtestsrv answers for the host, 127.0.0.1 unless a
test says otherwise (:meth:`Pebble.point`). Orders are counted from Pebble's log.
"""

from __future__ import annotations

import datetime
import json
import os
import re
import subprocess
import time
from pathlib import Path

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.lab import free_port

PEBBLE = "/usr/bin/pebble"
CHALLTESTSRV = "/usr/bin/pebble-challtestsrv"


def _name(text: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])


def make_listener_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(CA file, certificate file, key file) for Pebble's HTTPS listeners."""
    import ipaddress

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder().subject_name(_name("test pebble listener CA"))
        .issuer_name(_name("test pebble listener CA")).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    key = ec.generate_private_key(ec.SECP256R1())
    san = x509.SubjectAlternativeName(
        [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    )
    leaf = (
        x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(san, critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    folder.mkdir(parents=True, exist_ok=True)
    ca_file, cert_file, key_file = folder / "ca.pem", folder / "cert.pem", folder / "key.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                          serialization.NoEncryption())
    )  # fmt: skip
    return ca_file, cert_file, key_file


class Pebble:
    """Pebble and challtestsrv in child processes; ``stop()`` ends both."""

    def __init__(self, folder: Path, http_port: int, tls_port: int, validity_seconds: int = 0):
        self.folder = folder
        self.ca_file, cert_file, key_file = make_listener_cert(folder / "listener")
        self.acme_port, self.mgmt_port = free_port(), free_port()
        self.dns_port, self.dns_mgmt_port = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"127.0.0.1:{self.acme_port}",
                "managementListenAddress": f"127.0.0.1:{self.mgmt_port}",
                "certificate": str(cert_file),
                "privateKey": str(key_file),
                "httpPort": http_port,
                "tlsPort": tls_port,
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
            }
        }
        if validity_seconds:
            config["pebble"]["certificateValidityPeriod"] = validity_seconds
        (folder / "pebble.json").write_text(json.dumps(config))
        self.dns_log = open(folder / "challtestsrv.log", "wb")  # noqa: SIM115 - closed in stop
        self.dns = subprocess.Popen(
            [CHALLTESTSRV, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.dns_port}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"127.0.0.1:{self.dns_mgmt_port}"],
            stdout=self.dns_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log_path = folder / "pebble.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop
        env = os.environ | {"PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0",
                            "PEBBLE_AUTHZREUSE": "0"}  # fmt: skip
        self.proc = subprocess.Popen(
            [PEBBLE, "-config", str(folder / "pebble.json"),
             "-dnsserver", f"127.0.0.1:{self.dns_port}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self.directory = f"https://127.0.0.1:{self.acme_port}/dir"
        self._wait()
        self.root_file = folder / "pebble-root.pem"
        self.root_file.write_text(self.root_pem())

    def _wait(self, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                requests.get(self.directory, verify=str(self.ca_file), timeout=1)
                requests.get(f"http://127.0.0.1:{self.dns_mgmt_port}/", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        tails = [p.read_text(errors="replace")[-1500:] for p in
                 (self.log_path, self.folder / "challtestsrv.log")]  # fmt: skip
        raise RuntimeError(f"Pebble did not start ({self.proc.poll()}, {self.dns.poll()}): {tails}")

    def root_pem(self) -> str:
        """The root of the certificates Pebble issues (new at each start)."""
        url = f"https://127.0.0.1:{self.mgmt_port}/roots/0"
        return requests.get(url, verify=str(self.ca_file), timeout=5).text

    def point(self, host: str, *addresses: str) -> None:
        """Make the DNS answer ``addresses`` for ``host`` (A records)."""
        self._dns("clear-a", {"host": f"{host}."})
        self._dns("add-a", {"host": f"{host}.", "addresses": list(addresses)})

    def unpoint(self, host: str) -> None:
        """Back to the default answer (127.0.0.1)."""
        self._dns("clear-a", {"host": f"{host}."})

    def _dns(self, what: str, body: dict) -> None:
        url = f"http://127.0.0.1:{self.dns_mgmt_port}/{what}"
        requests.post(url, json=body, timeout=5).raise_for_status()

    def orders(self) -> int:
        """How many orders Pebble has been asked for since it started."""
        self.log.flush()
        return len(re.findall(rb"Added order", self.log_path.read_bytes()))

    def stop(self) -> None:
        for proc in (self.proc, self.dns):
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.log.close()
        self.dns_log.close()
