"""Build slots: at most ``BUILD_CONCURRENCY`` builds (clone + build) at once.

The slots are shared by every worker process on the Redis. Two sorted sets of
deployment ids keep them: the holders, and the waiters in queue order (by id,
so the deployment queued first builds first). Taking a slot is one Lua script:
holders and waiters whose heartbeat key (``slipway:deploy-alive:<id>``, kept by
the pipeline from the moment its job starts) has expired are dropped first, so
a worker killed while building or waiting frees its place within the heartbeat's
TTL. Only deployments that need a build take a slot (``Deployment.needs_build``);
the rest of a deployment (start, health, switch and what follows) holds none.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import current_app
from redis.exceptions import RedisError
from sqlalchemy import select

from app.deploys import livestatus
from app.extensions import db, redis
from app.models import Application, Deployment, DeploymentStatus

log = logging.getLogger("slipway.slots")
HOLDERS = "slipway:build-slots"
WAITERS = "slipway:build-waiting"
# How often a waiting build tries again, and how often it checks its row is still queued.
POLL_SECONDS = 0.2
CHECK_SECONDS = 1.0

# KEYS: holders, waiters. ARGV: deployment id, slots, heartbeat key prefix. 1 = taken.
_TAKE = """
local function alive(id) return redis.call('exists', ARGV[3] .. id) == 1 end
for _, id in ipairs(redis.call('zrange', KEYS[1], 0, -1)) do
  if id ~= ARGV[1] and not alive(id) then redis.call('zrem', KEYS[1], id) end
end
if redis.call('zscore', KEYS[1], ARGV[1]) then return 1 end
redis.call('zadd', KEYS[2], 'NX', ARGV[1], ARGV[1])
local free = tonumber(ARGV[2]) - redis.call('zcard', KEYS[1])
if free <= 0 then return 0 end
local ahead = 0
for _, id in ipairs(redis.call('zrange', KEYS[2], 0, -1)) do
  if id == ARGV[1] then break end
  if alive(id) then ahead = ahead + 1 else redis.call('zrem', KEYS[2], id) end
end
if ahead >= free then return 0 end
redis.call('zrem', KEYS[2], ARGV[1])
redis.call('zadd', KEYS[1], ARGV[1], ARGV[1])
return 1
"""


@contextmanager
def build_slot(
    deployment_id: int, *, alive_prefix: str, while_waiting: Callable[[], None]
) -> Iterator[bool]:
    """Hold a build slot for the block; yields whether it had to wait for one.

    ``while_waiting`` is called about every second of the wait; it raises to give
    up (the row was cancelled or superseded meanwhile). The slot is given back
    when the block ends, however it ends.
    """
    client = redis.client
    take = client.register_script(_TAKE)
    limit = current_app.config["BUILD_CONCURRENCY"]
    waited, checked = False, time.monotonic()
    try:
        while not take(keys=[HOLDERS, WAITERS], args=[deployment_id, limit, alive_prefix]):
            if not waited:
                log.info("deployment %s waits for a build slot", deployment_id)
                waited = True
            if time.monotonic() - checked >= CHECK_SECONDS:
                while_waiting()
                checked = time.monotonic()
            time.sleep(POLL_SECONDS)
        yield waited
    finally:
        try:
            with client.pipeline() as pipe:
                pipe.zrem(WAITERS, deployment_id).zrem(HOLDERS, deployment_id).execute()
        except RedisError:
            log.warning("deployment %s: its build slot frees when its heartbeat expires",
                        deployment_id)  # fmt: skip
        _announce_waiters(deployment_id)


def _announce_waiters(released_by: int) -> None:
    """Tell the pages of queued builds that the line moved (their "N builds ahead")."""
    try:
        waiting = db.session.scalars(
            select(Deployment)
            .join(Application, Application.id == Deployment.application_id)
            .where(
                Deployment.status == DeploymentStatus.queued.value,
                Deployment.id != released_by,
                Application.source_type == "git",
                Deployment.image_id.is_(None),
            )
            .limit(50)
        ).all()
        if waiting:
            livestatus.publish(waiting)
    except Exception:  # noqa: BLE001 - only a page's note is late: it catches up on reload
        log.warning("could not announce the build queue after deployment %s", released_by)
