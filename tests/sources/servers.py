"""Real git servers for the private-repository tests: sshd on loopback, and the
smart-HTTP server of tests/lab.py behind HTTP Basic authentication."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import time
from pathlib import Path

from tests import lab

SSHD = Path("/usr/sbin/sshd")


class Sshd:
    """``sshd -D`` on 127.0.0.1 with its own host key and config. The only key it
    accepts may run nothing but ``git-upload-pack`` of one repository."""

    def __init__(self, root: Path, repo: Path, public_key: str):
        if not SSHD.exists():
            raise RuntimeError("openssh-server is not installed (make test installs it)")
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.port = lab.free_port()
        self.host_key = root / "host_ed25519"
        if not self.host_key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                            str(self.host_key)], check=True)  # fmt: skip
        self.authorized = root / "authorized_keys"
        self.authorize(public_key, repo)
        config = root / "sshd_config"
        config.write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.host_key}\n"
            f"PidFile {root / 'sshd.pid'}\nAuthorizedKeysFile {self.authorized}\n"
            "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n"
            "PermitRootLogin prohibit-password\nStrictModes no\nAllowTcpForwarding no\n"
            "X11Forwarding no\nPermitTTY no\nLogLevel VERBOSE\n"
        )
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.log = open(root / "sshd.log", "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(config)],
                                     stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        self._wait()

    def authorize(self, public_key: str, repo: Path) -> None:
        self.authorized.write_text(f"command=\"git-upload-pack '{repo}'\",restrict {public_key}\n")

    def url(self, repo: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.port}{repo}"

    def fingerprint(self) -> str:
        out = subprocess.run(["ssh-keygen", "-l", "-E", "sha256", "-f", f"{self.host_key}.pub"],
                             capture_output=True, text=True, check=True).stdout  # fmt: skip
        return out.split()[1]

    def _wait(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("sshd did not start")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class TokenGitServer(lab.GitServer):
    """The lab's smart-HTTP server, answering only requests with the right token."""

    def __init__(self, root: Path, user: str, token: str):
        self.expected = "Basic " + base64.b64encode(f"{user}:{token}".encode()).decode()
        self.seen_authorization: list[str] = []
        self.seen: list[tuple[str, str, str]] = []  # (Host, path, Authorization) of each request
        super().__init__(root)

    def _wsgi(self, environ, start_response):
        given = environ.get("HTTP_AUTHORIZATION", "")
        self.seen_authorization.append(given)
        self.seen.append((environ.get("HTTP_HOST", ""), environ.get("PATH_INFO", ""), given))
        if given != self.expected:
            start_response("401 Unauthorized", [("WWW-Authenticate", 'Basic realm="git"'),
                                                 ("Content-Length", "0")])  # fmt: skip
            return [b""]
        return super()._wsgi(environ, start_response)


def bare_repo(root: Path, name: str) -> tuple[Path, Path]:
    """A bare repository and a working copy pushing to it: (bare, work)."""
    bare, work = root / f"{name}.git", root / f"{name}-work"
    subprocess.run(["git", "init", "--bare", "-q", "-b", "main", str(bare)], check=True)
    work.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=work, check=True)
    return bare, work


def commit(work: Path, files: dict[str, str], message: str, branch: str = "main") -> str:
    for rel, content in files.items():
        (work / rel).parent.mkdir(parents=True, exist_ok=True)
        (work / rel).write_text(content)
    who = {"NAME": "Ada", "EMAIL": "a@example.com"}
    env = os.environ | {
        f"GIT_{role}_{k}": v for role in ("AUTHOR", "COMMITTER") for k, v in who.items()
    }
    subprocess.run(["git", "add", "-A"], cwd=work, check=True, env=env)
    subprocess.run(["git", "commit", "-q", "-m", message], cwd=work, check=True, env=env)
    subprocess.run(["git", "push", "-q", "-f", "origin", f"HEAD:{branch}"], cwd=work, check=True,
                   env=env)  # fmt: skip
    return subprocess.run(["git", "rev-parse", "HEAD"], cwd=work, check=True, capture_output=True,
                          text=True).stdout.strip()  # fmt: skip
