"""An app's health: what its routed replicas do now, apart from its last deployment.

The runtime watcher (``app.runtime.watch``) calls :func:`check` for an app whenever
one of its containers changes and at every reconcile. It recomputes the route
(``routing.refresh``: dead replicas out, restarted ones back at their new address),
then stores the health of what is routed:

- ``up``: every replica the deployment was routed with serves;
- ``degraded``: some serve, some do not;
- ``crash-looping``: none serves and a replica was restarted by the engine
  :data:`CRASH_LOOP_RESTARTS` times within :data:`CRASH_LOOP_SECONDS`;
- ``restarting``: none serves and the engine is restarting one (its back-off);
- ``down``: none serves (exited, killed, OOM-killed, paused, removed);
- None: nothing was ever routed.

``health_detail`` keeps a one-line summary (what notifications say) and, per
replica that does not serve, its state, exit code, whether it was OOM-killed and
its last lines (secret values redacted, escape codes removed, cut), which the app
page shows. ``app.down``, ``app.crash_looping`` and ``app.recovered`` go to the
team's channels when what serves changes, except while the routed deployment is in
its switch or watch window (``deploying``): the pipeline owns that verdict. Which
incident was announced is kept in Redis (``slipway:health-alerted:<app>``), so
that recovering from it is announced once.
"""

from __future__ import annotations

import logging

from redis.exceptions import RedisError
from sqlalchemy import update

from app import notify
from app.deploys import buildlog, control, livestatus, routing
from app.extensions import db, redis
from app.live import logformat
from app.models import Application, Deployment, DeploymentStatus, NotificationEvent
from app.models.base import utcnow
from app.projects import envvars
from app.runtime import containers

log = logging.getLogger("slipway.health")

UP, DEGRADED, DOWN, RESTARTING, CRASH_LOOPING = (
    "up", "degraded", "down", "restarting", "crash-looping",
)  # fmt: skip
SERVING = (UP, DEGRADED)
ALERTING = (DOWN, CRASH_LOOPING)
CRASH_LOOP_RESTARTS = 3
CRASH_LOOP_SECONDS = 60.0
LAST_LINES = 10
LINE_CHARS = 300
ALERTED_KEY = "slipway:health-alerted:{}"


def check(app_id: int, watcher=None) -> str | None:
    """Recompute the app's route and health; returns the health (None: nothing routed).

    ``watcher`` (an ``app.runtime.watch.Watcher``) counts the engine's restarts."""
    app = db.session.get(Application, app_id)
    if app is None:
        return None
    leaving = watcher.leaving() if watcher else frozenset()
    found, replicas = routing.refresh(app, leaving)
    if found is None:
        current = control.current(app.id)
        if current is None:
            return None
        routing.adopt(app, current.id)  # routed before routed_deployment_id existed
        found, replicas = routing.refresh(app, leaving)
        if found is None:
            return None
    replicas += _gone(app, found.deployment_id, replicas)
    restarts = {r.id: watcher.restarts(r.id, CRASH_LOOP_SECONDS) if watcher else 0
                for r in replicas}  # fmt: skip
    health, detail = judge(replicas, found.replicas, restarts)
    detail["deployment_id"] = found.deployment_id
    deployment = db.session.get(Deployment, found.deployment_id)
    in_window = deployment is not None and deployment.status == DeploymentStatus.deploying.value
    db.session.refresh(app)
    detail["replicas"] = _with_last_lines(app, detail["replicas"])
    changed = _store(app, found.deployment_id, health, detail)
    if changed:
        livestatus.publish_health(app)
    if not in_window:
        _announce(app, health)
    return health


def _gone(app: Application, deployment_id: int, replicas: list) -> list:
    """Replicas of the routed deployment seen before and not listed now: removed."""
    before = app.health_detail or {}
    if before.get("deployment_id") != deployment_id:
        return []
    listed = {r.id for r in replicas}
    return [
        containers.ReplicaFacts(f["id"], f["name"], f.get("replica", "?"), "gone", "")
        for f in before.get("replicas", [])
        if f.get("id") and f["id"] not in listed
    ]


