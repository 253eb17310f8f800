"""A local image registry for tests: Debian's ``docker-registry`` (distribution 2.8) on a
free loopback port, storing blobs under a test's folder.

The engine treats registries on 127.0.0.0/8 as insecure by default, so
``127.0.0.1:<port>/name:tag`` is pushed and pulled over plain HTTP. The process is
stopped by :meth:`Registry.stop` (or leaving the ``with`` block), and the kernel kills
it if the test process dies first, so it never outlives the test.
"""

from __future__ import annotations

import ctypes
import signal
import subprocess
import time
from pathlib import Path

import requests

from tests.lab import free_port

BINARY = Path("/usr/bin/docker-registry")
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
_PR_SET_PDEATHSIG = 1
# Looked up before any fork: the child between fork and exec only calls it.
_prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the thread that started it dies."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class Registry:
    """``docker-registry serve`` on ``127.0.0.1:<port>``; ``host`` prefixes references."""

    def __init__(self, root: Path, timeout: float = 15):
        if not BINARY.exists():
            raise RuntimeError("docker-registry is not installed (make test installs it)")
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.host}"
        config = root / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: warn\n"
            f"storage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n  secret: slipway-tests\n"
        )
        self.log_path = root / "registry.log"
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        # A clean environment: REGISTRY_* variables would override the config file.
        self.proc = subprocess.Popen(
            [str(BINARY), "serve", str(config)], stdout=self._log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"},
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        try:
            self._wait_ready(timeout)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if requests.get(f"{self.url}/v2/", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry did not start: {self.log_path.read_text()[-2000:]}")

    def ref(self, name: str, tag: str = "latest") -> str:
        return f"{self.host}/{name}:{tag}"

    def digest(self, name: str, tag: str = "latest") -> str:
        """The ``sha256:…`` the registry serves for ``name:tag`` (its v2 manifest)."""
        response = requests.get(f"{self.url}/v2/{name}/manifests/{tag}",
                                headers={"Accept": MANIFEST_V2}, timeout=5)  # fmt: skip
        response.raise_for_status()
        return response.headers["Docker-Content-Digest"]

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if not self._log.closed:
            self._log.close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def push(client, ref: str) -> None:
    """Push the engine's ``ref`` (``host/name:tag``) to its registry, failing loudly."""
    repository, _, tag = ref.rpartition(":")
    for chunk in client.api.push(repository, tag=tag, stream=True, decode=True):
        if "error" in chunk:
            raise RuntimeError(f"pushing {ref} failed: {chunk['error']}")
