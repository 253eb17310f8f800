"""Push payloads from GitHub, GitLab and Gitea (and GitHub-shaped generic ones), and
whether a push deploys: tracked branch or tag pattern, exact repository, skip markers,
watch paths.

A payload is checked against a schema of every field Slipway reads before anything
reads it (:func:`load`, :func:`parse`): a field of a type the forge never sends is
:class:`Malformed`, never a crash and never quietly read as empty."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from urllib.parse import parse_qsl, urlsplit

from app import names
from app.models import Application

SKIP_MARKERS = ("[skip deploy]", "[skip ci]")
ZERO_SHA = re.compile(r"^0+$")
GITLAB_EVENTS = {"Push Hook": "push", "Tag Push Hook": "push", "System Hook": "system"}
FORM = "application/x-www-form-urlencoded"
FILE_LISTS = ("added", "modified", "removed")


class Malformed(ValueError):
    """The body is not a payload any forge sends (not JSON, nested too deeply, not an
    object, or a field of the wrong type); the message says which, for the delivery log."""


# ---- the schema ---------------------------------------------------------------
# A field is a tuple of accepted Python types, an _Object or a _List. Only the fields
# Slipway reads are listed; an absent one is fine (read as empty), others are ignored.


@dataclass(frozen=True)
class _Object:
    fields: dict
    nullable: bool = False


@dataclass(frozen=True)
class _List:
    item: object
    nullable: bool = False


STRING, OPTIONAL_STRING, WHOLE_NUMBER = (str,), (str, type(None)), (int,)
_FILES = _List(STRING, nullable=True)  # Gitea sends null for an empty list
_COMMIT = _Object({
    "id": STRING, "message": STRING,
    "author": _Object({"name": OPTIONAL_STRING, "username": OPTIONAL_STRING}, nullable=True),
    "added": _FILES, "modified": _FILES, "removed": _FILES,
})  # fmt: skip
_COMMITS = _List(_COMMIT, nullable=True)
GITHUB_PUSH = _Object({
    "ref": STRING, "after": STRING, "commits": _COMMITS,
    "head_commit": replace(_COMMIT, nullable=True),  # null when a branch is deleted
    "repository": _Object({k: OPTIONAL_STRING for k in ("clone_url", "ssh_url", "html_url",
                                                        "url")}),
    "total_commits": WHOLE_NUMBER,  # Gitea only
})  # fmt: skip
GITLAB_PUSH = _Object({
    "ref": STRING, "after": STRING, "checkout_sha": OPTIONAL_STRING, "commits": _COMMITS,
    "total_commits_count": WHOLE_NUMBER,
    "project": _Object({k: OPTIONAL_STRING for k in ("git_http_url", "git_ssh_url", "web_url",
                                                     "http_url", "ssh_url")}),
    "repository": _Object({k: OPTIONAL_STRING for k in ("url", "homepage", "git_http_url",
                                                        "git_ssh_url")}),
})  # fmt: skip
_NAMES = {str: "a string", int: "a whole number", type(None): "null"}


def _kind(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return {str: "a string", list: "a list", dict: "an object"}.get(type(value), "a value")


def _expected(spec) -> str:
    if isinstance(spec, tuple):
        return " or ".join(_NAMES[t] for t in spec)
    name = "an object" if isinstance(spec, _Object) else "a list"
    return f"{name} or null" if spec.nullable else name


def _check(value, spec, path: str) -> None:
    """Raise :class:`Malformed` naming the first field of ``value`` that ``spec`` refuses."""
    if isinstance(spec, tuple):
        ok = isinstance(value, spec) and not (isinstance(value, bool) and bool not in spec)
    elif value is None:
        ok = spec.nullable
    else:
        ok = isinstance(value, dict if isinstance(spec, _Object) else list)
    if not ok:
        raise Malformed(f"{path} is {_kind(value)}, not {_expected(spec)}")
    if isinstance(value, str):
        # Storable text only: PostgreSQL refuses NUL, UTF-8 refuses lone surrogates.
        if "\x00" in value or (not value.isascii() and not _encodable(value)):
            raise Malformed(f"{path} holds a character no forge sends (NUL or a lone surrogate)")
    elif isinstance(value, dict) and isinstance(spec, _Object):
        for key, sub in spec.fields.items():
            if key in value:
                _check(value[key], sub, f"{path}.{key}" if path else key)
    elif isinstance(value, list) and isinstance(spec, _List):
        for n, item in enumerate(value):
            _check(item, spec.item, f"{path}[{n}]")


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def load(body: bytes) -> dict:
    """The JSON object a delivery's body holds, or :class:`Malformed`."""
    try:
        payload = json.loads(body)
    except RecursionError:
        # The C decoder stops cleanly at the interpreter's recursion limit (~1,000 levels;
        # the body is at most 25 MiB): no forge nests anywhere near that.
        raise Malformed("the body is nested too deeply") from None
    except ValueError:  # also invalid UTF-8 and integers of more than 4,300 digits
        raise Malformed("the body is not JSON") from None
    if not isinstance(payload, dict):
        raise Malformed(f"the body is {_kind(payload)}, not a JSON object")
    return payload


