"""Reading certificates and keys (PEM) and the checks made on them: which host names a
certificate covers, whether a key belongs to it, who issued it."""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID


class PemError(ValueError):
    """A certificate or key that cannot be used; the message says why in words."""


def chain(chain_pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM chain, leaf first."""
    try:
        found = x509.load_pem_x509_certificates(chain_pem.encode())
    except ValueError:
        raise PemError("the certificate is not a PEM certificate chain") from None
    if not found:
        raise PemError("the certificate is not a PEM certificate chain")
    return found


def leaf(chain_pem: str) -> x509.Certificate:
    return chain(chain_pem)[0]


def private_key(key_pem: str):
    try:
        return serialization.load_pem_private_key(key_pem.encode(), password=None)
    except TypeError:
        raise PemError("the private key is encrypted; upload it without a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise PemError("the private key is not a PEM private key") from None


def _spki(public_key) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_matches(cert: x509.Certificate, key) -> bool:
    return _spki(cert.public_key()) == _spki(key.public_key())


def dns_names(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return [name.lower().rstrip(".") for name in san.value.get_values_for_type(x509.DNSName)]


def covers(name: str, host: str) -> bool:
    """Whether the SAN ``name`` covers ``host``: equal, or a wildcard ``*.example.com``
    standing for exactly one leftmost label (RFC 6125 6.4.3: not ``example.com``, not
    ``a.b.example.com``)."""
    if name.startswith("*."):
        label, dot, rest = host.partition(".")
        return bool(label) and dot == "." and rest == name[2:]
    return name == host


def uncovered(cert: x509.Certificate, hosts: list[str]) -> list[str]:
    names = dns_names(cert)
    return [h for h in hosts if not any(covers(n, h) for n in names)]


def issuer_name(cert: x509.Certificate) -> str:
    common = cert.issuer.get_attributes_for_oid(NameOID.COMMON_NAME)
    text = str(common[0].value) if common else cert.issuer.rfc4514_string()
    return text[:255]


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def to_pem(certs: list[x509.Certificate]) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)
