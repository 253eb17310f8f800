"""Clone and inspect git repositories. The only module that runs ``git``.

Every call is an argv list with ``--`` before positionals; the URL and branch
are checked by ``app.names`` again here, at use, whatever the database says.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app import names


class GitError(Exception):
    """A clone failed; the message is safe to show the user."""


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str


def _env() -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_ASKPASS": "/bin/false",
        "SSH_ASKPASS": "/bin/false",
        "GIT_SSH_COMMAND": "ssh -o BatchMode=yes -o StrictHostKeyChecking=accept-new",
        # Transports git may use at all; file:// and ext:: are never among them.
        "GIT_ALLOW_PROTOCOL": "https:http:ssh",
        "LC_ALL": "C",
    }
    return env


def check_url(url: str, allowed_hosts: tuple[str, ...]) -> str:
    """The URL rules of ``names.git_url`` plus where the host resolves to, now."""
    names.git_url(url, allowed_hosts)
    host = names.git_host(url)
    if host not in allowed_hosts and names.resolves_internally(host):
        raise GitError(f"{host} resolves to an internal address; an admin must allow-list it.")
    return url


def clone(
    url: str,
    branch: str,
    dest: Path,
    *,
    allowed_hosts: tuple[str, ...] = (),
    timeout: float = 300,
    on_line: Callable[[str], None] = lambda line: None,
    should_stop: Callable[[], bool] = lambda: False,
) -> Commit:
    """Shallow-clone ``branch`` of ``url`` into ``dest`` and describe its head commit."""
    try:
        check_url(url, allowed_hosts)
        names.branch(branch)
    except names.InvalidValue as exc:
        raise GitError(str(exc)) from None
    argv = [
        "git", "-c", "protocol.file.allow=never", "-c", "protocol.ext.allow=never",
        "-c", "core.symlinks=true", "clone", "--depth=1", "--single-branch", "--no-tags",
        f"--branch={branch}", "--", url, str(dest),
    ]  # fmt: skip
    _run_streaming(argv, timeout, on_line, should_stop)
    return head_commit(dest)


def _run_streaming(argv, timeout, on_line, should_stop) -> None:
    import selectors
    import time

    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=_env(),
    )  # fmt: skip
    deadline = time.monotonic() + timeout
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ)
    buffer = b""
    try:
        while True:
            if should_stop():
                raise GitError("stopped")
            if time.monotonic() > deadline:
                raise GitError(f"git took longer than {timeout:.0f} s")
            if not selector.select(timeout=0.2):
                if proc.poll() is not None:
                    break
                continue
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.replace(b"\r", b"\n").split(b"\n")
            for line in lines:
                if line.strip():
                    on_line(line.decode("utf-8", "replace"))
        if buffer.strip():
            on_line(buffer.decode("utf-8", "replace"))
        code = proc.wait(timeout=max(1, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        selector.close()
    if code != 0:
        raise GitError(f"git clone failed (exit {code})")


def head_commit(repo: Path) -> Commit:
    out = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), "log", "-1", "--format=%H%x00%an%x00%s", "--"],
        capture_output=True, text=True, env=_env(), timeout=30, check=True,
    ).stdout.strip()  # fmt: skip
    sha, author, message = (out.split("\x00") + ["", ""])[:3]
    return Commit(sha=sha, author=author, message=message)


def inside(root: Path, relative: str) -> Path:
    """``root/relative``, resolved with symlinks, refused unless it stays inside ``root``."""
    try:
        names.relative_path(relative)
    except names.InvalidValue as exc:
        raise GitError(str(exc)) from None
    base = root.resolve()
    target = (root / relative).resolve()
    if target != base and base not in target.parents:
        raise GitError(f"{relative} points outside the repository")
    return target
