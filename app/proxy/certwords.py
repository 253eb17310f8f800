"""A certificate's state in words, for the Domains tab and the notifications."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from app.models.base import utcnow
from app.models.certificates import Certificate, CertSource, CertState


def when(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    if moment.date() == utcnow().date():
        return f"{moment:%H:%M} UTC"
    return f"{moment:%Y-%m-%d %H:%M} UTC"


def _addresses(found: list[str]) -> str:
    return ", ".join(found) if found else "no known address (set SLIPWAY_PUBLIC_IPS)"


def preflight_words(result: dict) -> str:
    """What a failed preflight saw, as a sentence."""
    if result.get("check") == "probe":
        url = result.get("url") or ""
        shown = url.rsplit("/", 1)[0] + "/…" if "/" in url else url
        return f"the self-check of {shown} {result.get('error')}"
    host, found = result.get("host"), result.get("addresses") or []
    server = _addresses(result.get("server") or [])
    if host is None:
        return f"waiting for DNS: {result.get('error')}"
    if found:
        return f"waiting for DNS: {host} resolves to {', '.join(found)}, this server is {server}"
    if result.get("error", "").startswith("the DNS lookup failed"):
        return f"waiting for DNS: {result['error']} for {host}"
    return f"waiting for DNS: {host} has no A or AAAA record; point it at {server}"


def describe(cert: Certificate) -> str:
    """The certificate's state in words, for the Domains tab."""
    date = f"{cert.not_after:%Y-%m-%d}" if cert.not_after else "?"
    if cert.source == CertSource.uploaded.value:
        if cert.not_after and cert.not_after <= utcnow():
            return f"uploaded, expired on {date}"
        return f"uploaded, valid until {date}"
    later = f"; next try at {when(cert.next_attempt_at)}" if cert.next_attempt_at else ""
    if cert.state == CertState.pending_dns.value:
        if cert.preflight_json:
            return preflight_words(json.loads(cert.preflight_json)) + later
        if cert.last_error:
            return f"waiting: {cert.last_error}"
        return "waiting for the DNS check"
    if cert.state == CertState.issuing.value:
        return "issuing"
    if cert.state == CertState.renewing.value:
        return f"renewing (active until {date})"
    if cert.state == CertState.failed.value:
        return f"failed: {cert.last_error}{later}"
    if cert.last_error:
        return f"renewal failed: {cert.last_error}{later}"
    return f"active until {date}"