def judge(replicas: list[containers.ReplicaFacts], expected: int,
          restarts: dict[str, int]) -> tuple[str, dict]:  # fmt: skip
    """The health of a routed version and why, from its replicas' facts."""
    serving = [r for r in replicas if r.serving]
    looping = [r for r in replicas if restarts.get(r.id, 0) >= CRASH_LOOP_RESTARTS]
    expected = max(expected, len(replicas))
    missing = expected - len(replicas)
    if serving and len(serving) == expected and not looping:
        health = UP
    elif serving:
        health = DEGRADED
    elif looping:
        health = CRASH_LOOPING
    elif any(r.state == "restarting" for r in replicas):
        health = RESTARTING
    else:
        health = DOWN
    notes = [_note(r, restarts.get(r.id, 0)) for r in replicas if not r.serving or r in looping]
    if missing > 0:
        notes.append(f"{missing} replica(s) removed")
    summary = f"{len(serving)} of {expected} replica(s) serving"
    if notes:
        summary += ": " + "; ".join(notes)
    facts = [
        {
            "name": r.name, "replica": r.replica, "state": r.state, "exit_code": r.exit_code,
            "oom_killed": r.oom_killed, "error": r.error[:300], "finished_at": r.finished_at,
            "restarts": restarts.get(r.id, 0), "id": r.id,
            "serving": r.serving and r not in looping,
        }
        for r in replicas
    ]  # fmt: skip
    return health, {"summary": summary, "replicas": facts}


def _note(r: containers.ReplicaFacts, restarts: int) -> str:
    """What a replica is doing, in a few words (no output: notifications carry this)."""
    if r.state == "gone":
        return f"{r.name} was removed"
    if restarts >= CRASH_LOOP_RESTARTS:
        code = f", last exit code {r.exit_code}" if r.exit_code is not None else ""
        return f"{r.name} restarted {restarts} times in {CRASH_LOOP_SECONDS:.0f} s{code}"
    if r.state == "running":
        return f"{r.name} runs but has no address on its network"
    if r.state == "restarting":
        return f"{r.name} is being restarted (exit code {r.exit_code})"
    if r.oom_killed:
        return f"{r.name} was killed: out of memory (exit code {r.exit_code})"
    if r.state == "paused":
        return f"{r.name} is paused"
    if r.state == "stopping":
        return f"{r.name} is being stopped"
    if r.exit_code is not None:
        return f"{r.name} exited with code {r.exit_code}"
    return f"{r.name} is {r.state}"


def _with_last_lines(app: Application, facts: list[dict]) -> list[dict]:
    """Each non-serving replica's last lines, redacted; kept from the stored detail when
    the container's run has not changed, or when it is gone (its output went with it)."""
    before = {f.get("name"): f for f in (app.health_detail or {}).get("replicas", [])}
    secrets = None
    for fact in facts:
        if fact["serving"]:
            continue
        old = before.get(fact["name"]) or {}
        same_run = old.get("finished_at") == fact["finished_at"] and "lines" in old
        if fact["state"] == "gone" or same_run:
            fact["lines"] = old.get("lines", [])
            continue
        if secrets is None:
            secrets = buildlog.secrets_to_redact(envvars.secret_values(app))
        raw = containers.replica_logs(fact["id"], tail=LAST_LINES)
        fact["lines"] = [
            logformat.cut(logformat.plain(buildlog.redact(line, secrets)).rstrip(), LINE_CHARS)
            for line in raw
            if logformat.plain(line).strip()
        ][-LAST_LINES:]
    return facts


def _store(app: Application, deployment_id: int, health: str, detail: dict) -> bool:
    """Write the health unless another version was routed meanwhile; True if it changed."""
    if app.health == health and app.health_detail == detail:
        return False
    since = app.health_since if app.health == health and app.health_since else utcnow()
    written = db.session.execute(
        update(Application)
        .where(Application.id == app.id, Application.routed_deployment_id == deployment_id)
        .values(health=health, health_detail=detail, health_since=since,
                updated_at=Application.updated_at)
    ).rowcount  # fmt: skip
    db.session.commit()
    if written:
        db.session.refresh(app)
    return bool(written)


def _announce(app: Application, health: str) -> None:
    """Tell the team when the app stops serving, crash-loops, or serves again."""
    key = ALERTED_KEY.format(app.id)
    try:
        alerted = redis.client.get(key)
        alerted = alerted.decode() if isinstance(alerted, bytes) else alerted
        if health in ALERTING and alerted != health:
            what = (NotificationEvent.app_down if health == DOWN
                    else NotificationEvent.app_crash_looping)  # fmt: skip
            redis.client.set(key, health)
            notify.event(app.project.team_id, what, app.id)
        elif health in SERVING and alerted:
            redis.client.delete(key)
            notify.event(app.project.team_id, NotificationEvent.app_recovered, app.id)
    except RedisError:
        log.warning("app %s: could not record which health change was announced", app.id)


def view(app: Application) -> dict | None:
    """What the app page shows about its health (None: nothing routed yet)."""
    if app.health is None:
        return None
    detail = app.health_detail or {}
    return {
        "health": app.health,
        "since": app.health_since,
        "summary": detail.get("summary", ""),
        "replicas": [r for r in detail.get("replicas", []) if not r.get("serving")],
    }
