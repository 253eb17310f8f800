"""The checks before an ACME order: a failure here costs no order at the CA.

For each host of the certificate:

1. **DNS.** Its A and AAAA records, asked of ``SLIPWAY_DNS_RESOLVERS`` (``ip`` or
   ``ip:port``; empty = the system's resolvers), must include one of this server's
   public addresses: ``SLIPWAY_PUBLIC_IPS``, or else the detected ones. Detection asks
   the kernel which local address it would use to reach a public address (a UDP
   socket "connected" to 8.8.8.8 and to 2001:4860:4860::8888; connecting a UDP socket
   sends nothing): the outbound interface's IPv4 and IPv6 addresses. Behind NAT or a
   load balancer that is a private address, and ``SLIPWAY_PUBLIC_IPS`` must name the
   public one.
2. **Self-probe.** A one-time token (``challenges.put_probe``) is fetched as
   ``http://<host>:<HTTP_PORT>/.well-known/slipway/<token>``, connecting to the address
   DNS gave that is ours (never any other: the probe only ever reaches this server),
   with the host in the ``Host`` header and no redirect followed. The token coming back
   proves the path the CA will take: this address, Traefik's ``web`` entrypoint, its
   ``/.well-known`` route, Slipway's web server and Redis.

:func:`run` returns a JSON-able dict (kept in ``Certificate.preflight_json``)::

    {"ok": true, "hosts": [...], "server": [...]}
    {"ok": false, "check": "dns", "host": ..., "addresses": [...], "server": [...],
     "error": "..."}
    {"ok": false, "check": "probe", "host": ..., "url": ..., "address": ...,
     "status": 404 | null, "error": "..."}
"""

from __future__ import annotations

import http.client
import ipaddress
import secrets
import socket

import dns.exception
import dns.nameserver
import dns.resolver
from flask import current_app

from app.proxy import challenges

DNS_SECONDS = 5.0
PROBE_SECONDS = 5.0
PROBE_PATH = "/.well-known/slipway/{}"
# Addresses only used to pick the outbound interface (nothing is sent to them).
_ROUTE_TARGETS = (("8.8.8.8", socket.AF_INET), ("2001:4860:4860::8888", socket.AF_INET6))


def _nameserver(entry: str) -> dns.nameserver.Nameserver:
    entry = entry.strip()
    try:
        return dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(entry.strip("[]"))))
    except ValueError:
        host, _, port = entry.rpartition(":")
        return dns.nameserver.Do53Nameserver(str(ipaddress.ip_address(host.strip("[]"))), int(port))


def resolver() -> dns.resolver.Resolver:
    configured = [e for e in current_app.config.get("DNS_RESOLVERS") or () if e.strip()]
    res = dns.resolver.Resolver(configure=not configured)
    if configured:
        res.nameservers = [_nameserver(e) for e in configured]
    res.lifetime = DNS_SECONDS
    res.timeout = DNS_SECONDS / 2
    return res


def addresses(host: str, res: dns.resolver.Resolver | None = None) -> list[str]:
    """The host's A and AAAA addresses (CNAMEs followed); [] when it has none."""
    res = res or resolver()
    found: list[str] = []
    for rdtype in ("A", "AAAA"):
        try:
            answer = res.resolve(host, rdtype, search=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            continue
        found += [r.address for r in answer]
    return found


def public_ips() -> list[str]:
    """This server's public addresses: ``SLIPWAY_PUBLIC_IPS``, else the outbound ones."""
    configured = [str(ipaddress.ip_address(a)) for a in current_app.config.get("PUBLIC_IPS") or ()]
    if configured:
        return configured
    found = []
    for target, family in _ROUTE_TARGETS:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((target, 53))
                found.append(s.getsockname()[0])
        except OSError:
            continue  # no route for this family
    return found


def _same(a: str, b: str) -> bool:
    return ipaddress.ip_address(a) == ipaddress.ip_address(b)


def probe(host: str, address: str) -> dict | None:
    """The self-probe of ``host`` at ``address``; None when the token came back."""
    token = secrets.token_urlsafe(24)
    port = current_app.config["HTTP_PORT"]
    path = PROBE_PATH.format(token)
    shown = f"http://{host}{'' if port == 80 else f':{port}'}{path}"
    failed = {"ok": False, "check": "probe", "host": host, "url": shown, "address": address,
              "status": None}  # fmt: skip
    challenges.put_probe(token)
    conn = http.client.HTTPConnection(address, port, timeout=PROBE_SECONDS)
    try:
        conn.request("GET", path, headers={"Host": host, "User-Agent": "Slipway-preflight"})
        response = conn.getresponse()
        body = response.read(1024).decode(errors="replace").strip()
        if response.status == 200 and body == token:
            return None
        failed["status"] = response.status
        failed["error"] = (
            f"got {response.status} from {address}"
            if response.status != 200
            else f"got another answer than the token from {address}"
        )
    except (OSError, http.client.HTTPException) as exc:
        failed["error"] = f"could not reach {address}:{port}: {exc}"
    finally:
        conn.close()
        challenges.drop_probe(token)
    return failed


def run(hosts: list[str]) -> dict:
    """Check every host (DNS, then the self-probe); the first failure is the result."""
    server = public_ips()
    try:
        res = resolver()
    except ValueError as exc:
        return {"ok": False, "check": "dns", "host": None, "addresses": [], "server": server,
                "error": f"SLIPWAY_DNS_RESOLVERS is not valid: {exc}"}  # fmt: skip
    for host in hosts:
        try:
            found = addresses(host, res)
        except dns.exception.DNSException as exc:
            return {"ok": False, "check": "dns", "host": host, "addresses": [], "server": server,
                    "error": f"the DNS lookup failed: {type(exc).__name__}"}  # fmt: skip
        ours = [a for a in found if any(_same(a, s) for s in server)]
        if not ours:
            error = "has no A or AAAA record" if not found else "does not point here"
            return {"ok": False, "check": "dns", "host": host, "addresses": found,
                    "server": server, "error": error}  # fmt: skip
        for address in ours:
            failed = probe(host, address)
            if failed is not None:
                return failed
    return {"ok": True, "hosts": list(hosts), "server": server}
