"""Images: building from a checkout, pulling, and pruning an app's old builds."""

from __future__ import annotations

import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from docker import utils as docker_utils
from docker.errors import APIError, DockerException, ImageNotFound
from flask import current_app

from app.runtime import installation
from app.runtime.engine import LABEL_APP, ContainerError, client
from app.runtime.engine import explain as _explain


def image_tag(app_id: int, deployment_id: int) -> str:
    """The tag a deployment's build gets; it names the installation (ids overlap)."""
    mine = installation.current_id()
    repository = f"slipway/{mine}/app-{app_id}" if mine else f"slipway/app-{app_id}"
    return f"{repository}:d{deployment_id}"


def _is_app_tag(tag: str, app_id: int) -> bool:
    """A tag :func:`image_tag` made for the app, now or before installations had ids."""
    mine = installation.current_id()
    prefixes = (f"slipway/app-{app_id}:",) + ((f"slipway/{mine}/app-{app_id}:",) if mine else ())
    return tag.startswith(prefixes)


def build_image(
    context: Path,
    dockerfile: Path,
    tag: str,
    labels: dict[str, str],
    *,
    on_line: Callable[[str], None],
    should_stop: Callable[[], bool],
) -> str:
    """Build ``tag`` from ``context``; stream output lines; return the image id.

    The image carries ``labels`` and the installation label, set by one ``LABEL`` line
    added to the end of the Dockerfile (see :func:`_labelled_dockerfile`).

    The build runs with a memory cap and a timeout. A watcher polls
    ``should_stop`` and the deadline even while the build prints nothing; to
    stop, it shuts the API connection down, and the engine then abandons the
    build and removes its intermediate container.
    """
    cfg = current_app.config
    timeout = cfg["BUILD_TIMEOUT_SECONDS"]
    engine = client(timeout=timeout)
    responses: list = []
    engine.api.hooks["response"].append(lambda response, *a, **k: responses.append(response))
    memory = cfg["BUILD_MEMORY_MB"] * 1024 * 1024
    labels = labels | installation.labels()
    reason: list[str] = []
    done = threading.Event()

    def watch() -> None:
        deadline = time.monotonic() + timeout
        while not done.wait(0.25):
            if should_stop():
                reason.append("stopped")
            elif time.monotonic() > deadline:
                reason.append(f"the build took longer than {timeout} s")
            if reason:
                _abort(responses)
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    tarball = None
    try:
        options = {
            "tag": tag, "rm": True, "forcerm": True, "pull": False, "decode": True,
            "nocache": False, "container_limits": {"memory": memory, "memswap": memory},
        }  # fmt: skip
        text = _labelled_dockerfile(dockerfile, labels)
        if text is not None:
            name = f".slipway-dockerfile-{secrets.token_hex(8)}"
            tarball = _context_tar(context, name, text)
            stream = engine.api.build(
                fileobj=tarball, custom_context=True, dockerfile=name, **options
            )
        else:
            dockerfile_arg = (
                str(dockerfile.relative_to(context)) if context in dockerfile.parents
                else str(dockerfile)
            )  # fmt: skip
            stream = engine.api.build(
                path=str(context), dockerfile=dockerfile_arg, labels=labels, **options
            )
        image_id = None
        lines = _BuildLines(on_line)
        for chunk in stream:
            lines.feed(chunk)
            if "error" in chunk:
                raise ContainerError(f"the build failed: {chunk['error'].strip()}")
            if "aux" in chunk and "ID" in chunk["aux"]:
                image_id = chunk["aux"]["ID"]
        lines.close()
        if reason:
            raise ContainerError(reason[0])
        return image_id or engine.images.get(tag).id
    except ContainerError:
        raise
    except Exception as exc:  # noqa: BLE001 - a cut connection surfaces as many types
        if reason:
            raise ContainerError(reason[0]) from None
        raise ContainerError(f"the build failed: {_explain(exc)}") from None
    finally:
        done.set()
        engine.close()
        if tarball is not None:
            tarball.close()


# What a label may be made of to go into the Dockerfile as is: no quote, space, ``$``
# (LABEL expands variables) or escape character. Slipway's keys and values (ids) are.
_PLAIN_LABEL = re.compile(r"[A-Za-z0-9._/:-]+")


