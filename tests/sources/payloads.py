"""Push payloads with the field set and nesting the forges document; values are ours.

- GitHub: "Webhook events and payloads: push" (the octokit/webhooks examples GitHub
  publishes): top-level ``ref … sender``, a full ``repository`` with its ``owner`` and
  API URL templates, ``pusher`` and ``sender``; a deletion has no commits.
- GitLab: "Webhook events: Push events" and "Tag events" request bodies; a tag push
  lists no commits (``total_commits_count`` 0) and names the commit in ``checkout_sha``.
- Gitea/Forgejo: the "Webhooks" page's push example, plus what its ``PushPayload``
  struct always sends and the example leaves out (``total_commits``, ``head_commit``,
  each commit's ``added``/``removed``/``modified``, ``verification``). The example's
  ``secret`` field is left out: Gitea deprecated it in 1.13 and dropped it in 1.14.

Every URL is derived from the repository URL given, so a payload for another
repository never carries the app's own address in some secondary field.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from urllib.parse import urlsplit

BEFORE = "a" * 40
ZERO = "0" * 40
TIMESTAMP = "2026-11-23T19:00:00Z"
FILES = ((), ("www/index.html",), ())  # (added, modified, removed)
# GitHub's repository API URL templates: field name → suffix of the repository's API URL.
GITHUB_REPO_API = (
    ("forks", "/forks"), ("keys", "/keys{/key_id}"),
    ("collaborators", "/collaborators{/collaborator}"), ("teams", "/teams"),
    ("hooks", "/hooks"), ("issue_events", "/issues/events{/number}"), ("events", "/events"),
    ("assignees", "/assignees{/user}"), ("branches", "/branches{/branch}"), ("tags", "/tags"),
    ("blobs", "/git/blobs{/sha}"), ("git_tags", "/git/tags{/sha}"),
    ("git_refs", "/git/refs{/sha}"), ("trees", "/git/trees{/sha}"),
    ("statuses", "/statuses/{sha}"), ("languages", "/languages"),
    ("stargazers", "/stargazers"), ("contributors", "/contributors"),
    ("subscribers", "/subscribers"), ("subscription", "/subscription"),
    ("commits", "/commits{/sha}"), ("git_commits", "/git/commits{/sha}"),
    ("comments", "/comments{/number}"), ("issue_comment", "/issues/comments{/number}"),
    ("contents", "/contents/{+path}"), ("compare", "/compare/{base}...{head}"),
    ("merges", "/merges"), ("archive", "/{archive_format}{/ref}"),
    ("downloads", "/downloads"), ("issues", "/issues{/number}"), ("pulls", "/pulls{/number}"),
    ("milestones", "/milestones{/number}"),
    ("notifications", "/notifications{?since,all,participating}"),
    ("labels", "/labels{/name}"), ("releases", "/releases{/id}"),
    ("deployments", "/deployments"),
)  # fmt: skip
GITHUB_USER_API = (
    ("followers", "/followers"), ("following", "/following{/other_user}"),
    ("gists", "/gists{/gist_id}"), ("starred", "/starred{/owner}{/repo}"),
    ("subscriptions", "/subscriptions"), ("organizations", "/orgs"), ("repos", "/repos"),
    ("events", "/events{/privacy}"), ("received_events", "/received_events"),
)  # fmt: skip


class _Repo:
    """The parts of a repository URL the payloads repeat in their many URL fields."""

    def __init__(self, url: str):
        self.clone, self.html = url, url.removesuffix(".git")
        if "://" in url:
            parts = urlsplit(url)
            self.scheme, self.host, path = parts.scheme, parts.netloc.rpartition("@")[2], parts.path
        else:  # git@host:owner/name.git
            self.scheme = "https"
            self.host, _, path = url.rpartition("@")[2].partition(":")
        segments = path.strip("/").removesuffix(".git").split("/")
        self.name = segments[-1]
        self.owner = segments[-2] if len(segments) > 1 else "acme"
        self.full_name = f"{self.owner}/{self.name}"
        self.ssh = f"git@{self.host.partition(':')[0]}:{self.full_name}.git"
        self.api = f"{self.scheme}://{self.host}/api/v3"


def _lists(files) -> tuple[list, list, list]:
    added, modified, removed = files
    return list(added), list(modified), list(removed)


# ---- GitHub -------------------------------------------------------------------


def _github_user(repo: _Repo, login: str, uid: int, *, with_name: bool = False) -> dict:
    user = {"name": "Ada Lovelace", "email": "ada@example.com"} if with_name else {}
    api = f"{repo.api}/users/{login}"
    user |= {
        "login": login,
        "id": uid,
        "node_id": f"U_{uid}",
        "avatar_url": f"{api}/avatar",
        "gravatar_id": "",
        "url": api,
        "html_url": f"{repo.scheme}://{repo.host}/{login}",
    }
    user |= {f"{key}_url": api + suffix for key, suffix in GITHUB_USER_API}
    return user | {"type": "User", "site_admin": False}  # fmt: skip


def _github_repository(repo: _Repo) -> dict:
    api = f"{repo.api}/repos/{repo.full_name}"
    fields = {
        "id": 186853002, "node_id": "R_186853002", "name": repo.name,
        "full_name": repo.full_name, "private": False,
        "owner": _github_user(repo, repo.owner, 2, with_name=True),
        "html_url": repo.html, "description": None, "fork": False, "url": repo.html,
    }  # fmt: skip
    fields |= {f"{key}_url": api + suffix for key, suffix in GITHUB_REPO_API}
    return fields | {
        "created_at": 1795000000, "updated_at": TIMESTAMP, "pushed_at": 1795460400,
        "git_url": f"git://{repo.host}/{repo.full_name}.git", "ssh_url": repo.ssh,
        "clone_url": repo.clone, "svn_url": repo.html, "homepage": None, "size": 0,
        "stargazers_count": 0, "watchers_count": 0, "language": None, "has_issues": True,
        "has_projects": True, "has_downloads": True, "has_wiki": True, "has_pages": False,
        "forks_count": 0, "mirror_url": None, "archived": False, "disabled": False,
        "open_issues_count": 0, "license": None, "forks": 0, "open_issues": 0, "watchers": 0,
        "default_branch": "main", "stargazers": 0, "master_branch": "main",
        "is_template": False, "topics": [], "visibility": "public",
        "web_commit_signoff_required": False,
    }  # fmt: skip


def github_push(repo_url, ref, sha, message="Update site", files=FILES):
    repo = _Repo(repo_url)
    deleted = sha == ZERO
    added, modified, removed = _lists(files)
    who = {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"}
    commit = {
        "id": sha, "tree_id": "f" * 40, "distinct": True, "message": message,
        "timestamp": TIMESTAMP, "url": f"{repo.html}/commit/{sha}", "author": who,
        "committer": {"name": "GitHub", "email": "noreply@github.com", "username": "web-flow"},
        "added": added, "removed": removed, "modified": modified,
    }  # fmt: skip
    return {
        "ref": ref,
        "before": BEFORE,
        "after": sha,
        "created": False,
        "deleted": deleted,
        "forced": False,
        "base_ref": None,
        "compare": f"{repo.html}/compare/{BEFORE[:12]}...{sha[:12]}",
        "commits": [] if deleted else [commit],
        "head_commit": None if deleted else commit,
        "repository": _github_repository(repo),
        "pusher": {"name": "ada", "email": "ada@example.com"},
        "sender": _github_user(repo, "ada", 1),
    }


# ---- GitLab -------------------------------------------------------------------


def gitlab_push(repo_url, ref, sha, message="Update site", files=FILES, tag=False):
    """A push (or, with ``tag``, a tag push: no commits listed, as GitLab sends it)."""
    repo = _Repo(repo_url)
    added, modified, removed = _lists(files)
    commit = {
        "id": sha, "message": message, "title": message.splitlines()[0] if message else "",
        "timestamp": TIMESTAMP, "url": f"{repo.html}/-/commit/{sha}",
        "author": {"name": "Ada Lovelace", "email": "ada@example.com"},
        "added": added, "modified": modified, "removed": removed,
    }  # fmt: skip
    commits = [] if tag else [commit]
    return {
        "object_kind": "tag_push" if tag else "push",
        "event_name": "tag_push" if tag else "push",
        "before": ZERO if tag else BEFORE,
        "after": sha,
        "ref": ref,
        "ref_protected": True,
        "checkout_sha": sha,
        "user_id": 4,
        "user_name": "Ada Lovelace",
        "user_username": "ada",
        "user_email": "ada@example.com",
        "user_avatar": f"{repo.scheme}://{repo.host}/uploads/-/system/user/avatar/4/avatar.png",
        "project_id": 15,
        "project": {
            "id": 15,
            "name": repo.name,
            "description": "",
            "web_url": repo.html,
            "avatar_url": None,
            "git_ssh_url": repo.ssh,
            "git_http_url": repo.clone,
            "namespace": repo.owner.title(),
            "visibility_level": 0,
            "path_with_namespace": repo.full_name,
            "default_branch": "main",
            "homepage": repo.html,
            "url": repo.ssh,
            "ssh_url": repo.ssh,
            "http_url": repo.clone,
        },  # fmt: skip
        "repository": {
            "name": repo.name,
            "url": repo.ssh,
            "description": "",
            "homepage": repo.html,
            "git_http_url": repo.clone,
            "git_ssh_url": repo.ssh,
            "visibility_level": 0,
        },  # fmt: skip
        "commits": commits,
        "total_commits_count": len(commits),
    }


# ---- Gitea / Forgejo ----------------------------------------------------------


def _gitea_user(repo: _Repo, login: str, uid: int) -> dict:
    avatar = f"{repo.scheme}://{repo.host}/avatars/{uid}"
    return {"id": uid, "login": login, "full_name": login.title(),
            "email": f"{login}@example.com", "avatar_url": avatar, "username": login}  # fmt: skip


def gitea_push(repo_url, ref, sha, message="Update site", files=FILES):
    repo = _Repo(repo_url)
    added, modified, removed = _lists(files)
    who = {"name": "Ada Lovelace", "email": "ada@example.com", "username": "ada"}
    commit = {
        "id": sha, "message": message, "url": f"{repo.html}/commit/{sha}", "author": who,
        "committer": who, "verification": None, "timestamp": "2026-11-23T20:00:00+01:00",
        "added": added, "removed": removed, "modified": modified,
    }  # fmt: skip
    return {
        "ref": ref,
        "before": BEFORE,
        "after": sha,
        "compare_url": f"{repo.html}/compare/{BEFORE}...{sha}",
        "commits": [commit],
        "total_commits": 1,
        "head_commit": commit,
        "repository": {
            "id": 140,
            "owner": _gitea_user(repo, repo.owner, 2),
            "name": repo.name,
            "full_name": repo.full_name,
            "description": "",
            "private": False,
            "fork": False,
            "html_url": repo.html,
            "ssh_url": f"ssh://git@{repo.host}/{repo.full_name}.git",
            "clone_url": repo.clone,
            "website": "",
            "stars_count": 0,
            "forks_count": 0,
            "watchers_count": 1,
            "open_issues_count": 0,
            "default_branch": "main",
            "created_at": "2026-01-05T10:00:00+01:00",
            "updated_at": "2026-11-23T20:00:00+01:00",
        },  # fmt: skip
        "pusher": _gitea_user(repo, "ada", 1),
        "sender": _gitea_user(repo, "ada", 1),
    }


# ---- signing ------------------------------------------------------------------


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