def load_form(body: bytes) -> dict:
    """The JSON object in the ``payload`` field of a form-encoded body (GitHub's
    ``application/x-www-form-urlencoded`` content type), or :class:`Malformed`.

    Call it only once the signature over the raw body has been checked."""
    try:
        # surrogateescape keeps the percent-decoded bytes exactly, so invalid UTF-8 is
        # refused by the JSON decoder like in a JSON body, never silently replaced.
        fields = parse_qsl(body.decode("ascii"), keep_blank_values=True, strict_parsing=True,
                           errors="surrogateescape", max_num_fields=20)  # fmt: skip
    except ValueError:  # also UnicodeDecodeError: GitHub percent-encodes every byte
        raise Malformed("the form-encoded body is not a form") from None
    values = [value for name, value in fields if name == "payload"]
    if not values:
        raise Malformed("the form-encoded body has no payload field")
    if len(values) > 1:
        raise Malformed("the form-encoded body has more than one payload field")
    return load(values[0].encode("utf-8", "surrogateescape"))


def event_name(provider: str, header: str) -> str:
    """The event a delivery's event header names, as :class:`Push` spells it."""
    if provider == "gitlab":
        header = GITLAB_EVENTS.get(header, header)
    return header[:40] or "unknown"


@dataclass
class Push:
    """What Slipway needs from a push payload, whichever forge sent it."""

    event: str
    ref: str = ""
    after: str = ""
    repo_urls: set[str] = field(default_factory=set)
    message: str = ""
    author: str = ""
    # Every path the pushed commits added, modified or removed; None if the payload
    # does not say them all (``files_unknown`` says why): it lists only some commits
    # (forges cap the list at 20), no commits, or commits without file lists (Gitea's
    # documented example).
    changed: set[str] | None = None
    files_unknown: str = ""


def _dict(value) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value) -> str:
    return value if isinstance(value, str) else ""


def _changed(commits: list, total: int | None) -> tuple[set[str] | None, str]:
    """``(every changed path, "")``, or ``(None, why the files are unknown)``.

    ``total`` is the number of pushed commits when the payload says it; else a list of
    20 or more may have been cut at the forges' cap. A null file list is an empty one
    (Gitea sends null for none); a commit without one of the lists says nothing."""
    if not commits:
        return None, "the payload lists no commits"
    if total is not None and total > len(commits):
        return None, f"the payload lists {len(commits)} of {total} commits"
    if total is None and len(commits) >= 20:
        return None, f"the payload lists {len(commits)} commits, the most a forge lists"
    bare = sum(1 for c in commits if not all(key in _dict(c) for key in FILE_LISTS))
    if bare:
        return None, f"{bare} commit{'s carry' if bare > 1 else ' carries'} no file lists"
    paths: set[str] = set()
    for commit in commits:
        for key in FILE_LISTS:
            paths.update(p for p in _dict(commit).get(key) or [] if isinstance(p, str))
    return paths, ""


def _head(commits: list, after: str, head_commit: dict) -> dict:
    if head_commit:
        return head_commit
    for commit in commits:
        if _dict(commit).get("id") == after:
            return commit
    return _dict(commits[-1]) if commits else {}


def parse(provider: str, event: str, payload: dict) -> Push:
    """Read a push payload as the forge documents it (GitHub's shape for ``generic``).

    Raises :class:`Malformed` when a field Slipway reads has a type the forge never sends.
    """
    event = event_name(provider, event)
    if event == "ping":
        return Push(event="ping")
    if event != "push":
        return Push(event=event)
    _check(payload, GITLAB_PUSH if provider == "gitlab" else GITHUB_PUSH, "")
    commits = payload.get("commits") or []
    after = _str(payload.get("after"))
    if provider == "gitlab":
        after = _str(payload.get("checkout_sha")) or after
        project = _dict(payload.get("project"))
        repository = _dict(payload.get("repository"))
        urls = [project.get(k) for k in ("git_http_url", "git_ssh_url", "web_url", "http_url",
                                         "ssh_url")]  # fmt: skip
        urls += [repository.get(k) for k in ("url", "homepage", "git_http_url", "git_ssh_url")]
        total = payload.get("total_commits_count")  # GitLab always sends it
        changed, files_unknown = (
            _changed(commits, total) if isinstance(total, int)
            else (None, "the payload does not say how many commits were pushed")
        )  # fmt: skip
    else:
        repository = _dict(payload.get("repository"))
        urls = [repository.get(k) for k in ("clone_url", "ssh_url", "html_url", "url")]
        total = payload.get("total_commits")  # Gitea, not always; GitHub sends no total
        changed, files_unknown = _changed(commits, total if isinstance(total, int) else None)
    head = _head(commits, after, _dict(payload.get("head_commit")))
    author = _dict(head.get("author"))
    return Push(
        event="push",
        ref=_str(payload.get("ref")),
        after=after,
        repo_urls={u for u in urls if isinstance(u, str) and u},
        message=_str(head.get("message")),
        author=_str(author.get("name")) or _str(author.get("username")),
        changed=changed,
        files_unknown=files_unknown,
    )


def same_repository(a: str, b: str) -> bool:
    """Exactly the same repository: only the host's case, a trailing ``/`` and a
    ``.git`` suffix may differ. A URL that cannot be parsed is another repository."""
    try:
        return _canonical(a) == _canonical(b)
    except ValueError:  # urlsplit: "Invalid IPv6 URL", NFKC-invalid host names
        return False


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
    if patterns and push.changed is None:
        why = push.files_unknown
        return name, f"deployed without checking the watch paths: files unknown ({why})"
    if patterns and not _matches_any(push.changed, patterns):
        return None, "no changed file matches the watch paths"
    return name, "deployed"