def _labelled_dockerfile(dockerfile: Path, labels: dict[str, str]) -> str | None:
    """The Dockerfile's text with one ``LABEL`` line carrying ``labels`` appended, or
    None when that is not safe (the labels then go to the engine's build call).

    The legacy builder turns each label given to the build call into a ``LABEL`` step of
    its own, appended to the Dockerfile: an intermediate container and a commit per
    label (≈70 ms each on a 2-core VM). One ``LABEL`` line at the end is one step, and
    the same labels on the same (final) stage. Not done when a label is not plain, the
    file is not UTF-8, has no instruction, or its last instruction line ends with an
    escape character (the line would continue into ours).
    """
    if not labels or not all(_PLAIN_LABEL.fullmatch(f"{k}{v}") for k, v in labels.items()):
        return None
    try:
        text = dockerfile.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    instructions = [
        line.strip() for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]  # fmt: skip
    if not instructions or instructions[-1].endswith(("\\", "`")):
        return None
    if not text.endswith("\n"):
        text += "\n"
    return text + "LABEL " + " ".join(f'{key}="{value}"' for key, value in labels.items()) + "\n"


def _context_tar(context: Path, dockerfile_name: str, dockerfile_text: str):
    """The build context as the SDK would send it (``.dockerignore`` applied), with
    ``dockerfile_text`` added as ``dockerfile_name`` (a Dockerfile from outside the
    context travels the same way). A temporary file; the caller closes it."""
    exclude = None
    ignore = context / ".dockerignore"
    if ignore.is_file():
        lines = [line.strip() for line in ignore.read_text().splitlines()]
        exclude = [line for line in lines if line and not line.startswith("#")]
    return docker_utils.tar(
        str(context), exclude=exclude, dockerfile=(dockerfile_name, dockerfile_text)
    )


def _abort(responses: list) -> None:
    """Shut the socket of the streaming build response; the blocked read then fails."""
    for response in responses:
        connection = getattr(response.raw, "_connection", None)
        sock = getattr(connection, "sock", None)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


class _BuildLines:
    """Build output to lines. The engine forwards a RUN step's output in arbitrary
    pieces, so a ``stream`` chunk may end mid-line: the rest waits for the next one."""

    def __init__(self, on_line: Callable[[str], None]):
        self.on_line = on_line
        self.partial = ""

    def feed(self, chunk: dict) -> None:
        if "stream" not in chunk:
            for line in _chunk_lines(chunk):
                self.on_line(line)
            return
        *complete, self.partial = (self.partial + (chunk["stream"] or "")).split("\n")
        for line in complete:
            if line.strip():
                self.on_line(line.rstrip())

    def close(self) -> None:
        if self.partial.strip():
            self.on_line(self.partial.rstrip())
        self.partial = ""


def _chunk_lines(chunk: dict) -> Iterator[str]:
    text = chunk.get("stream") or chunk.get("status") or ""
    if chunk.get("progress"):
        text = f"{text} {chunk['progress']}"
    for line in text.splitlines():
        if line.strip():
            yield line.rstrip()


def _split_ref(ref: str) -> tuple[str, str]:
    """``repo[:tag]`` → (repo, tag); a digest reference keeps its ``@sha256:…``."""
    if "@" in ref:
        repo, _, digest = ref.partition("@")
        return repo, digest
    last = ref.split("/")[-1]
    if ":" in last:
        repo, _, tag = ref.rpartition(":")
        return repo, tag
    return ref, "latest"


@dataclass(frozen=True)
class Pulled:
    id: str
    # ``repo@sha256:…`` the image has in its registry: the one just pulled, or, when the
    # pull failed, the one the local image was pulled or pushed with (None: never was).
    digest: str | None
    pulled: bool
    reason: str = ""  # why it was not pulled (the local image was used)


def pull_image(ref: str, on_line: Callable[[str], None]) -> Pulled:
    """Pull ``ref`` every time (a tag such as ``:latest`` moves), returning the image id
    and the digest it has in its registry.

    When the pull fails but the engine has an image of that name (built on this host,
    or a registry that is down), that one is used and ``reason`` says why: a deploy
    does not fail for a registry outage, and the log says what ran."""
    repo, tag = _split_ref(ref)
    engine = client(timeout=600)
    try:
        on_line(f"pulling {ref}")
        failure = ""
        try:
            for chunk in engine.api.pull(repo, tag=tag, stream=True, decode=True):
                for line in _chunk_lines(chunk):
                    on_line(line)
                if "error" in chunk:
                    failure = str(chunk["error"]).strip()
                    break
        except (APIError, DockerException) as exc:
            failure = _explain(exc)
        try:
            image = engine.images.get(ref)
        except ImageNotFound:
            raise ContainerError(f"pulling {ref} failed: {failure or 'no such image'}") from None
        return Pulled(image.id, _repo_digest(image.attrs, repo), not failure, failure)
    except (APIError, DockerException) as exc:
        raise ContainerError(f"pulling {ref} failed: {_explain(exc)}") from None
    finally:
        engine.close()


