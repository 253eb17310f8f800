"""Talking to OpenID Connect providers: discovery, the code exchange, the id token's checks.

The one module that opens connections to identity providers (``app.accounts.sso`` holds
the domain rules). Every URL a provider names goes through the house's outbound rules
(``app.outbound``): https only, no internal address unless an admin allow-listed the host
(``SLIPWAY_OUTBOUND_ALLOWED_HOSTS``; the tests list 127.0.0.1 for their provider on
loopback), checked again at each use; redirects are not followed. authlib, joserfc and
requests are imported inside the functions, so the web process does not load them until
someone signs in.
"""

from __future__ import annotations

import hmac
import json
from typing import Any

from app import names, outbound

DISCOVERY_SUFFIX = "/.well-known/openid-configuration"
TIMEOUT = 10  # seconds, per request to the provider
MAX_DOCUMENT = 1024 * 1024  # a discovery document or key set larger than this is refused
SCOPE = "openid email profile"
# Signature algorithms an id token may use: public-key ones only. "none" and the HMAC
# ones (keyed with the client secret, which the owner typed into Slipway) never.
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")  # fmt: skip
ENDPOINTS = ("authorization_endpoint", "token_endpoint", "jwks_uri")
LEEWAY = 60  # seconds of clock skew allowed on exp and iat


class ProviderError(Exception):
    """The provider could not be reached or answered something unusable; says what."""


