"""CLI fixtures: a real gunicorn on the test database, and ``slipway`` as a subprocess.

The CLI runs as ``python -m slipway_cli`` from this checkout, with its own HOME and
XDG_CONFIG_HOME under the test's tmp_path, so it never reads or writes the user's login.
The server is tests/browser's ``start_server`` (gunicorn as in production); rows are made
with the factories, committed, and the session is closed before the CLI talks to it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.extensions import db
from tests.api.conftest import make_key
from tests.browser.conftest import ROOT, start_server
from tests.factories import make_user, team_of

CLI_TIMEOUT = 60


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self):
        return json.loads(self.out)


class Cli:
    """``slipway ...`` in a subprocess, with a home of its own."""

    def __init__(self, home: Path, url: str | None = None):
        self.home, self.url = home, url
        self.config_dir = home / ".config" / "slipway"

    def env(self, extra: dict | None = None) -> dict:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env |= {"HOME": str(self.home), "XDG_CONFIG_HOME": str(self.home / ".config"),
                "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}  # fmt: skip
        return env | (extra or {})

    def popen(self, *args: str, env: dict | None = None, **kw) -> subprocess.Popen:
        return subprocess.Popen(
            [sys.executable, "-m", "slipway_cli", *args], cwd=ROOT, env=self.env(env),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw,
        )  # fmt: skip

    def __call__(self, *args: str, input: str | None = None, env: dict | None = None,
                 timeout: float = CLI_TIMEOUT) -> Run:  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "slipway_cli", *args], cwd=ROOT, env=self.env(env),
            input=input, capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip
        return Run(done.returncode, done.stdout, done.stderr)

    def login(self, token: str) -> Run:
        done = self("login", "--url", self.url, "--token", token)
        assert done.code == 0, done
        return done


@pytest.fixture(scope="session")
def api_server(base_config, tmp_path_factory):
    """gunicorn on the test database and Redis, shared by the CLI tests."""
    started = start_server(base_config, tmp_path_factory.mktemp("slipway-cli-server"))
    yield started
    started.stop()


@pytest.fixture
def cli(app, api_server, tmp_path) -> Cli:
    assert api_server.process.poll() is None, f"the server died:\n{api_server.log_tail()}"
    home = tmp_path / "home"
    home.mkdir()
    return Cli(home, api_server.url)


@dataclass
class Member:
    user_id: int
    team_id: int
    token: str


def member(scopes=("admin",), team=None) -> Member:
    """An owner and a key of theirs; the session closed (the server writes next)."""
    user = make_user(team=team)
    _, token = make_key(user, team, scopes)
    found = Member(user.id, team_of(user).id, token)
    db.session.close()
    return found


@pytest.fixture
def logged_in(cli) -> tuple[Cli, Member]:
    """A CLI logged in with an admin key of a team owner."""
    owner = member()
    cli.login(owner.token)
    return cli, owner


class LossyProxy:
    """A TCP relay in front of the real server that loses the answers of the first
    ``drops`` POSTs: the server acted, the client never hears of it (a dropped
    connection), as on a bad network."""

    def __init__(self, upstream_port: int, drops: int = 1):
        self.upstream_port, self.drops, self.seen = upstream_port, drops, []
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                client, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket):
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            request = _read_request(client)
            self.seen.append(request.split(b" ", 2)[:2])
            upstream.sendall(request)
            answer = b""
            while chunk := upstream.recv(65536):
                answer += chunk
            if request.startswith(b"POST ") and self.drops > 0:
                self.drops -= 1
                return  # the answer is lost
            client.sendall(answer)

    def close(self):
        self.sock.close()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body
