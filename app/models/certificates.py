"""TLS certificates Slipway holds for app domains and its own host, and its ACME account.

One :class:`Certificate` row per certificate: the host names it covers (a domain's
www twin always among them), where it is in its life, and the key, encrypted with
``app.crypto`` like every other secret. ``source`` is ``acme`` (ordered and renewed by
Slipway) or ``uploaded`` (a user's own; watched for expiry, never renewed).

States of an ACME certificate::

    pending_dns → issuing → active → renewing → active …
         ↘           ↘                  ↘
                   failed (next_attempt_at) → pending_dns / issuing again
"""

from __future__ import annotations

import enum
import json
from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.models.base import Base, Timestamped, UTCDateTime


class CertState(enum.StrEnum):
    pending_dns = "pending_dns"  # the preflight has not passed: no ACME order yet
    issuing = "issuing"  # an order is under way
    active = "active"  # served by Traefik
    renewing = "renewing"  # active, and a renewal order is under way
    failed = "failed"  # the last attempt failed; next_attempt_at says when the next is


class CertSource(enum.StrEnum):
    acme = "acme"
    uploaded = "uploaded"


class Certificate(Timestamped, Base):
    __tablename__ = "certificates"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    # NULL for the dashboard's own host (SLIPWAY_PUBLIC_URL).
    application_id: Mapped[int | None] = mapped_column(
        ForeignKey("applications.id", ondelete="CASCADE"), index=True
    )
    # JSON list of host names (punycode), the first one the certificate's subject.
    hosts_json: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), default=CertSource.acme.value)
    state: Mapped[str] = mapped_column(String(20), default=CertState.pending_dns.value)
    issuer: Mapped[str | None] = mapped_column(String(255))
    not_before: Mapped[datetime | None] = mapped_column(UTCDateTime)
    not_after: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The full chain (leaf first), PEM; public.
    chain_pem: Mapped[str | None] = mapped_column(Text)
    # The private key, PEM, as a ciphertext (app.crypto, context "certificate_key").
    key_ciphertext: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # What the last preflight saw, JSON (which check failed and what it found).
    preflight_json: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # failed in a row
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    renew_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # Days-before-expiry warnings already sent for this not_after (JSON list, e.g. [21]).
    warned_json: Mapped[str | None] = mapped_column(Text)

    application = relationship("Application")

    @property
    def hosts(self) -> list[str]:
        return json.loads(self.hosts_json or "[]")

    @hosts.setter
    def hosts(self, value: list[str]) -> None:
        self.hosts_json = json.dumps(list(value))


class AcmeAccount(Timestamped, Base):
    """The installation's account at one ACME directory; made once, reused."""

    __tablename__ = "acme_accounts"
    __table_args__ = {"sqlite_autoincrement": True}

    id: Mapped[int] = mapped_column(primary_key=True)
    directory_url: Mapped[str] = mapped_column(String(1000), unique=True)
    # The account's JWK private key, JSON, as a ciphertext (context "acme_account_key").
    key_ciphertext: Mapped[str] = mapped_column(Text)
    # The account URL the CA gave it (the "kid" of later requests).
    account_url: Mapped[str | None] = mapped_column(String(1000))
    email: Mapped[str | None] = mapped_column(String(255))
