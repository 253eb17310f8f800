"""Push payloads from GitHub, GitLab and Gitea (and GitHub-shaped generic ones), and
whether a push deploys: tracked branch or tag pattern, exact repository, skip markers,
watch paths."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from app import names
from app.models import Application

SKIP_MARKERS = ("[skip deploy]", "[skip ci]")
ZERO_SHA = re.compile(r"^0+$")
GITLAB_EVENTS = {"Push Hook": "push", "Tag Push Hook": "push", "System Hook": "system"}


@dataclass
class Push:
    """What Slipway needs from a push payload, whichever forge sent it."""

    event: str
    ref: str = ""
    after: str = ""
    repo_urls: set[str] = field(default_factory=set)
    message: str = ""
    author: str = ""
    # Every path the pushed commits added, modified or removed; None if the
    # payload lists only some commits (forges cap the list at 20).
    changed: set[str] | None = None


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _changed(commits: list, complete: bool) -> set[str] | None:
    if not complete:
        return None
    paths: set[str] = set()
    for commit in commits:
        commit = _dict(commit)
        for key in ("added", "modified", "removed"):
            paths.update(p for p in commit.get(key) or [] if isinstance(p, str))
    return paths


def _head(commits: list, after: str, head_commit: dict) -> dict:
    if head_commit:
        return head_commit
    for commit in commits:
        if _dict(commit).get("id") == after:
            return commit
    return _dict(commits[-1]) if commits else {}


def parse(provider: str, event: str, payload: dict) -> Push:
    """Read a push payload as the forge documents it (GitHub's shape for ``generic``)."""
    if provider == "gitlab":
        event = GITLAB_EVENTS.get(event, event)
    if event == "ping":
        return Push(event="ping")
    if event != "push":
        return Push(event=event[:40] or "unknown")
    commits = [c for c in payload.get("commits") or [] if isinstance(c, dict)]
    after = _str(payload.get("after"))
    if provider == "gitlab":
        after = _str(payload.get("checkout_sha")) or after
        project = _dict(payload.get("project"))
        repository = _dict(payload.get("repository"))
        urls = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url", "http_url",
                                         "ssh_url")]  # fmt: skip
        urls += [repository.get(k) for k in ("url", "homepage", "git_http_url", "git_ssh_url")]
        total = payload.get("total_commits_count")
        complete = isinstance(total, int) and total <= len(commits)
    else:
        repository = _dict(payload.get("repository"))
        urls = [repository.get(k) for k in ("clone_url", "ssh_url", "html_url", "url")]
        total = payload.get("total_commits")  # Gitea; GitHub sends no total
        complete = total <= len(commits) if isinstance(total, int) else len(commits) < 20
    head = _head(commits, after, _dict(payload.get("head_commit")))
    author = _dict(head.get("author"))
    return Push(
        event="push",
        ref=_str(payload.get("ref")),
        after=after,
        repo_urls={u for u in urls if isinstance(u, str) and u},
        message=_str(head.get("message")),
        author=_str(author.get("name")) or _str(author.get("username")),
        changed=_changed(commits, complete) if commits else None,
    )


def same_repository(a: str, b: str) -> bool:
    """Exactly the same repository: only the host's case, a trailing ``/`` and a
    ``.git`` suffix may differ."""
    return _canonical(a) == _canonical(b)


def _canonical(url: str) -> str:
    url = url.strip().rstrip("/")
    url = url[:-4] if url.endswith(".git") else url
    if "://" in url:
        parts = urlsplit(url)
        return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path}"
    user_host, _, path = url.partition(":")
    return f"{user_host.lower()}:{path}"


# ---- decisions ----------------------------------------------------------------


def _matches_any(paths: set[str], patterns: list[str]) -> bool:
    regexes = [names.glob_regex(p) for p in patterns]
    return any(r.match(path) for r in regexes for path in paths)


def _ref_name(app: Application, ref: str) -> tuple[str | None, str]:
    """The branch or tag a push names, if this app deploys it."""
    if ref.startswith("refs/heads/"):
        name = ref.removeprefix("refs/heads/")
        if name != app.git_branch:
            return None, f"branch {name} is not the tracked branch {app.git_branch}"
        return name, ""
    if ref.startswith("refs/tags/"):
        name = ref.removeprefix("refs/tags/")
        if not app.deploy_tags:
            return None, f"tag {name}: this app does not deploy tags"
        if not names.glob_regex(app.deploy_tags).match(name):
            return None, f"tag {name} does not match {app.deploy_tags}"
        return name, ""
    return None, f"{ref or 'no ref'} is neither a branch nor a tag"


def decide(app: Application, push: Push) -> tuple[str | None, str]:
    """``(ref to deploy, why)``, or ``(None, why not)``."""
    if push.event == "ping":
        return None, "ping: the webhook works"
    if push.event != "push":
        return None, f"{push.event} events do not deploy"
    if app.source_type != "git" or not app.git_url:
        return None, "the app is not built from a git repository"
    if not app.auto_deploy:
        return None, "auto-deploy is off for this app"
    if not any(same_repository(url, app.git_url) for url in push.repo_urls):
        return None, "the push is for another repository"
    if ZERO_SHA.fullmatch(push.after or "0"):
        return None, f"{push.ref} was deleted"
    name, why_not = _ref_name(app, push.ref)
    if name is None:
        return None, why_not
    try:
        names.branch(name)
        names.commit_sha(push.after)
    except names.InvalidValue:
        return None, "the push names an invalid ref or commit id"
    lowered = push.message.lower()
    for marker in SKIP_MARKERS:
        if marker in lowered:
            return None, f"the commit message says {marker}"
    patterns = names.watch_paths(app.watch_paths)
    if patterns and push.changed is not None and not _matches_any(push.changed, patterns):
        return None, "no changed file matches the watch paths"
    return name, "deployed"
