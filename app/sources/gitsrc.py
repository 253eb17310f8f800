"""Clone and inspect git repositories. The only module that runs ``git``.

Every call is an argv list with ``--`` before positionals; the URL and branch
are checked by ``app.names`` again here, at use, whatever the database says.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from app import names, outbound


class GitError(Exception):
    """A clone failed; the message is safe to show the user."""


class GitExited(GitError):
    """git itself ended with an error code; what it said is in the lines it printed."""


# git's own words about why it failed: ``fatal:`` and ``error:`` lines first, else what
# the server said (not its progress), else git's warnings. Progress lines ("Cloning
# into", "Receiving objects: 42%") are never the reason.
_MESSAGE_LINES = 3
_MESSAGE_CHARS = 300
_SERVER_PROGRESS = ("Enumerating", "Counting", "Compressing", "Total", "Finding")


def git_message(lines: list[str]) -> str | None:
    """git's own last meaningful lines among ``lines`` (already redacted), or None."""
    said = [line.strip()[:_MESSAGE_CHARS] for line in lines]
    errors = [line for line in said if line.startswith(("fatal:", "error:"))]
    server = [
        line for line in said
        if line.startswith("remote:") and line.removeprefix("remote:").strip()
        and not line.removeprefix("remote:").strip().startswith(_SERVER_PROGRESS)
        and "%" not in line
    ]  # fmt: skip
    warnings = [line for line in said if line.startswith("warning:")]
    chosen = errors or server or warnings
    return " ".join(chosen[-_MESSAGE_LINES:]) or None


@dataclass(frozen=True)
class Commit:
    sha: str
    author: str
    message: str


@dataclass
class Credentials:
    """How to reach a private repository. Plaintext lives only in the worker's memory,
    in a 0600 file in a 0700 temp dir (the SSH key) and in git's environment (the
    token, read by an askpass script): never in argv, the URL or a log line."""

    ssh_private_key: str | None = None
    # Pinned SSH host keys (known_hosts lines); updated by :func:`clone` on first use.
    known_hosts: str = ""
    token: str | None = None
    token_user: str = "x-access-token"
    secrets: list[str] = field(default_factory=list)

    def redact(self, text: str) -> str:
        for value in (self.token, *self.secrets):
            if value:
                text = text.replace(value, "••••")
        return text


ASKPASS = """#!/bin/sh
case "$1" in
  Username*) printf '%s\\n' "$SLIPWAY_GIT_USER" ;;
  *) printf '%s\\n' "$SLIPWAY_GIT_TOKEN" ;;
esac
"""
HOST_KEY_CHANGED = "Host key verification failed"
# For every git command that talks to a remote (the clone and its fetch alike): no
# file:// or ext:: transport even if a URL slipped past the checks, no credential
# helper that could store or offer a token, and no HTTP redirect: git would follow one
# to any host (an internal one too) that the check at use never saw.
NETWORK_CONFIG = ("-c", "protocol.file.allow=never", "-c", "protocol.ext.allow=never",
                  "-c", "credential.helper=", "-c", "http.followRedirects=false")  # fmt: skip
REDIRECTED = "The requested URL returned error: 30"


# While cloning, no LFS filter runs, whatever the user's or system's git config says:
# LFS objects are fetched afterwards, by :meth:`_Fetcher.lfs`, under the outbound rules.
NO_LFS_FILTER = ("-c", "filter.lfs.smudge=", "-c", "filter.lfs.process=",
                 "-c", "filter.lfs.required=false")  # fmt: skip
# What ``git lfs install --local`` would write, for ``git lfs checkout``.
LFS_FILTER = ("-c", "filter.lfs.clean=git-lfs clean -- %f",
              "-c", "filter.lfs.smudge=git-lfs smudge -- %f",
              "-c", "filter.lfs.process=git-lfs filter-process",
              "-c", "filter.lfs.required=true")  # fmt: skip
LFS_POINTER = "version https://git-lfs.github.com/spec/v1"
OID_RE = re.compile(r"[0-9a-f]{64}")
MAX_SUBMODULE_DEPTH = 5


