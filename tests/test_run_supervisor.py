"""``scripts/run.py`` (``make run``): the whole group starts, serves, and stops together.

Real processes: the embedded Redis, gunicorn, the RQ worker and the scheduler, on a
temporary data directory (embedded SQLite, migrated by the script itself) and a
free loopback port. Nothing is installed: the script runs with this venv's Python.
"""

from __future__ import annotations

import http.client
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

# Embedded SQLite and Redis whatever the run: once per make test.
pytestmark = pytest.mark.once

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "scripts" / "run.py"
START_TIMEOUT = 120  # seconds: migrations, Redis, gunicorn and two app imports
STOP_TIMEOUT = 15

# Follows the process tree through /proc: Linux only, like Slipway itself.


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state first), or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return raw[raw.rindex(b")") + 2 :].decode().split()


def _ppid(pid: int) -> int | None:
    fields = _stat(pid)
    return int(fields[1]) if fields else None


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def process_tree(root: int) -> dict[tuple[int, str], str]:
    """Every process below ``root``: {(pid, start time): command line}."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))):
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    tree: dict[tuple[int, str], str] = {}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            fields = _stat(pid)
            if fields:
                tree[(pid, fields[19])] = _cmdline(pid)
                todo.append(pid)
    return tree


def alive(pid: int, started: str) -> bool:
    """The same process (not a reused pid) still exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[19] == started and fields[0] != "Z"


class RunningSupervisor:
    """``scripts/run.py`` as a subprocess, its output collected line by line."""

    def __init__(self, data_dir: Path, port: int):
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env.update(
            SLIPWAY_DATA_DIR=str(data_dir),
            SLIPWAY_LISTEN=f"127.0.0.1:{port}",
            SLIPWAY_HTTP_PORT=str(free_port()),
            SLIPWAY_HTTPS_PORT=str(free_port()),
            SLIPWAY_PROXY_API_PORT=str(free_port()),
            PYTHONUNBUFFERED="1",
            SLIPWAY_ADOPT_UNLABELLED="0",  # the engine's unlabelled objects are not ours
        )
        # SLIPWAY_DATABASE_URL and SLIPWAY_REDIS_URL stay unset: embedded SQLite and Redis.
        self.proc = subprocess.Popen(
            [sys.executable, str(RUN)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,  # its own group: our SIGINT plays the terminal's Ctrl-C
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        self.seen: dict[tuple[int, str], str] = {}

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for_line(self, pattern: str, timeout: float) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.5)
            except queue.Empty:
                assert self.proc.poll() is None, f"run.py exited early:\n{self.output}"
                continue
            if found := re.search(pattern, line):
                return found
        raise AssertionError(f"no line matching {pattern!r} in {timeout} s:\n{self.output}")

    def children(self, timeout: float = 20) -> dict[str, list[int]]:
        """Wait until every kind of process in KINDS runs below run.py: {kind: pids}."""
        deadline = time.monotonic() + timeout
        while True:
            tree = process_tree(self.proc.pid)
            self.seen.update(tree)
            found = {
                kind: [pid for (pid, _), cmd in tree.items() if re.search(regex, cmd)]
                for kind, (regex, _) in KINDS.items()
            }
            complete = all(len(found[kind]) >= least for kind, (_, least) in KINDS.items())
            if complete or time.monotonic() > deadline:
                return found
            time.sleep(0.2)

    def wait_exit(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"run.py still running {timeout} s later:\n{self.output}"
            ) from None

    def survivors(self, timeout: float) -> dict[int, str]:
        """Processes seen below run.py that are still alive after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            left = {pid: cmd for (pid, start), cmd in self.seen.items() if alive(pid, start)}
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.1)

    def kill_everything(self) -> None:
        if self.proc.poll() is None:
            self.seen.update(process_tree(self.proc.pid))
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for (pid, start), _cmd in self.seen.items():
            if alive(pid, start):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


# kind: (command-line regex, how many processes at least)
KINDS = {
    "redis": (r"redis-server", 1),
    "proxy": (r"traefik --configFile=", 1),
    "web": (r"gunicorn .*wsgi:app", 2),  # the master and its worker
    # One worker process: every queue, the scheduler and the watcher in its threads.
    "worker": (r"worker\.py$", 1),
}


@pytest.fixture
def supervisor():
    # Short path in /tmp: the Redis unix socket lives in it (sun_path holds 108 bytes).
    data_dir = Path(tempfile.mkdtemp(prefix="sw-run-", dir="/tmp"))
    running = RunningSupervisor(data_dir, free_port())
    try:
        yield running
    finally:
        running.kill_everything()
        shutil.rmtree(data_dir, ignore_errors=True)


def get(url: str, path: str) -> http.client.HTTPResponse:
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    conn.request("GET", path)
    response = conn.getresponse()
    response.read()
    conn.close()
    return response


def test_serves_then_ctrl_c_stops_every_process(supervisor):
    url = supervisor.wait_for_line(r"Slipway is running at (http://\S+/)", START_TIMEOUT)[1]
    assert url == f"http://127.0.0.1:{supervisor.port}/"

    assert get(url, "/healthz").status == 200
    home = get(url, "/")
    assert home.status in (301, 302, 303, 307, 308)
    assert urlsplit(home.getheader("Location")).path == "/setup"

    found = supervisor.children()
    assert all(len(found[kind]) >= least for kind, (_, least) in KINDS.items()), (
        f"missing processes: {found}\n{supervisor.output}"
    )

    supervisor.proc.send_signal(signal.SIGINT)
    assert supervisor.wait_exit(STOP_TIMEOUT) == 0, supervisor.output
    assert supervisor.survivors(timeout=2) == {}, supervisor.output
    assert "SIGINT received" in supervisor.output


def test_a_dying_process_stops_the_group(supervisor):
    supervisor.wait_for_line(r"Slipway is running at ", START_TIMEOUT)
    found = supervisor.children()
    assert found["worker"], f"no worker: {found}\n{supervisor.output}"

    # The worker process run.py started (not some child of it).
    worker = next(pid for pid in found["worker"] if _ppid(pid) == supervisor.proc.pid)
    os.kill(worker, signal.SIGKILL)

    assert supervisor.wait_exit(STOP_TIMEOUT) != 0, supervisor.output
    assert re.search(r"worker \(pid \d+\) was killed by SIGKILL", supervisor.output), (
        supervisor.output
    )
    assert supervisor.survivors(timeout=2) == {}, supervisor.output
