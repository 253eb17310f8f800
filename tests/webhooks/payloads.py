"""Push payloads shaped as GitHub, GitLab and Gitea document them (field names,
nesting and types as in their webhook docs; values are ours)."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid

BEFORE = "0" * 40


def _commit(sha, message, files, url):
    added, modified, removed = files
    return {
        "id": sha,
        "message": message,
        "timestamp": "2026-11-23T19:00:00Z",
        "url": f"{url}/commit/{sha}",
        "author": {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"},
        "added": added,
        "modified": modified,
        "removed": removed,
    }


def github_push(repo_url, ref, sha, message="Update site", files=((), ("www/index.html",), ())):
    html = repo_url.removesuffix(".git")
    commit = _commit(sha, message, [list(f) for f in files], html)
    commit |= {"tree_id": "f" * 40, "distinct": True,
               "committer": {"name": "GitHub", "email": "noreply@github.com"}}  # fmt: skip
    return {
        "ref": ref,
        "before": "a" * 40,
        "after": sha,
        "created": False,
        "deleted": False,
        "forced": False,
        "base_ref": None,
        "compare": f"{html}/compare/aaaaaaaaaaaa...{sha[:12]}",
        "commits": [commit],
        "head_commit": commit,
        "repository": {
            "id": 186853002,
            "name": html.rsplit("/", 1)[-1],
            "full_name": "acme/" + html.rsplit("/", 1)[-1],
            "private": False,
            "html_url": html,
            "url": html,
            "clone_url": repo_url,
            "git_url": "git://" + html.split("://", 1)[-1] + ".git",
            "ssh_url": "git@example.invalid:acme/site.git",
            "svn_url": html,
            "default_branch": "main",
        },
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": {"login": "ada", "id": 1, "type": "User"},
    }


def gitlab_push(repo_url, ref, sha, message="Update site", files=((), ("www/index.html",), ()),
                tag=False):  # fmt: skip
    web = repo_url.removesuffix(".git")
    commit = _commit(sha, message, [list(f) for f in files], web + "/-")
    commit["title"] = message.splitlines()[0]
    del commit["author"]["username"]
    return {
        "object_kind": "tag_push" if tag else "push",
        "event_name": "tag_push" if tag else "push",
        "before": "a" * 40,
        "after": sha,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": sha,
        "user_id": 4,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "user_email": "",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": "Site",
            "web_url": web,
            "git_ssh_url": "git@example.invalid:acme/site.git",
            "git_http_url": repo_url,
            "namespace": "Acme",
            "visibility_level": 0,
            "path_with_namespace": "acme/site",
            "default_branch": "main",
            "homepage": web,
            "url": "git@example.invalid:acme/site.git",
            "ssh_url": "git@example.invalid:acme/site.git",
            "http_url": repo_url,
        },
        "commits": [commit],
        "total_commits_count": 1,
        "repository": {
            "name": "Site",
            "url": "git@example.invalid:acme/site.git",
            "description": "",
            "homepage": web,
            "git_http_url": repo_url,
            "git_ssh_url": "git@example.invalid:acme/site.git",
            "visibility_level": 0,
        },
    }


def gitea_push(repo_url, ref, sha, message="Update site", files=((), ("www/index.html",), ())):
    html = repo_url.removesuffix(".git")
    commit = _commit(sha, message, [list(f) for f in files], html)
    commit |= {"committer": commit["author"], "verification": None}
    return {
        "ref": ref,
        "before": "a" * 40,
        "after": sha,
        "compare_url": f"{html}/compare/aaaaaaaaaaaa...{sha[:12]}",
        "commits": [commit],
        "total_commits": 1,
        "head_commit": commit,
        "repository": {
            "id": 1,
            "owner": {"id": 1, "login": "acme", "username": "acme"},
            "name": "site",
            "full_name": "acme/site",
            "private": False,
            "html_url": html,
            "ssh_url": "git@example.invalid:acme/site.git",
            "clone_url": repo_url,
            "default_branch": "main",
        },
        "pusher": {"id": 1, "login": "ada", "username": "ada"},
        "sender": {"id": 1, "login": "ada", "username": "ada"},
    }


def sign(secret: str, body: bytes) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def signed_request(provider: str, secret: str, payload: dict, *, delivery: str | None = None,
                   event: str | None = None) -> tuple[bytes, dict]:  # fmt: skip
    """The body and headers the forge would send."""
    body = json.dumps(payload).encode()
    delivery = delivery or str(uuid.uuid4())
    if provider == "github":
        headers = {"X-Hub-Signature-256": "sha256=" + sign(secret, body),
                   "X-GitHub-Delivery": delivery, "X-GitHub-Event": event or "push"}  # fmt: skip
    elif provider == "gitlab":
        headers = {"X-Gitlab-Token": secret, "X-Gitlab-Event-UUID": delivery,
                   "X-Gitlab-Event": event or "Push Hook"}  # fmt: skip
    elif provider == "gitea":
        headers = {"X-Gitea-Signature": sign(secret, body), "X-Gitea-Delivery": delivery,
                   "X-Gitea-Event": event or "push"}  # fmt: skip
    else:
        headers = {"X-Slipway-Signature": "sha256=" + sign(secret, body),
                   "X-Slipway-Delivery": delivery, "X-Slipway-Event": event or "push"}  # fmt: skip
    return body, headers | {"Content-Type": "application/json"}


BUILDERS = {"github": github_push, "gitlab": gitlab_push, "gitea": gitea_push,
            "generic": github_push}  # fmt: skip