def _credential_env(creds: Credentials, tmp: Path, *, secrets: bool = True) -> dict[str, str]:
    """GIT_SSH_COMMAND with the app's key and known-hosts file; askpass for a token.

    Without ``secrets`` (a submodule on another host), neither the key nor the token
    is offered; the known-hosts file is the same one.
    """
    known_hosts = tmp / "known_hosts"
    if not known_hosts.exists():
        known_hosts.write_text(creds.known_hosts)
    ssh = ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
           "-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
           "-o", "StrictHostKeyChecking=accept-new", "-o", "UpdateHostKeys=no"]  # fmt: skip
    if creds.ssh_private_key and secrets:
        key = tmp / "id_ed25519"
        if not key.exists():
            fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(creds.ssh_private_key)
        ssh += ["-i", str(key)]
    # git runs GIT_SSH_COMMAND through the shell: every word is quoted.
    env = {"GIT_SSH_COMMAND": shlex.join(ssh)}
    if creds.token and secrets:
        askpass = tmp / "askpass"
        if not askpass.exists():
            askpass.write_text(ASKPASS)
            askpass.chmod(0o700)
        env |= {"GIT_ASKPASS": str(askpass), "SLIPWAY_GIT_TOKEN": creds.token,
                "SLIPWAY_GIT_USER": creds.token_user or "x-access-token"}  # fmt: skip
    return env


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
    try:
        outbound.check_host(names.git_host(url), allowed_hosts)
    except outbound.HostRefused as exc:
        raise GitError(str(exc)) from None
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
    commit: str | None = None,
    credentials: Credentials | None = None,
    submodules: bool = True,
) -> Commit:
    """Shallow-clone ``branch`` (or tag) of ``url`` into ``dest`` and describe the commit.

    With ``commit``, that commit is checked out instead of the branch head, after
    checking that it is on the branch (up to 200 commits back); an annotated tag's
    object id stands for the commit it tags. ``credentials``
    reach a private repository; their ``known_hosts`` is updated in place. The
    submodules are cloned too (recursively) unless ``submodules`` is false; the LFS
    objects of every checkout are fetched when git-lfs is installed.
    """
    creds = credentials or Credentials()
    try:
        check_url(url, allowed_hosts)
        names.branch(branch)
        if commit:
            names.commit_sha(commit)
    except names.InvalidValue as exc:
        raise GitError(str(exc)) from None
    argv = [
        "git", *NETWORK_CONFIG, *NO_LFS_FILTER, "-c", "core.symlinks=true", "clone", "--depth=1",
        "--single-branch", "--no-tags", f"--branch={branch}", "--", url, str(dest),
    ]  # fmt: skip
    seen: list[str] = []

    def line(text: str) -> None:
        text = creds.redact(text)
        seen.append(text)
        on_line(text)

    with tempfile.TemporaryDirectory(prefix="slipway-git-") as tmp:
        env = _credential_env(creds, Path(tmp))
        try:
            _run_streaming(argv, timeout, line, should_stop, env)
            if commit:
                commit = _peeled(dest, commit)
            if commit and head_commit(dest).sha != commit:
                fetch = ["git", "-C", str(dest), *NETWORK_CONFIG, "fetch", "--deepen=200",
                         "--no-tags", "--", "origin"]  # fmt: skip
                _run_streaming(fetch, timeout, line, should_stop, env)
                _checkout_on_branch(dest, commit, branch)
            fetcher = _Fetcher(url, allowed_hosts, creds, Path(tmp), timeout, line, should_stop)
            fetcher.lfs(dest, url, env)
            if submodules:
                fetcher.submodules(dest)
            elif (dest / ".gitmodules").is_file():
                line("submodules are turned off for this app: .gitmodules was not followed")
        except GitError as exc:
            if any(REDIRECTED in text for text in seen):
                raise GitError(
                    f"{names.git_host(url)} answered with a redirect, which Slipway does not "
                    "follow; use the repository's final URL"
                ) from None
            if any(HOST_KEY_CHANGED in text for text in seen):
                raise GitError(
                    f"the SSH host key of {names.git_host(url)} does not match the pinned "
                    "one; if the server's key really changed, forget the pinned key in the "
                    "app's git settings"
                ) from None
            said = git_message(seen) if isinstance(exc, GitExited) else None
            raise GitError(creds.redact(said or str(exc))) from None
        finally:
            creds.known_hosts = (Path(tmp) / "known_hosts").read_text()
    return head_commit(dest)