class TokenRefused(Exception):
    """The id token failed a check. ``reason`` is a short code for the audit log."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def discovery_url(value: str) -> str:
    """The discovery URL for what the owner typed: the issuer itself, or its document."""
    value = (value or "").strip()
    if value and not value.endswith(DISCOVERY_SUFFIX):
        value = value.rstrip("/") + DISCOVERY_SUFFIX
    return value


def check_url(url: str, what: str) -> str:
    """Refuse ``url`` unless it is https to a public host, or a host the admin allowed.

    Raises ``names.InvalidValue`` (``outbound.HostRefused`` for a name that resolves
    internally now)."""
    allowed = outbound.allowed_hosts()
    names.public_url(url, allowed, what)
    outbound.check_host(names.url_host(url), allowed)
    return url


def _get_json(url: str, what: str) -> dict[str, Any]:
    import requests

    try:
        check_url(url, what)
        with requests.get(
            url, timeout=TIMEOUT, allow_redirects=False, stream=True,
            headers={"Accept": "application/json"},
        ) as response:  # fmt: skip
            body = response.raw.read(MAX_DOCUMENT + 1, decode_content=True)
            status = response.status_code
    except names.InvalidValue as exc:
        raise ProviderError(str(exc)) from None
    except requests.RequestException as exc:
        raise ProviderError(f"The {what} could not be fetched ({type(exc).__name__}).") from None
    if status != 200:
        raise ProviderError(f"The {what} answered HTTP {status}.")
    if len(body) > MAX_DOCUMENT:
        raise ProviderError(f"The {what} is larger than {MAX_DOCUMENT // 1024} KiB.")
    try:
        document = json.loads(body)
    except ValueError:
        raise ProviderError(f"The {what} is not JSON.") from None
    if not isinstance(document, dict):
        raise ProviderError(f"The {what} is not a JSON object.")
    return document


def fetch_discovery(url: str) -> dict[str, Any]:
    """The provider's discovery document, checked: an issuer that is the URL's own prefix
    (OpenID Connect Discovery 4.3, so a document cannot speak for another issuer), and
    authorization, token and key set endpoints that pass the outbound rules."""
    document = _get_json(url, "discovery URL")
    issuer = document.get("issuer")
    if not isinstance(issuer, str) or not issuer:
        raise ProviderError("The discovery document names no issuer.")
    if issuer.rstrip("/") + DISCOVERY_SUFFIX != url:
        raise ProviderError(
            f"The discovery document's issuer ({issuer[:200]}) is not the URL it was fetched from."
        )
    for key in ENDPOINTS:
        value = document.get(key)
        if not isinstance(value, str) or not value:
            raise ProviderError(f"The discovery document has no {key}.")
        try:
            check_url(value, key)
        except names.InvalidValue as exc:
            raise ProviderError(f"{key}: {exc}") from None
    return document


def authorization_url(
    metadata: dict, *, client_id: str, redirect_uri: str, state: str, nonce: str, verifier: str
) -> str:
    """Where to send the browser: the code flow with PKCE (S256), state and nonce."""
    from authlib.integrations.requests_client import OAuth2Session

    client = OAuth2Session(
        client_id, scope=SCOPE, redirect_uri=redirect_uri, code_challenge_method="S256"
    )
    url, _ = client.create_authorization_url(
        metadata["authorization_endpoint"], state=state, nonce=nonce, code_verifier=verifier
    )
    return url


def exchange_code(
    metadata: dict, *, client_id: str, client_secret: str, redirect_uri: str, code: str,
    verifier: str,
) -> dict[str, Any]:  # fmt: skip
    """Trade the authorization code (and the PKCE verifier) for tokens at the token endpoint.

    Raises :class:`ProviderError` when the provider refuses the code (used already,
    expired, for another client) or cannot be reached."""
    import requests
    from authlib.integrations.base_client.errors import OAuthError
    from authlib.integrations.requests_client import OAuth2Session

    endpoint = metadata["token_endpoint"]
    try:
        check_url(endpoint, "token endpoint")
        with OAuth2Session(client_id, client_secret, redirect_uri=redirect_uri) as client:
            token = client.fetch_token(
                endpoint, grant_type="authorization_code", code=code, code_verifier=verifier,
                timeout=TIMEOUT, allow_redirects=False,
            )  # fmt: skip
    except names.InvalidValue as exc:
        raise ProviderError(str(exc)) from None
    except OAuthError as exc:
        raise ProviderError(f"The provider refused the code ({exc.error}).") from None
    except (requests.RequestException, ValueError) as exc:
        raise ProviderError(f"The token endpoint failed ({type(exc).__name__}).") from None
    if not isinstance(token, dict) or not isinstance(token.get("id_token"), str):
        raise ProviderError("The provider's answer has no id token.")
    return dict(token)


def _audiences(claims: dict) -> list:
    aud = claims.get("aud")
    return [aud] if isinstance(aud, str) else list(aud) if isinstance(aud, list) else []


def validate_id_token(
    metadata: dict, id_token: str, *, client_id: str, nonce: str, access_token: str | None
) -> dict[str, Any]:
    """The id token's claims, once every check passed (else :class:`TokenRefused`):

    the signature against the provider's key set (public-key algorithms only), ``iss``
    equal to the discovery document's issuer, ``aud`` containing our client id (and
    ``azp`` equal to it when there are several audiences), ``exp`` in the future and
    ``iat`` present (60 s of clock skew), ``nonce`` equal to the one this flow sent, and
    ``at_hash`` if present."""
    from authlib.oidc.core import CodeIDToken
    from joserfc import jwt
    from joserfc.errors import ExpiredTokenError, InvalidClaimError, JoseError
    from joserfc.errors import MissingClaimError as Missing
    from joserfc.jwk import KeySet
    from joserfc.jws import JWSRegistry

    offered = metadata.get("id_token_signing_alg_values_supported") or ["RS256"]
    algorithms = [alg for alg in offered if alg in ASYMMETRIC]
    if not algorithms:
        raise TokenRefused("id_token_algorithm", "The provider signs with no accepted algorithm.")
    try:
        keys = KeySet.import_key_set(_get_json(metadata["jwks_uri"], "key set"))
    except (ProviderError, JoseError, ValueError, TypeError, KeyError) as exc:
        raise TokenRefused("jwks_unusable", f"The provider's key set is unusable: {exc}") from None
    try:
        token = jwt.decode(id_token, keys, registry=JWSRegistry(algorithms=algorithms))
    except (JoseError, ValueError) as exc:
        raise TokenRefused("id_token_signature", "The id token's signature does not verify.") from (
            exc
        )
    claims = CodeIDToken(
        token.claims, token.header,
        {"iss": {"essential": True, "value": metadata["issuer"]},
         "aud": {"essential": True, "value": client_id}},
        {"nonce": nonce, "client_id": client_id, "access_token": access_token},
    )  # fmt: skip
    try:
        claims.validate(leeway=LEEWAY)
    except ExpiredTokenError:
        raise TokenRefused("id_token_expired", "The id token has expired.") from None
    except (InvalidClaimError, Missing) as exc:
        claim = (exc.description or "").split("'")[1] if "'" in (exc.description or "") else ""
        raise TokenRefused(
            f"id_token_{claim or 'claims'}", f"The id token's {claim or 'claims'} did not pass."
        ) from None
    except JoseError:
        raise TokenRefused("id_token_claims", "The id token's claims did not pass.") from None
    # Said again in plain code, because these are the checks that matter most.
    if client_id not in _audiences(claims):
        raise TokenRefused("id_token_aud", "The id token was issued to another client.")
    if len(_audiences(claims)) > 1 and claims.get("azp") != client_id:
        raise TokenRefused("id_token_azp", "The id token was issued to another client.")
    if not hmac.compare_digest(str(claims.get("nonce", "")).encode(), nonce.encode()):
        raise TokenRefused("id_token_nonce", "The id token's nonce is not this sign-in's.")
    if claims.get("iss") != metadata["issuer"]:
        raise TokenRefused("id_token_iss", "The id token comes from another issuer.")
    return dict(claims)