def _repo_digest(attrs: dict, repo: str) -> str | None:
    """The ``repo@sha256:…`` of the image in ``repo``'s registry (Docker Hub names are
    recorded as ``docker.io/library/…``-less short names, as the engine lists them)."""
    listed = _familiar(repo)
    for digest in attrs.get("RepoDigests") or []:
        if digest.partition("@")[0] == listed:
            return digest
    return None


def _familiar(repo: str) -> str:
    """``repo`` as the engine lists it: Docker Hub's ``docker.io/`` (or the legacy
    ``index.docker.io/``) and an official image's ``library/`` left out."""
    first, _, rest = repo.partition("/")
    if rest and first in ("docker.io", "index.docker.io"):
        repo = rest
    elif rest and ("." in first or ":" in first or first == "localhost"):
        return repo  # another registry's names are listed as written
    short = repo.removeprefix("library/")
    return short if "/" not in short else repo


@dataclass(frozen=True)
class ImageFacts:
    id: str
    labels: dict[str, str]


def inspect_image(ref: str) -> ImageFacts | None:
    """The content id and labels of a local image (by name or id), or None."""
    engine = client(timeout=30)
    try:
        found = engine.images.get(ref)
        return ImageFacts(found.id, dict(found.labels or {}))
    except ImageNotFound:
        return None
    except (APIError, DockerException) as exc:
        raise ContainerError(f"reading image {ref} failed: {_explain(exc)}") from None
    finally:
        engine.close()


def _is_build_of(facts: ImageFacts, app_id: int) -> bool:
    return installation.owns(facts.labels) and facts.labels.get(LABEL_APP) == str(app_id)


def check_not_a_build(facts: ImageFacts, app_id: int) -> None:
    """An image app may run any image but one Slipway built for another app (of this or
    another installation): those carry Slipway's app label."""
    if LABEL_APP in facts.labels and not _is_build_of(facts, app_id):
        raise ContainerError(
            "this image was built by Slipway for another app; an image app cannot run it"
        )


def kept_image(ref: str, *, app_id: int, image_id: str | None) -> str:
    """The id of the image a rollback starts: the one the deployment recorded.

    With a recorded id, that image (by id: a tag can move) must still exist and, if
    Slipway built it, be this installation's build of this app. Without one (rows from
    before ids were recorded), the tag's image must be this app's build when the tag is
    a Slipway one."""
    facts = inspect_image(image_id or ref)
    gone = ContainerError("the image of that deployment is no longer kept; deploy again instead")
    if facts is None:
        raise gone
    built_tag = _is_app_tag(ref, app_id) or ref.startswith("slipway/")
    if (LABEL_APP in facts.labels or built_tag) and not _is_build_of(facts, app_id):
        raise ContainerError(
            f"the image {ref} is not this app's build any more (another installation's "
            "build may have taken its name); deploy again instead"
        )
    return facts.id


def image_exists(ref: str) -> bool:
    engine = client(timeout=30)
    try:
        engine.images.get(ref)
        return True
    except ImageNotFound:
        return False
    finally:
        engine.close()


def prune_images(app_id: int, keep_tags: set[str]) -> list[str]:
    """Remove this app's Slipway-built images except ``keep_tags``; returns removed tags.

    Only this installation's images: another one's app of the same id is not ours.
    """
    engine = client(timeout=120)
    removed = []
    try:
        for image in _app_images(engine, app_id):
            tags = image.tags
            if set(tags) & keep_tags:
                continue
            try:
                engine.images.remove(image.id, force=False, noprune=False)
                removed.extend(tags)
            except ImageNotFound:
                removed.extend(tags)  # removed meanwhile by a racing cleanup
            except APIError:
                continue  # still used by a container; a later cleanup takes it
    finally:
        engine.close()
    return removed


def app_images(app_id: int) -> list[str]:
    """The tags of this installation's images built for the app (what a cleanup left)."""
    engine = client(timeout=60)
    try:
        return [t for image in _app_images(engine, app_id) for t in image.tags]
    finally:
        engine.close()


@dataclass(frozen=True)
class _Listed:
    id: str
    tags: list[str]


def _app_images(engine, app_id: int) -> list[_Listed]:
    """This installation's images of the app, from one listing call: the SDK's
    ``images.list`` fetches each image again, and one removed meanwhile by a racing
    cleanup raised ImageNotFound."""
    found = []
    for row in engine.api.images(filters={"label": f"{LABEL_APP}={app_id}"}):
        tags = [t for t in row.get("RepoTags") or [] if _is_app_tag(t, app_id)]
        if installation.owns(row.get("Labels") or {}) and tags:
            found.append(_Listed(row["Id"], tags))
    return found