@dataclass
class _Fetcher:
    """What follows a clone: its submodules (recursively) and its LFS objects.

    Every submodule URL passes :func:`check_url` before git uses it; the app's
    credentials go only to the app's own host; the clone's network rules, timeout
    and cancellation apply to every git and git-lfs command.
    """

    url: str
    allowed_hosts: tuple[str, ...]
    creds: Credentials
    tmp: Path
    timeout: float
    line: Callable[[str], None]
    should_stop: Callable[[], bool]

    def env_for(self, url: str) -> dict[str, str]:
        same_host = names.git_host(url) == names.git_host(self.url)
        return _credential_env(self.creds, self.tmp, secrets=same_host)

    def submodules(self, repo: Path, level: int = 0) -> None:
        if not (repo / ".gitmodules").is_file():
            return
        if level >= MAX_SUBMODULE_DEPTH:
            raise GitError(f"submodules are nested more than {MAX_SUBMODULE_DEPTH} deep")
        # Local: copies each URL to .git/config, a relative one resolved against the
        # URL the repository was cloned from, as git itself resolves it.
        _local_git(repo, "submodule", "init")
        for name, url in _submodule_urls(repo):
            try:
                check_url(url, self.allowed_hosts)
            except (names.InvalidValue, GitError) as exc:
                raise GitError(f"submodule {name} ({url}) is refused: {exc}") from None
            path = _local_git(repo, "config", "-f", ".gitmodules", "--get",
                              f"submodule.{name}.path").strip()  # fmt: skip
            self.line(f"submodule {name}: {url} at {path}")
            env = self.env_for(url)
            argv = ["git", "-C", str(repo), *NETWORK_CONFIG, *NO_LFS_FILTER, "submodule",
                    "update", "--checkout", "--depth=1", "--single-branch", "--", path]  # fmt: skip
            try:
                _run_streaming(argv, self.timeout, self.line, self.should_stop, env, "submodule")
            except GitError as exc:
                if self.should_stop():
                    raise
                raise GitError(f"submodule {name} ({url}) could not be fetched: {exc}") from None
            sub = inside(repo, path)
            self.lfs(sub, url, env)
            self.submodules(sub, level + 1)

    def lfs(self, repo: Path, url: str, env: dict[str, str]) -> None:
        """Put the LFS objects of the checked-out commit in place of their pointer files.

        git-lfs lists the pointers and checks the files out, offline. The objects are
        downloaded here, not by git-lfs: git-lfs would follow any href the LFS server
        answers (an internal address too) and any redirect, so each request passes the
        outbound check at use and none is redirected. The app's token goes only to the
        app's own host.
        """
        uses = _lfs_use(repo)
        if not uses:
            return
        if not shutil.which("git-lfs", path=_env()["PATH"]):
            self.line(f"this repository uses Git LFS ({uses}), but git-lfs is not installed: "
                      "the files are deployed as pointer files")  # fmt: skip
            return
        listed = json.loads(_local_git(repo, "lfs", "ls-files", "--json") or "{}")
        files = [f for f in listed.get("files") or () if OID_RE.fullmatch(str(f.get("oid")))]
        if not files:
            return
        wanted = {f["oid"]: f for f in files if not f.get("downloaded")}
        if wanted:
            self._lfs_fetch(repo, url, uses, wanted)
        argv = ["git", "-C", str(repo), *NETWORK_CONFIG, *LFS_FILTER, "lfs", "checkout"]
        _run_streaming(argv, self.timeout, self.line, self.should_stop, env, "lfs checkout")

    def _lfs_fetch(self, repo: Path, url: str, uses: str, wanted: dict[str, dict]) -> None:
        endpoint = lfs_endpoint(url)
        self.line(f"fetching {len(wanted)} Git LFS object{'s' if len(wanted) != 1 else ''} "
                  f"({uses}) from {endpoint}")  # fmt: skip
        auth = {}
        if self.creds.token and names.git_host(url) == names.git_host(self.url):
            basic = f"{self.creds.token_user or 'x-access-token'}:{self.creds.token}"
            auth = {"Authorization": "Basic " + base64.b64encode(basic.encode()).decode()}
        objects = [{"oid": oid, "size": f["size"]} for oid, f in wanted.items()]
        batch = {"operation": "download", "transfers": ["basic"], "objects": objects}
        answer = self._lfs_request(
            f"{endpoint}/objects/batch", auth | LFS_HEADERS, json.dumps(batch).encode()
        )
        try:
            objects = json.load(answer).get("objects") or []
        except ValueError:
            raise GitError(f"{names.git_host(endpoint)} did not answer the LFS batch API") from None
        finally:
            answer.close()
        # A submodule's git directory is in its superproject's .git/modules.
        store = (
            Path(_local_git(repo, "rev-parse", "--absolute-git-dir").strip()) / "lfs" / "objects"
        )
        for obj in objects:
            oid = str(obj.get("oid", ""))
            if oid not in wanted:
                continue
            name = wanted[oid]["name"]
            if obj.get("error"):
                message = str(obj["error"].get("message", ""))[:200]
                raise GitError(f"the LFS object of {name} could not be fetched: {message}")
            action = (obj.get("actions") or {}).get("download") or {}
            href, headers = str(action.get("href", "")), dict(action.get("header") or {})
            if not headers and names.url_host(href) == names.git_host(url):
                headers = auth
            target = store / oid[:2] / oid[2:4] / oid
            self._lfs_download(href, headers, target, oid, int(wanted[oid]["size"]), name)
            del wanted[oid]
        if wanted:
            raise GitError(f"the LFS server did not offer {next(iter(wanted.values()))['name']}")

    def _lfs_request(self, url: str, headers: dict[str, str], body: bytes | None = None):
        """An HTTP request of the LFS transfer, under the git URL rules (https, or plain
        http to an allow-listed host) and the outbound check at use; never redirected."""
        host = names.url_host(url)
        scheme = url.partition("://")[0]
        if scheme != "https" and not (scheme == "http" and host in self.allowed_hosts):
            raise GitError(f"LFS URL refused: only https:// is accepted for {host or url}")
        try:
            outbound.check_host(host, self.allowed_hosts)
        except outbound.HostRefused as exc:
            raise GitError(f"LFS: {exc}") from None
        request = urllib.request.Request(url, data=body, headers=headers,
                                         method="POST" if body is not None else "GET")  # fmt: skip
        opener = urllib.request.build_opener(_NoRedirect)
        try:
            return opener.open(request, timeout=min(self.timeout, 120))
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                raise GitError(f"{host} answered an LFS request with a redirect, which Slipway "
                               "does not follow") from None  # fmt: skip
            raise GitError(f"{host} answered an LFS request with {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise GitError(f"LFS request to {host} failed: {exc}") from None

    def _lfs_download(self, href, headers, target: Path, oid, size: int, name: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        digest, written = hashlib.sha256(), 0
        deadline = time.monotonic() + self.timeout
        with self._lfs_request(href, headers) as response, partial.open("wb") as out:
            while chunk := response.read(1 << 16):
                if self.should_stop():
                    raise GitError("stopped")
                if time.monotonic() > deadline:
                    raise GitError(f"the LFS download of {name} took longer than "
                                   f"{self.timeout:.0f} s")  # fmt: skip
                written += len(chunk)
                if written > size:
                    break
                digest.update(chunk)
                out.write(chunk)
        if written != size or digest.hexdigest() != oid:
            partial.unlink(missing_ok=True)
            raise GitError(f"the LFS object of {name} does not match its pointer")
        partial.replace(target)


LFS_HEADERS = {"Accept": "application/vnd.git-lfs+json",
               "Content-Type": "application/vnd.git-lfs+json", "User-Agent": "Slipway"}  # fmt: skip


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect could point anywhere, internal addresses included: never follow."""

    def redirect_request(self, *args, **kwargs):
        return None


def lfs_endpoint(url: str) -> str:
    """The LFS API of a remote, as git-lfs derives it: ``<repo>.git/info/lfs``. For an
    SSH remote, the same path over https on the same host (anonymous: no
    ``git-lfs-authenticate``), as a forge serves it."""
    if not url.startswith(("https://", "http://")):
        scp = names.SCP_LIKE_RE.fullmatch(url)
        if "://" not in url and scp:
            url = f"https://{scp['host']}/{scp['path'].lstrip('/')}"
        else:
            parts = urlsplit(url)
            url = f"https://{parts.hostname}{parts.path}"
    base = url.rstrip("/")
    return f"{base if base.endswith('.git') else base + '.git'}/info/lfs"


def _lfs_use(repo: Path) -> str:
    """Why ``repo`` looks like it uses LFS (for the build log), or ``""``."""
    attributes = _local_git(repo, "grep", "-l", "-I", "-e", "filter=lfs", "--",
                            ".gitattributes", ":(glob)**/.gitattributes", check=False)  # fmt: skip
    if attributes.strip():
        return f"filter=lfs in {', '.join(attributes.split())}"
    pointers = _local_git(repo, "grep", "-l", "-I", "-x", "-F", "-e", LFS_POINTER,
                          check=False).split()  # fmt: skip
    if pointers:
        return f"{len(pointers)} LFS pointer file{'s' if len(pointers) != 1 else ''}"
    return ""


def _submodule_urls(repo: Path) -> list[tuple[str, str]]:
    out = _local_git(repo, "config", "--local", "-z", "--get-regexp", r"^submodule\..*\.url$",
                     check=False)  # fmt: skip
    found = []
    for entry in filter(None, out.split("\0")):
        key, _, url = entry.partition("\n")
        found.append((key.removeprefix("submodule.").removesuffix(".url"), url))
    return found


def _local_git(repo: Path, *args: str, check: bool = True) -> str:
    """A git command that never talks to a remote."""
    done = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), *NETWORK_CONFIG, *args],
        capture_output=True, text=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    if check and done.returncode != 0:
        raise GitError(f"git {args[0]} failed: {done.stderr.strip()[:300]}")
    return done.stdout


def _peeled(repo: Path, sha: str) -> str:
    """The commit ``sha`` names: itself, or the commit an annotated tag points to.

    For a push of an annotated tag, GitHub and Gitea send the tag object's id as
    ``after``; the clone of that tag has the tag object and its commit checked out.
    An id the clone does not have is returned as it is (the deepen fetch looks for it).
    ``sha`` is a checked hex id; ``--end-of-options`` keeps it from ever being an option.
    """
    peeled = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", "--end-of-options",
         f"{sha}^{{commit}}"],
        capture_output=True, text=True, env=_env(), timeout=30, check=False,
    )  # fmt: skip
    return peeled.stdout.strip() if peeled.returncode == 0 else sha


def _checkout_on_branch(repo: Path, commit: str, branch: str) -> None:
    ancestor = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), "merge-base", "--is-ancestor", commit, "HEAD"],
        capture_output=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    if ancestor.returncode != 0:
        raise GitError(f"commit {commit[:12]} is not on {branch} (or too far back)")
    checkout = subprocess.run(  # noqa: S603
        ["git", "-C", str(repo), "checkout", "-q", "--detach", commit, "--"],
        capture_output=True, env=_env(), timeout=60, check=False,
    )  # fmt: skip
    if checkout.returncode != 0:
        raise GitError(f"could not check out commit {commit[:12]}")


def _run_streaming(argv, timeout, on_line, should_stop, extra_env=None, what=None) -> None:
    import selectors
    import time

    proc = subprocess.Popen(  # noqa: S603 - argv list, no shell
        argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        env=_env() | (extra_env or {}),
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
        what = what or ("fetch" if "fetch" in argv else "clone")
        raise GitExited(f"git {what} failed (exit {code})")


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
