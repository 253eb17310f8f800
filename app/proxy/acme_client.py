"""The ACME protocol (RFC 8555), with certbot's ``acme`` library: the one module that
talks to the certificate authority.

The installation has one account per directory URL (:class:`AcmeAccount`): its key is
an ECDSA P-256 JWK made once and stored encrypted (``app.crypto``, context
``acme_account_key``). Each order asks ``newAccount`` again with that key (the CA
answers with the existing account, or makes it anew if it forgot it, e.g. a test CA
restarted), agreeing to the terms of service, with ``SLIPWAY_ACME_EMAIL`` as contact
when set.

An order gets a fresh ECDSA P-256 key and CSR; each authorization is answered with
HTTP-01: the key authorization goes to Redis (``challenges.put_acme``) where every web
process serves it on ``/.well-known/acme-challenge/<token>``, and is dropped when the
order ends, whatever the outcome. Polling and finalizing stop at a deadline.

The directory URL is an admin setting, not user input, so it is not put through the
SSRF guard; every request has a timeout, and TLS to the CA is verified against
``SLIPWAY_ACME_CA_BUNDLE`` when set, else the system's store. Host names pass
``names.hostname`` here again: nothing a user typed reaches the CA unchecked.
"""

from __future__ import annotations

import datetime
import logging
from dataclasses import dataclass

import josepy as jose
import requests
from acme import challenges as acme_challenges
from acme import client as acme_lib
from acme import crypto_util, errors, messages
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from flask import current_app
from sqlalchemy import select

from app import crypto, names
from app.extensions import db
from app.models.certificates import AcmeAccount
from app.proxy import challenges

log = logging.getLogger("slipway.acme")
ACCOUNT_CONTEXT = "acme_account_key"
NETWORK_TIMEOUT = 20  # seconds per request to the CA
ORDER_SECONDS = 120  # polling the authorizations and the finalization, in all
USER_AGENT = "Slipway"


class AcmeError(Exception):
    """An order could not be completed; ``reason`` says why in words. ``ordered`` is
    True once the CA holds an order (a failure then counts against its rate limits)."""

    def __init__(self, reason: str, *, ordered: bool):
        super().__init__(reason)
        self.reason = reason
        self.ordered = ordered


@dataclass(frozen=True)
class Issued:
    fullchain_pem: str
    key_pem: str


def _verify() -> str | bool:
    return current_app.config.get("ACME_CA_BUNDLE") or True


def _directory_url() -> str:
    return current_app.config["ACME_DIRECTORY"]


def _new_key_pem() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _account_row() -> tuple[AcmeAccount, jose.JWK]:
    """The installation's account row for the configured directory, made on first use."""
    url = _directory_url()
    row = db.session.scalar(select(AcmeAccount).where(AcmeAccount.directory_url == url))
    if row is None:
        jwk = jose.JWKEC(key=ec.generate_private_key(ec.SECP256R1()))
        row = AcmeAccount(
            directory_url=url,
            key_ciphertext=crypto.encrypt(jwk.json_dumps(), context=ACCOUNT_CONTEXT),
        )
        db.session.add(row)
        db.session.commit()
        return row, jwk
    plain = crypto.decrypt_stored(
        row.key_ciphertext, context=ACCOUNT_CONTEXT, what="the ACME account key",
        remedy="delete the ACME account row so that a new account is made",
    )  # fmt: skip
    return row, jose.JWK.json_loads(plain)


def _client() -> acme_lib.ClientV2:
    row, jwk = _account_row()
    net = acme_lib.ClientNetwork(
        jwk, alg=jose.ES256, verify_ssl=_verify(), user_agent=USER_AGENT, timeout=NETWORK_TIMEOUT
    )
    directory = acme_lib.ClientV2.get_directory(_directory_url(), net)
    client = acme_lib.ClientV2(directory, net)
    email = current_app.config.get("ACME_EMAIL") or None
    registration = messages.NewRegistration.from_data(email=email, terms_of_service_agreed=True)
    try:
        regr = client.new_account(registration)
    except errors.ConflictError as exc:  # the key's account exists: use it
        regr = messages.RegistrationResource(uri=exc.location, body=messages.Registration())
        net.account = regr
    if row.account_url != regr.uri or row.email != email:
        row.account_url, row.email = regr.uri, email
        db.session.commit()
    return client


def _http01(authzr: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challb in authzr.body.challenges:
        if isinstance(challb.chall, acme_challenges.HTTP01):
            return challb
    host = authzr.body.identifier.value
    raise AcmeError(f"the CA offers no HTTP-01 challenge for {host}", ordered=True)


def order(hosts: list[str], seconds: float = ORDER_SECONDS) -> Issued:
    """Order a certificate for ``hosts`` (the first is the subject); raises
    :class:`AcmeError` with the reason in words."""
    try:
        checked = [names.hostname(h) for h in hosts]
    except names.InvalidValue as exc:
        raise AcmeError(f"not ordering: {exc}", ordered=False) from None
    if not checked:
        raise AcmeError("not ordering: no host name", ordered=False)
    key_pem = _new_key_pem()
    csr_pem = crypto_util.make_csr(key_pem, checked)
    ordered = False
    tokens: list[str] = []
    try:
        client = _client()
        orderr = client.new_order(csr_pem)
        ordered = True
        for authzr in orderr.authorizations:
            if authzr.body.status == messages.STATUS_VALID:
                continue  # the CA reused an authorization it already holds
            challb = _http01(authzr)
            response, validation = challb.response_and_validation(client.net.key)
            token = challb.chall.encode("token")
            challenges.put_acme(token, validation, host=authzr.body.identifier.value)
            tokens.append(token)
            client.answer_challenge(challb, response)
        # The acme library compares its deadline with naive local time.
        deadline = datetime.datetime.now() + datetime.timedelta(seconds=seconds)
        done = client.poll_and_finalize(orderr, deadline)
    except AcmeError:
        raise
    except Exception as exc:  # noqa: BLE001 - every failure becomes a reason in words
        raise AcmeError(reason(exc), ordered=ordered) from exc
    finally:
        for token in tokens:
            challenges.drop_acme(token)
    return Issued(fullchain_pem=done.fullchain_pem, key_pem=key_pem.decode())


def _problem(error: messages.Error) -> str:
    text = f"{error.typ}: {error.detail}" if error.detail else error.typ
    subs = [_problem(sub) for sub in (error.subproblems or ())]
    return text + (f" ({'; '.join(subs)})" if subs else "")


def _validation(exc: errors.ValidationError) -> str:
    parts = []
    for authzr in exc.failed_authzrs:
        for challb in authzr.body.challenges:
            if challb.error is not None:
                parts.append(f"{authzr.body.identifier.value}: {_problem(challb.error)}")
    return "; ".join(parts) or "the CA refused the authorization"


def reason(exc: BaseException) -> str:
    """A failure of the ACME exchange as a sentence a person can act on."""
    if isinstance(exc, messages.Error):
        return _problem(exc)
    if isinstance(exc, errors.ValidationError):
        return _validation(exc)
    if isinstance(exc, errors.IssuanceError):
        return _problem(exc.error)
    if isinstance(exc, errors.TimeoutError):
        return "the CA did not finish the order in time"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"the ACME server's TLS certificate is not trusted: {exc}"
    if isinstance(exc, requests.exceptions.Timeout):
        return "the ACME server did not answer in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        return f"the ACME server is not reachable: {exc}"
    if isinstance(exc, crypto.SecretError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
