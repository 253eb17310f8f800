"""A real OpenID Connect provider on loopback for the single sign-on tests: oidc-provider-mock
(PyPI), a Flask app built on authlib's server, run by werkzeug in a thread on 127.0.0.1.

It signs RS256 id tokens with its own key, serves discovery and a key set, and lets a
test choose each user's claims (``set_user``). It takes any client id and secret.
``issue_to`` makes it act as a hostile or confused provider would: the codes and tokens
it issues are for another client id than the one Slipway asked with (the id token's
``aud`` then names that other client).
"""

from __future__ import annotations

import base64
import logging
import threading
from urllib.parse import parse_qsl, urlencode

import requests


class MockProvider:
    def __init__(self) -> None:
        import oidc_provider_mock
        from werkzeug.serving import make_server

        logging.getLogger("oidc_provider_mock").setLevel(logging.ERROR)
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self.flask_app = oidc_provider_mock.app(require_nonce=True)
        self.issue_to: str | None = None
        self.server = make_server("127.0.0.1", 0, self._wsgi, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.discovery_url = self.url + "/.well-known/openid-configuration"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def _wsgi(self, environ, start_response):
        if self.issue_to:
            path = environ.get("PATH_INFO", "")
            if path == "/oauth2/authorize":
                query = [
                    (k, self.issue_to if k == "client_id" else v)
                    for k, v in parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True)
                ]
                environ["QUERY_STRING"] = urlencode(query)
            elif path == "/oauth2/token":
                basic = base64.b64encode(f"{self.issue_to}:any-secret".encode()).decode()
                environ["HTTP_AUTHORIZATION"] = f"Basic {basic}"
        return self.flask_app(environ, start_response)

    def set_user(self, sub: str, **claims) -> None:
        """The claims the provider will assert for ``sub`` from now on."""
        response = requests.put(f"{self.url}/users/{sub}", json=claims, timeout=5)
        assert response.status_code == 204, response.text

    def authorize(self, authorize_url: str, sub: str) -> str:
        """Sign ``sub`` in on the provider's page (what its form posts); returns the redirect
        back to Slipway's callback, with the code and the state."""
        page = requests.get(authorize_url, timeout=5)
        assert page.status_code == 200, page.text
        answer = requests.post(authorize_url, data={"sub": sub}, allow_redirects=False, timeout=5)
        assert answer.status_code == 302, answer.text
        return answer.headers["Location"]

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
