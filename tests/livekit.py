"""Websocket test kit: a real threaded HTTP server, a real websocket client.

The server is Werkzeug's threaded WSGI server on a free loopback port, serving the
test's own app (same database and Redis), in a thread. Clients log in through the
real login form with ``requests`` and open sockets with ``simple_websocket``'s
client, sending the session cookie and an ``Origin`` as a browser would.
"""

from __future__ import annotations

import json
import re
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass

import requests
from simple_websocket import Client, ConnectionClosed
from werkzeug.serving import make_server

from tests.factories import PASSWORD


class BrowserLikeClient(Client):
    """simple_websocket's client sends ``Host`` without the port; browsers include it."""

    def handshake(self):
        if self.port not in (80, 443):
            self.host = f"{self.host}:{self.port}"
        super().handshake()


@dataclass
class LiveServer:
    url: str

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[len("http") :]

    def login(self, email: str, password: str = PASSWORD) -> requests.Session:
        """A browser-like session logged in through the real form."""
        session = requests.Session()
        page = session.get(self.url + "/login", timeout=10).text
        token = re.search(r'name="csrf-token" content="([^"]+)"', page).group(1)
        answer = session.post(
            self.url + "/login",
            data={"csrf_token": token, "email": email, "password": password},
            allow_redirects=False,
            timeout=10,
        )
        assert answer.status_code == 303, answer.text
        return session

    def connect(self, path: str, session: requests.Session | None = None, origin="same"):
        """Open a websocket; raises ``ConnectionError(status)`` if the handshake is refused."""
        headers = {}
        if session is not None:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in session.cookies.items())
        if origin == "same":
            headers["Origin"] = self.url
        elif origin:
            headers["Origin"] = origin
        return BrowserLikeClient.connect(self.ws_url + path, headers=headers)


@contextmanager
def serving(app):
    """The test's app behind a real threaded server; sockets re-check access quickly."""
    app.config["WS_RECHECK_SECONDS"] = 0.5
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LiveServer(f"http://127.0.0.1:{server.server_port}")
    finally:
        server.shutdown()
        server.server_close()
        time.sleep(0.3)  # let socket handlers notice their clients are gone


@dataclass
class Received:
    frames: list[dict]
    close_code: int | None
    close_message: str | None

    def lines(self) -> list[dict]:
        return [line for f in self.frames if f["type"] == "lines" for line in f["lines"]]

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.frames if f["type"] == kind]


def receive(ws: Client, timeout: float = 10, until=None) -> Received:
    """Frames until the server closes the socket, ``until(frames)`` is true, or timeout."""
    frames: list[dict] = []
    deadline = time.monotonic() + timeout
    code = message = None
    while time.monotonic() < deadline:
        try:
            data = ws.receive(timeout=0.2)
        except ConnectionClosed as closed:
            code, message = closed.reason, closed.message
            break
        if data is None:
            if not ws.connected:
                code, message = ws.close_reason, ws.close_message
                break
            continue
        frames.append(json.loads(data))
        if until is not None and until(frames):
            break
    return Received(frames, code, message)


def close(ws: Client) -> None:
    try:
        ws.close()
    except ConnectionClosed:
        pass
