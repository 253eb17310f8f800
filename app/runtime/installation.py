"""Which Docker objects belong to this installation: the ``slipway.installation`` label.

Two installations can share one engine (a staging and a production one, or an
installation and its own test suite), and their app and deployment ids overlap.
So every container, image, network and volume Slipway creates carries
``slipway.installation=<id>`` beside ``slipway.app`` / ``slipway.deployment``,
and every lookup, cleanup, reaper and prune keeps only the objects :func:`owns`
says are ours.

**Unlabelled objects** (a ``slipway.app`` label but no ``slipway.installation``)
were made before installations had ids. Docker cannot relabel a container or
an image, so adopting them cannot mean rewriting their labels. Instead, the
first installation whose worker starts after the upgrade claims all of them: it
creates the volume :data:`CLAIM_VOLUME` labelled with its id
(:func:`adopt_unlabelled`). Creating a volume that exists returns the existing
one, labels unchanged, so exactly one installation wins the claim, and the
claim lives on the engine itself, the only thing installations share. While
no installation has claimed them, unlabelled objects count as everyone's, as
they did before ids existed (one engine, one installation was the assumption
they were made under); once claimed, they are the claimant's alone. They fade
away with the deployments that made them, since new objects are all labelled.
"""

from __future__ import annotations

import logging
import time

from docker.errors import APIError, DockerException, NotFound
from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError

from app.extensions import db
from app.models import Installation
from app.runtime.engine import LABEL_APP, client

log = logging.getLogger("slipway.runtime")

LABEL_INSTALLATION = "slipway.installation"
CLAIM_VOLUME = "slipway-unlabelled-owner"
# How long a process trusts what it read about the claim (a web process may
# start before the worker claims).
CLAIM_CACHE_SECONDS = 60
_CACHE = "slipway.installation"


def _cache() -> dict:
    return current_app.extensions.setdefault(_CACHE, {})


def current_id() -> str | None:
    """This installation's id, read once from the database and kept for the process.

    ``None`` before first-run setup wrote the row: such an installation labels
    nothing with an id and sees only unclaimed unlabelled objects.
    """
    cache = _cache()
    if "id" not in cache:
        # Its own short connection, not the request's session: a log tail that
        # released its session before following Docker must not take it back.
        with db.engine.connect() as conn:
            found = conn.scalar(select(Installation.installation_id).limit(1))
        if found is None:
            return None  # not cached: setup may write the row any moment
        cache["id"] = found
    return cache["id"]


def labels() -> dict[str, str]:
    """The installation label every object Slipway creates carries (none before setup)."""
    mine = current_id()
    return {LABEL_INSTALLATION: mine} if mine else {}


def owns(object_labels: dict[str, str] | None) -> bool:
    """Whether a container, image or network with these labels is this installation's."""
    object_labels = object_labels or {}
    theirs = object_labels.get(LABEL_INSTALLATION)
    if theirs is not None:
        return theirs == current_id()
    return LABEL_APP in object_labels and _unlabelled_are_ours()


def _unlabelled_are_ours() -> bool:
    owner = claim_owner()
    return owner is None or owner == current_id()


def claim_owner() -> str | None:
    """The installation that claimed the unlabelled objects, or None (cached a minute)."""
    cache = _cache()
    read_at, owner = cache.get("claim", (None, None))
    if read_at is not None and time.monotonic() - read_at < CLAIM_CACHE_SECONDS:
        return owner
    engine = client(timeout=30)
    try:
        volume = engine.volumes.get(CLAIM_VOLUME)
        owner = (volume.attrs.get("Labels") or {}).get(LABEL_INSTALLATION)
    except NotFound:
        owner = None
    finally:
        engine.close()
    cache["claim"] = (time.monotonic(), owner)
    return owner


def adopt_unlabelled() -> int:
    """Claim the unlabelled Slipway objects on this engine unless another installation did.

    Run once when the worker starts. Returns how many unlabelled containers and
    images are now this installation's (0 when another installation holds the
    claim, or before setup; a later start adopts them).
    """
    try:
        mine = current_id()
    except SQLAlchemyError as exc:  # not migrated yet: the worker still starts
        log.warning("could not read the installation id: %s", exc)
        return 0
    if mine is None:
        return 0
    try:
        return _claim_and_count(mine)
    except (APIError, DockerException, OSError) as exc:  # the worker starts all the same
        log.warning("could not adopt unlabelled Slipway objects: %s", exc)
        return 0


def _claim_and_count(mine: str) -> int:
    engine = client(timeout=30)
    try:
        volume = engine.volumes.create(
            CLAIM_VOLUME, labels={"slipway": "1", LABEL_INSTALLATION: mine}
        )
        owner = (volume.attrs.get("Labels") or {}).get(LABEL_INSTALLATION)
        _cache()["claim"] = (time.monotonic(), owner)
        if owner != mine:
            log.info("unlabelled Slipway objects belong to installation %s", owner)
            return 0
        unlabelled = [
            obj
            for listing in (
                engine.containers.list(all=True, filters={"label": LABEL_APP}),
                engine.images.list(filters={"label": LABEL_APP}),
            )
            for obj in listing
            if LABEL_INSTALLATION not in (obj.labels or {})
        ]
    finally:
        engine.close()
    if unlabelled:
        log.info("installation %s adopted %d unlabelled objects", mine, len(unlabelled))
    return len(unlabelled)
