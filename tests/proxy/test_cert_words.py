"""What the Domains tab shows: a certificate's state in words; the small rules beside it
(the www twin, wildcard coverage, the registered domain of the failed-order budget)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from app.models import Certificate
from app.models.base import utcnow
from app.proxy import certs, pem


def _cert(**fields) -> Certificate:
    values = {"hosts_json": '["shop.example.com"]', "source": "acme", "state": "pending_dns"}
    return Certificate(**(values | fields))


def test_each_state_in_words():
    today = utcnow().replace(hour=14, minute=5, second=0, microsecond=0)
    until = datetime(2027, 3, 1, tzinfo=UTC)
    dns = {"ok": False, "check": "dns", "host": "shop.example.com",
           "addresses": ["203.0.113.9"], "server": ["198.51.100.4"], "error": "x"}  # fmt: skip
    probe = {"ok": False, "check": "probe", "host": "shop.example.com",
             "url": "http://shop.example.com/.well-known/slipway/tok", "address": "198.51.100.4",
             "status": 404, "error": "got 404 from 198.51.100.4"}  # fmt: skip
    cases = [
        (_cert(preflight_json=json.dumps(dns)),
         "waiting for DNS: shop.example.com resolves to 203.0.113.9, this server is 198.51.100.4"),
        (_cert(preflight_json=json.dumps(dns | {"addresses": []}), next_attempt_at=today),
         "waiting for DNS: shop.example.com has no A or AAAA record; point it at 198.51.100.4; "
         "next try at 14:05 UTC"),
        (_cert(preflight_json=json.dumps(probe)),
         "the self-check of http://shop.example.com/.well-known/slipway/… got 404 from "
         "198.51.100.4"),
        (_cert(), "waiting for the DNS check"),
        (_cert(state="issuing"), "issuing"),
        (_cert(state="active", not_after=until), "active until 2027-03-01"),
        (_cert(state="renewing", not_after=until), "renewing (active until 2027-03-01)"),
        (_cert(state="active", not_after=until, last_error="urn:x: no", next_attempt_at=today),
         "renewal failed: urn:x: no; next try at 14:05 UTC"),
        (_cert(state="failed", last_error="urn:x: no",
               next_attempt_at=datetime(2027, 1, 2, 3, 4, tzinfo=UTC)),
         "failed: urn:x: no; next try at 2027-01-02 03:04 UTC"),
        (_cert(source="uploaded", state="active", not_after=until),
         "uploaded, valid until 2027-03-01"),
        (_cert(source="uploaded", state="active", not_after=utcnow() - timedelta(days=1)),
         f"uploaded, expired on {utcnow() - timedelta(days=1):%Y-%m-%d}"),
    ]  # fmt: skip
    for cert, words in cases:
        assert certs.describe(cert) == words


def test_the_www_twin_and_wildcards_and_the_budget_domain():
    assert certs.twin("shop.example.com") == "www.shop.example.com"
    assert certs.twin("www.example.com") == "example.com"
    assert pem.covers("*.example.com", "a.example.com")
    assert not pem.covers("*.example.com", "example.com")
    assert not pem.covers("*.example.com", "a.b.example.com")
    assert not pem.covers("*.example.com", ".example.com")
    assert pem.covers("example.com", "example.com")
    assert certs.registered_domain("a.b.shop.example.com") == "example.com"
