"""Browser fixtures: a real gunicorn server, Debian's Chromium, a page per test.

One Chromium runs for the whole session; each test gets a new browser context
(no cookies carried over). The shared server serves every test that creates its
owner account through the factories; the first-run test gets a server of its
own, because a process remembers once it has seen an installation.

Each test depends on the ``app`` fixture of ``tests/conftest.py``: it empties
the tables and Redis after the test, so the next one starts from nothing.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, Page, expect, sync_playwright

from app.extensions import db
from tests.conftest import TEST_KEY
from tests.factories import PASSWORD, make_app, make_project, make_user, team_of

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TIMEOUT_MS = 10_000
expect.set_options(timeout=5_000)
SERVER_START_TIMEOUT = 30
SHOTS = Path("/tmp/slipway-shots")

# Known app bugs, tolerated by every test. When one is fixed, delete its entry.
# Console noise from known, not yet fixed app bugs: name → matcher(kind, text, url).
KNOWN_BUGS: dict = {}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    url: str
    process: subprocess.Popen
    log: Path

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def server_env(base_config: dict, data_dir: Path, extra_env: dict | None = None) -> dict:
    """The environment of a test server (and of a worker process that goes with it)."""
    # Only the settings below: a SLIPWAY_* of the caller's shell (say a PUBLIC_URL
    # with https, which makes the session cookie Secure) must not leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
    env.update(
        {
            "SLIPWAY_DATA_DIR": str(data_dir),
            "SLIPWAY_DATABASE_URL": base_config["SQLALCHEMY_DATABASE_URI"],
            "SLIPWAY_REDIS_URL": base_config["REDIS_URL"],
            "SLIPWAY_SECRET_KEY": "browser-test-secret-key",
            "SLIPWAY_ENCRYPTION_KEYS": TEST_KEY,
            # No Docker engine in tests: a socket that does not exist fails fast.
            "SLIPWAY_DOCKER_HOST": f"unix://{data_dir}/no-docker.sock",
        }
        | (extra_env or {})
    )
    return env


def start_server(
    base_config: dict, data_dir: Path, extra_env: dict | None = None, port: int | None = None
) -> Server:
    """gunicorn as in production (gthread), on the test database and Redis.

    ``extra_env`` overrides settings, e.g. a real ``SLIPWAY_DOCKER_HOST`` for pages
    that read container logs. ``port``: a port chosen beforehand (a setting that names
    the server's own address, such as ``SLIPWAY_WEB_UPSTREAM``); a free one by default.
    """
    port = port or _free_port()
    env = server_env(base_config, data_dir, extra_env)
    log = data_dir / "gunicorn.log"
    command = [
        str(ROOT / ".venv" / "bin" / "gunicorn"),
        "-k",
        "gthread",
        "--workers",
        "1",
        "--threads",
        "8",
        "-b",
        f"127.0.0.1:{port}",
        "--access-logfile",
        "-",
        "--no-control-socket",  # gunicorn 27 shares one per user by default
        "wsgi:app",
    ]
    with log.open("ab") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=out)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited ({process.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.url + "/healthz", timeout=2) as response:
                if response.status == 200:
                    return server
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"gunicorn did not answer /healthz:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def server(base_config, tmp_path_factory):
    """The shared server."""
    started = start_server(base_config, tmp_path_factory.mktemp("slipway-server"))
    yield started
    started.stop()


@pytest.fixture
def fresh_server(base_config, tmp_path_factory, app):
    """A server of its own, which has never seen an installation (first run)."""
    started = start_server(base_config, tmp_path_factory.mktemp("slipway-fresh"))
    yield started
    started.stop()


@pytest.fixture(scope="session")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"{CHROMIUM} is not installed: make test installs it (apt-get install chromium)"
        )
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS, timeout=TIMEOUT_MS * 3
        )
        yield chromium
        chromium.close()


@dataclass
class Console:
    """Everything the page said on its console, and every uncaught exception."""

    messages: list[tuple[str, str, str]] = field(default_factory=list)  # kind, text, url
    page_errors: list[str] = field(default_factory=list)

    def _known(self, kind: str, text: str, url: str, include: tuple[str, ...]) -> bool:
        return any(
            name not in include and matches(kind, text, url) for name, matches in KNOWN_BUGS.items()
        )

    def errors(self, allow_status: tuple[int, ...] = (), include_known=()) -> list[str]:
        """Console errors and page errors; an expected HTTP error status may be allowed."""
        allowed = [f"status of {status} " for status in allow_status]
        return [
            f"{text} ({url})"
            for kind, text, url in self.messages
            if kind == "error"
            and not any(a in text for a in allowed)
            and not self._known(kind, text, url, include_known)
        ] + self.page_errors

    def csp_violations(self, include_known=()) -> list[str]:
        return [
            f"{text} ({url})"
            for kind, text, url in self.messages
            if "Content Security Policy" in text and not self._known(kind, text, url, include_known)
        ]


@pytest.fixture
def open_page(browser: Browser, app, request):
    """Open a page on a server in a new context; its console is in ``page.console``.

    Whatever the test, a CSP violation or an uncaught script error fails it.
    """
    contexts = []
    pages: list[Page] = []

    def opener(server: Server) -> Page:
        context = browser.new_context(base_url=server.url, viewport={"width": 1280, "height": 900})
        context.set_default_timeout(TIMEOUT_MS)
        context.set_default_navigation_timeout(TIMEOUT_MS)
        contexts.append(context)
        page = context.new_page()
        console = Console()

        def on_console(message: ConsoleMessage) -> None:
            console.messages.append((message.type, message.text, message.location.get("url", "")))

        page.on("console", on_console)
        page.on("pageerror", lambda exc: console.page_errors.append(str(exc)))
        page.console = console
        pages.append(page)
        return page

    yield opener
    failed = getattr(request.node, "rep_call", None)
    try:
        for index, page in enumerate(pages):
            if failed is not None and failed.failed and not page.is_closed():
                SHOTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=SHOTS / f"FAILED-{request.node.name}-{index}.png")
        problems = [p for page in pages for p in page.console.csp_violations()]
        problems += [p for page in pages for p in page.console.page_errors]
    finally:
        for context in contexts:
            context.close()
    if failed is not None and failed.passed:
        assert not problems, f"CSP violations or script errors: {problems}"


@pytest.fixture
def page(open_page, server) -> Page:
    """A page on the shared server."""
    assert server.process.poll() is None, f"the server has died:\n{server.log_tail()}"
    return open_page(server)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


# ---- helpers ----------------------------------------------------------------


def shot(page: Page, name: str) -> Path:
    """A full-page screenshot in /tmp/slipway-shots/<name>.png."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True)
    return path


def log_in(page: Page, email: str, password: str = PASSWORD) -> None:
    """Log in through the login form; ends on the page after login."""
    page.goto("/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    with page.expect_navigation():
        page.get_by_role("button", name="Log in").click()
    expect(page).not_to_have_url(re.compile(r"/login\b"))


@dataclass
class Seeded:
    email: str
    project_id: int | None
    app_ids: dict[str, int]


def seed(project: str | None = None, apps: tuple[str, ...] = ()) -> Seeded:
    """An owner (with the installation), optionally a project and git apps in it.

    Returns plain values and closes the test's database session: a transaction
    left open (idle) while the browser drives the server holds locks that a
    concurrent ``DROP SCHEMA`` queues behind, and the server's queries behind that.
    """
    owner = make_user()
    seeded = Seeded(owner.email, None, {})
    if project:
        made = make_project(team_of(owner), project)
        seeded.project_id = made.id
        for name in apps:
            seeded.app_ids[name] = make_app(made, name).id
    db.session.close()
    return seeded
