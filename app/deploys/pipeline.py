"""The deploy pipeline, run by the worker for one deployment id.

clone → build (or pull the image, or the kept image of a rollback, apply or
restart) → start the new container(s) with the release's env and settings →
health gate (each replica answers 2xx) → switch routing at once → watch window
(the old version keeps running; an exit, restart or failed health check reverts
to it) → ``running`` → drain and stop the old version. Any failure removes the new
containers, leaves (or puts back) the old version serving, and records the reason
on the row. A cancelled build stops where it is. A heartbeat key tells the reaper
this run is alive.

An app with an active ``exclusive`` volume never has two containers on it: the old
version is stopped (and kept) before the new one starts, the route holds requests with
Traefik's retry middleware meanwhile, and the gap (old stopped → new healthy) is
stored as ``volume_gap_ms``. If the new version fails, it is removed and the old one
started again: until then nothing serves (the price of one writer). Such an app runs
one replica whatever its setting says (two replicas would be two writers).
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from datetime import timedelta
from pathlib import Path

from flask import current_app
from redis.exceptions import LockError, RedisError
from sqlalchemy import select, update

from app import crypto, names, outbound
from app.databases import engines, links
from app.deploys import buildlog, control, livestatus, routing, slots
from app.extensions import db, redis
from app.heartbeat import Heartbeat
from app.live import logformat
from app.models import ACTIVE_STATUSES, Application, Deployment, DeploymentStatus, DeployStep
from app.models.base import utcnow
from app.models.deployments import REUSE_TRIGGERS
from app.projects import envvars, volumes
from app.proxy import traefik
from app.runtime import containers
from app.runtime import volumes as runtime_volumes
from app.sources import credentials, gitsrc

log = logging.getLogger("slipway.pipeline")
ALIVE_KEY = "slipway:deploy-alive:{}"
ALIVE_TTL = 20
LOCK_KEY = "slipway:deploy-lock:{}"
# The per-app lock lives this long unless the heartbeat extends it: a killed
# worker frees its app within a minute.
LOCK_TTL = 60
# A deployment waits this long at most for the previous one of its app, trying every poll.
LOCK_WAIT_SECONDS = 3600
LOCK_POLL_SECONDS = 0.1
# A failure's reason ends with the container's last few lines, each cut this short.
LAST_WORDS = 3
LAST_WORD_CHARS = 200
# The watch window looks at the new replicas this often (a crash → revert well within
# 2 s), and probes their health path every HEALTH_EVERY-th look; this many probes in
# a row must fail to revert (one slow answer is not a failure).
WATCH_TICK = 0.2
HEALTH_EVERY = 3
HEALTH_MISSES = 2


class Cancelled(Exception):
    pass


class HealthError(Exception):
    pass


class Reverted(Exception):
    """The new version failed in its watch window; routing went back to the old one."""


STEP_ERRORS = (
    gitsrc.GitError, containers.ContainerError, traefik.ProxyError, HealthError, names.InvalidValue,
    crypto.SecretError,
)  # fmt: skip


def is_alive(deployment_id: int) -> bool:
    return bool(redis.client.exists(ALIVE_KEY.format(deployment_id)))


def run(deployment_id: int) -> str:
    """Run the pipeline for one deployment; returns its final status.

    The job's thread waits here for the app's lock (the previous deployment of the
    app finishing) and, in the build, for a build slot (``app.deploys.slots``); the
    worker gives every deployment a thread of its own (``app.lanes``), so neither
    wait holds up another app. The heartbeat runs from the start, waits included:
    the reaper and the build slots tell a live wait from a dead worker by it.
    """
    deployment = db.session.get(Deployment, deployment_id)
    if deployment is None or deployment.status != DeploymentStatus.queued.value:
        return deployment.status if deployment else "missing"
    # thread_local=False: the heartbeat thread extends the lock.
    lock = redis.client.lock(
        LOCK_KEY.format(deployment.application_id), timeout=LOCK_TTL, thread_local=False
    )
    holding = threading.Event()
    heartbeat = Heartbeat(
        ALIVE_KEY.format(deployment_id), ALIVE_TTL, interval=5,
        also=lambda: holding.is_set() and lock.extend(LOCK_TTL, replace_ttl=True),
    )  # fmt: skip
    heartbeat.start()
    runner = None
    try:
        waited = _wait_for_app(lock, deployment_id, deployment.application_id)
        if waited is None:
            return _give_up(deployment_id)
        holding.set()
        if _status(deployment_id) != DeploymentStatus.queued.value:
            return _status(deployment_id)  # superseded or cancelled just before
        runner = _Run(deployment_id)
        status = runner.execute()
    finally:
        heartbeat.stop()
        if holding.is_set():
            try:
                lock.release()
                control.wake(deployment.application_id, "lock")  # the next one waits for it
            except LockError:
                pass  # it expired (a long stall): another run may hold it now, and keeps it
            except RedisError:
                log.warning("deployment %s: the app lock could not be released; it expires "
                            "by itself within %s s", deployment_id, LOCK_TTL)  # fmt: skip
    # Draining and stopping the old version happens after the lock is released:
    # the next deployment of this app need not wait for it.
    runner.retire_previous()
    return status


def _status(deployment_id: int) -> str | None:
    db.session.rollback()  # a fresh read, not the snapshot of an open transaction
    return db.session.scalar(select(Deployment.status).where(Deployment.id == deployment_id))


def _wait_for_app(lock, deployment_id: int, app_id: int) -> bool | None:
    """Take the app's deploy lock; False if it was free, True after waiting, None if the
    row stopped being queued meanwhile (superseded, cancelled) or the wait timed out."""
    if lock.acquire(blocking=False):
        return False
    log.info("deployment %s waits for the previous deployment of its app", deployment_id)
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    checked = time.monotonic()
    while time.monotonic() < deadline:
        control.nap(app_id, "lock", LOCK_POLL_SECONDS)  # woken when the lock is released
        if lock.acquire(blocking=False):
            return True
        if time.monotonic() - checked >= 1:
            if _status(deployment_id) != DeploymentStatus.queued.value:
                return None
            checked = time.monotonic()
    return None


def _give_up(deployment_id: int) -> str:
    deployment = db.session.get(Deployment, deployment_id)
    if deployment.status == DeploymentStatus.queued.value:
        deployment.mark_failed("another deployment of this app did not finish in time")
        db.session.commit()
        livestatus.publish(deployment)
    return deployment.status


class _Run:
    def __init__(self, deployment_id: int):
        self.dep = db.session.get(Deployment, deployment_id)
        self.app: Application = self.dep.application
        self.cfg = current_app.config
        # The release (env and settings) is settled in execute(): it may fail.
        self.env: dict[str, str] = {}
        self.settings = self.dep.runtime_settings or control.runtime_settings(self.app)
        self.log = buildlog.BuildLog(deployment_id, envvars.secret_values(self.app))
        self.workdir = Path(self.cfg["BUILDS_DIR"]) / f"d{deployment_id}"
        self.new_containers: list[str] = []
        self.switched = False
        self.to_retire: list[int] = []
        self.previous = control.current(self.app.id)
        # Exclusive volumes: the old version's containers, stopped before this one started
        # (started again if this one fails), and when they had stopped.
        self.stopped_previous: list[str] = []
        self.gap_from: float | None = None
        self.redis = redis.client
        self.cancel_key = control.CANCEL_KEY.format(deployment_id)

    # -- state -------------------------------------------------------------

    def _advance(self, status: DeploymentStatus, step: DeployStep | None) -> None:
        """Move to ``status``/``step`` unless someone cancelled or superseded the row; the
        step's ``── <step>`` log line is committed with it (one commit, not two)."""
        changed = db.session.execute(
            update(Deployment)
            .where(
                Deployment.id == self.dep.id,
                Deployment.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
            .values(status=status.value, step=step.value if step else None)
        ).rowcount
        if changed and step:
            self.log.info(f"── {step.value}")
            self.log.flush()  # commits the step with its line, then publishes the line
        db.session.commit()  # (nothing left to commit when the flush did)
        db.session.refresh(self.dep)
        if not changed:
            raise Cancelled()
        livestatus.publish(self.dep)

    def _check_cancel(self) -> bool:
        # Called from watcher threads too, which have no app context.
        return bool(self.redis.exists(self.cancel_key))

    # -- run ---------------------------------------------------------------

    def execute(self) -> str:
        self.dep.started_at = utcnow()
        db.session.commit()
        try:
            self._release()
            image = self._image()
            self._advance(DeploymentStatus.deploying, DeployStep.start)
            replicas = self._start(image)
            self._advance(DeploymentStatus.deploying, DeployStep.health)
            self._health_gate(replicas)
            self._advance(DeploymentStatus.deploying, DeployStep.switch)
            self._switch(replicas)
            self._watch(replicas)
            self._finish()
        except Reverted as exc:
            self._undo()
            self._end(DeploymentStatus.failed, str(exc))
        except Cancelled:
            self._undo()
            where = f" during {self.dep.step}" if self.dep.step else ""
            self._end(DeploymentStatus.cancelled, f"cancelled{where}")
        except STEP_ERRORS as exc:
            self._undo()
            self._end(DeploymentStatus.failed, str(exc))
        except Exception as exc:  # noqa: BLE001 - the row must say why, whatever it was
            log.exception("deployment %s failed", self.dep.id)
            self._undo()
            self._end(DeploymentStatus.failed, f"internal error: {type(exc).__name__}: {exc}")
        finally:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.log.close()
        return self.dep.status

    def _release(self) -> None:
        """The env and settings this deployment runs with, recorded on the row: those it
        was queued with (a rollback's), else the app's today."""
        if self.dep.env_ciphertext:
            recorded = envvars.open_snapshot(self.dep.env_ciphertext)
            env = {key: value for key, (value, _) in recorded.items()}
            secrets = [value for value, secret in recorded.values() if secret]
            self.log.secrets = buildlog.secrets_to_redact(envvars.secret_values(self.app) + secrets)
        else:
            env = envvars.decrypted(self.app)
            self.dep.env_ciphertext = envvars.snapshot(self.app)
            self.dep.env_digest = envvars.stored_digest(self.app)
            self.dep.env_source = self.dep.env_source or "current"
        self.watch_seconds = float(
            self.cfg["WATCH_SECONDS"] if self.app.watch_seconds is None else self.app.watch_seconds
        )
        self.dep.settings = json.dumps(self.settings | {"watch_seconds": self.watch_seconds})
        db.session.commit()
        # Linked databases' variables: from their credentials now, never from a snapshot
        # (a rollback after a password rotation must connect); the app's own env wins.
        linked = links.variables_for(self.app)
        if linked:
            self.log.secrets = buildlog.secrets_to_redact(
                list(self.log.secrets) + [v for k, v in linked.items() if engines.is_secret(k)]
            )
        self.env = {"PORT": str(self.settings["container_port"])} | linked | env

    def _image(self) -> str:
        if self.dep.trigger in REUSE_TRIGGERS:
            self._advance(DeploymentStatus.deploying, None)
            self.log.info(self._reuse_line())
            if not self.dep.image_tag:
                raise containers.ContainerError(
                    "the image of that deployment is no longer kept; deploy again instead"
                )
            # The recorded id, checked to be this app's build: never whatever the tag
            # names now (another installation's build may have moved it).
            image_id = containers.kept_image(
                self.dep.image_tag, app_id=self.app.id, image_id=self.dep.image_id
            )
            self._record_image(self.dep.image_tag, image_id)
            return image_id
        if self.app.source_type == "image":
            return self._pull()
        return self._build_in_slot()

    def _build_in_slot(self) -> str:
        """Clone and build while holding a build slot (``app.deploys.slots``); the
        deployment gives it back as soon as the image is built."""
        with slots.build_slot(self.dep.id, alive_prefix=ALIVE_KEY.format(""),
                              while_waiting=self._still_queued) as waited:  # fmt: skip
            if waited:
                self.dep.started_at = utcnow()  # it started now; it was queued until now
                db.session.commit()
            return self._clone_and_build()

    def _still_queued(self) -> None:
        if _status(self.dep.id) != DeploymentStatus.queued.value:
            raise Cancelled()

    def _reuse_line(self) -> str:
        """What a deployment without a build starts, and with which env, for the log."""
        of = self.dep.rollback_of_id
        if self.dep.trigger == "apply":
            return f"applying today's env and settings to the serving image {self.dep.image_tag}"
        if self.dep.trigger == "restart":
            return f"restarting the serving image {self.dep.image_tag} with today's values"
        env = {
            "restored": f"with the env and settings deployment #{of} ran with",
            "kept": f"with today's env (kept, as asked) and the settings #{of} ran with",
            "unrecorded": f"with today's env and settings: deployment #{of} recorded none",
        }.get(self.dep.env_source or "", "")
        return f"rolling back to the image of deployment #{of} {env}".rstrip()

    def _pull(self) -> str:
        """An image app pulls on every deploy (its tag may have moved) and records the
        digest it runs."""
        self._advance(DeploymentStatus.building, DeployStep.build)
        ref = names.image(self.app.image or "")
        pulled = containers.pull_image(ref, self.log.line)
        if not pulled.pulled:
            self.log.info(f"could not pull {ref} ({pulled.reason}); deploying the image "
                          "the engine has under that name")  # fmt: skip
        facts = containers.inspect_image(pulled.id)
        if facts is None:
            raise containers.ContainerError(f"the image {ref} is not on the engine")
        containers.check_not_a_build(facts, self.app.id)
        self.dep.image_digest = pulled.digest
        if pulled.digest:
            self.log.info(f"digest {pulled.digest}")
        self._record_image(ref, facts.id)
        return facts.id

    def _record_image(self, tag: str, image_id: str) -> None:
        """The image a deployment runs: its name for people, its id for the engine."""
        self.dep.image_tag, self.dep.image_id = tag, image_id
        db.session.commit()
        self.log.info(f"image {tag} ({image_id.removeprefix('sha256:')[:12]})")

    def _clone_and_build(self) -> str:
        self._advance(DeploymentStatus.building, DeployStep.clone)
        shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir.parent.mkdir(parents=True, exist_ok=True)
        try:
            # A webhook deployment builds the pushed commit (and the pushed tag).
            pushed = self.dep.commit_sha if self.dep.trigger == "webhook" else None
            commit = credentials.clone_for(
                self.app, self.dep.git_ref or self.app.git_branch or "", pushed, self.workdir,
                allowed_hosts=outbound.allowed_hosts(),
                timeout=self.cfg["CLONE_TIMEOUT_SECONDS"],
                on_line=self.log.line, should_stop=self._check_cancel,
            )  # fmt: skip
        except gitsrc.GitError as exc:
            if self._check_cancel():
                raise Cancelled() from None
            raise gitsrc.GitError(f"clone failed: {exc}") from None
        self.dep.commit_sha = commit.sha
        # A webhook's payload gave the full message and the forge's author name; git's
        # subject line and author only fill in what a manual or API deploy lacks.
        self.dep.commit_message = self.dep.commit_message or commit.message[:2000]
        self.dep.commit_author = self.dep.commit_author or commit.author[:255]
        db.session.commit()
        self.log.info(f"commit {commit.sha[:12]} {commit.message}")
        context = gitsrc.inside(self.workdir, self.app.build_context)
        dockerfile = gitsrc.inside(self.workdir, self.app.dockerfile_path)
        if not dockerfile.is_file():
            raise gitsrc.GitError(f"no Dockerfile at {self.app.dockerfile_path}")

        self._advance(DeploymentStatus.building, DeployStep.build)
        tag = containers.image_tag(self.app.id, self.dep.id)
        labels = {
            containers.LABEL_APP: str(self.app.id),
            containers.LABEL_DEPLOYMENT: str(self.dep.id),
        }
        try:
            image_id = containers.build_image(
                context, dockerfile, tag, labels,
                on_line=self.log.line, should_stop=self._check_cancel,
            )  # fmt: skip
        except containers.ContainerError:
            if self._check_cancel():
                raise Cancelled() from None
            raise
        # Started by id: the tag is a name for people, and could move meanwhile.
        self._record_image(tag, image_id)
        return image_id

    def _start(self, image: str) -> containers.Version:
        mounts, exclusive = self._mounts()
        replicas = self.settings["replicas"]
        if exclusive and replicas > 1:
            self.log.info(f"an exclusive volume is mounted: running 1 replica, not {replicas} "
                          "(two would write to it at once)")  # fmt: skip
            replicas = 1
        if exclusive and self.previous is not None:
            self._stop_previous()
        version = containers.start_version(
            app_id=self.app.id, project_id=self.app.project_id, deployment_id=self.dep.id,
            image=image, env=self.env,
            port=self.settings["container_port"], replicas=replicas,
            cpu_limit=self.settings["cpu_limit"],
            memory_limit_mb=self.settings["memory_limit_mb"], mounts=mounts,
        )  # fmt: skip
        self.new_containers = version.container_ids
        for r in version.replicas:
            where = f"at {r.address}" if r.address else "(not running: it has no address)"
            self.log.info(f"started {r.name} {where}")
        if self.stopped_previous:
            # Routed at once: the retry middleware holds requests until it listens.
            self.switched = True
            routing.route_to(self.app, version)
            routing.release(self.app.id)
        return version

    def _mounts(self) -> tuple[list[runtime_volumes.Mount], bool]:
        """The app's active volumes (created if missing), and whether one is exclusive."""
        found = volumes.active_of(self.app.id)
        try:
            mounts = volumes.mounts_of(self.app.id)
        except runtime_volumes.MountPathError as exc:
            raise containers.ContainerError(f"a volume cannot be mounted: {exc}") from None
        for volume in found:
            self.log.info(f"mounting volume {volume.label} at {volume.mount_path} ({volume.mode})")
        return mounts, any(v.mode == "exclusive" for v in found)

    def _stop_previous(self) -> None:
        """Exclusive: route the old version through the retry middleware, hold the route,
        then stop the old version's containers (kept, to start again if this one fails)."""
        ids = containers.containers_of(deployment_id=self.previous.id)
        if not ids:
            return
        now = routing.routed(self.app.id)
        if now is not None and now.deployment_id == self.previous.id:
            try:
                routing.route_to(self.app, containers.find_version(self.previous.id, now.port))
                traefik.wait_for_retry(self.app.id)
            except (containers.ContainerError, traefik.ProxyError) as exc:
                self.log.info(f"the route could not be set to retry first: {exc}")
        routing.hold_route(self.app.id)
        self.log.info(f"exclusive volume: stopping deployment #{self.previous.id} before this "
                      "one starts (requests are held and retried meanwhile)")  # fmt: skip
        self.stopped_previous = ids
        containers.stop_only(ids, timeout=self.cfg["STOP_TIMEOUT_SECONDS"])
        self.gap_from = time.monotonic()

    def _record_gap(self) -> None:
        if self.gap_from is None:
            return
        gap_ms = max(1, round((time.monotonic() - self.gap_from) * 1000))
        self.gap_from = None
        self.dep.volume_gap_ms = gap_ms
        db.session.commit()
        self.log.info(f"exclusive volume: no version served for {gap_ms} ms "
                      "(old stopped → new healthy)")  # fmt: skip

    def _health_gate(self, version: containers.Version) -> None:
        """Each replica answers 2xx on the health path (traffic switches right after: the
        watch window, not a settle period, catches a version that fails soon after)."""
        path = names.health_path(self.settings["health_check_path"])
        deadline = time.monotonic() + self.cfg["HEALTH_TIMEOUT_SECONDS"]
        for replica in version.replicas:
            while True:
                self._ensure_up(replica)
                status = containers.probe(replica, path)
                if status is not None and 200 <= status < 300:
                    self._record_gap()  # the first healthy replica ends the gap
                    self.log.info(f"{replica.name} answered {status} on {path}")
                    break
                if time.monotonic() > deadline:
                    answer = f"answered {status}" if status else "did not answer"
                    raise HealthError(
                        f"health check failed: {replica.name} {answer} on "
                        f"{path} within {self.cfg['HEALTH_TIMEOUT_SECONDS']:.0f} s"
                        + self._last_output(replica)
                    )
                time.sleep(0.1)

    def _ensure_up(self, replica: containers.Replica) -> None:
        state = containers.replica_state(replica.id)
        if state.running and state.restarts == 0:
            return
        code = f" with code {state.exit_code}" if state.exit_code is not None else ""
        restarted = f" (Docker restarted it {state.restarts} times)" if state.restarts else ""
        raise HealthError(
            f"{replica.name} exited{code} before it became healthy{restarted}"
            + self._last_output(replica, until=state.exited_at)
        )

    def _last_output(self, replica: containers.Replica, until: float | None = None) -> str:
        """Copy the replica's last lines (of its first run, with ``until``) into the build
        log; the last few, redacted and cut, end the failure's reason (shown in red)."""
        lines = containers.replica_logs(replica.id, until=until)
        for line in lines:
            self.log.line(line, stream="container")
        said = [logformat.cut(logformat.plain(self.log.redact(line)).strip(), LAST_WORD_CHARS)
                for line in lines if logformat.plain(line).strip()][-LAST_WORDS:]  # fmt: skip
        if not said:
            return "; it printed nothing"
        return "; its last output: " + " ⏎ ".join(said)

    def _switch(self, version: containers.Version) -> None:
        self.switched = True
        hosts = routing.route_to(self.app, version)
        traefik.wait_until_served(self.app.id, version.endpoints)
        self.log.info(f"routing {', '.join(hosts)} to the new version")

    def _watch(self, version: containers.Version) -> None:
        """Serve the new version while the old one keeps running, for the watch window.

        A replica that exits, is restarted, or fails its health path raises
        :class:`Reverted` (``_undo`` routes back and removes the new version). A newer
        deployment of the app queued meanwhile ends the window early: this version is
        accepted, so consecutive deploys do not wait out the window."""
        if self.watch_seconds <= 0:
            return
        self.dep.watch_until = utcnow() + timedelta(seconds=self.watch_seconds)
        self._advance(DeploymentStatus.deploying, DeployStep.watch)
        back = f"deployment #{self.previous.id}" if self.previous else "no route (first deployment)"
        self.log.info(f"watching until {self.dep.watch_until:%H:%M:%S} UTC; "
                      f"a failure reverts to {back}")  # fmt: skip
        path = names.health_path(self.settings["health_check_path"])
        misses = dict.fromkeys(version.container_ids, 0)
        deadline = time.monotonic() + self.watch_seconds
        tick = 0
        while time.monotonic() < deadline:
            for replica in version.replicas:
                self._still_up(replica)
                if tick % HEALTH_EVERY == 0:
                    self._still_healthy(replica, path, misses)
            newer = self._newer_queued()
            if newer:
                self.log.info(f"deployment #{newer} is queued: accepting this version now")
                return
            tick += 1
            control.nap(self.app.id, "queued", WATCH_TICK)  # woken when a deployment is queued
        self.log.info(f"no failure in {self.watch_seconds:g} s: accepted")

    def _still_up(self, replica: containers.Replica) -> None:
        state = containers.replica_state(replica.id)
        if state.running and state.restarts == 0:
            return
        code = f" with code {state.exit_code}" if state.exit_code is not None else ""
        what = "exited" if not state.restarts else "was restarted by Docker (it exited)"
        raise Reverted(
            f"reverted: {replica.name} {what}{code} after the switch"
            + self._last_output(replica, until=state.exited_at)
        )

    def _still_healthy(self, replica: containers.Replica, path: str, misses: dict) -> None:
        status = containers.probe(replica, path)
        if status is not None and 200 <= status < 300:
            misses[replica.id] = 0
            return
        misses[replica.id] += 1
        if misses[replica.id] >= HEALTH_MISSES:
            answer = f"answered {status}" if status else "did not answer"
            raise Reverted(
                f"reverted: {replica.name} {answer} on {path} after the switch"
                + self._last_output(replica)
            )

    def _newer_queued(self) -> int | None:
        return db.session.scalar(
            select(Deployment.id).where(
                Deployment.application_id == self.app.id,
                Deployment.status == DeploymentStatus.queued.value,
                Deployment.id > self.dep.id,
            )
        )

    def _finish(self) -> None:
        previous = [
            d for d in db.session.scalars(
                select(Deployment).where(
                    Deployment.application_id == self.app.id,
                    Deployment.status == DeploymentStatus.running.value,
                    Deployment.id != self.dep.id,
                )
            )
        ]  # fmt: skip
        for old in previous:
            old.status = DeploymentStatus.replaced.value
        self.dep.status = DeploymentStatus.running.value
        self.dep.step = None
        self.dep.finished_at = utcnow()
        self.dep.error = None
        db.session.commit()
        self.log.info("running")
        self.log.close()
        # After the last line is flushed: a live tail ends on the final status.
        livestatus.publish([*previous, self.dep])
        self.to_retire = [old.id for old in previous]

    def retire_previous(self) -> None:
        """Let requests in flight on the old version end, stop it, prune old images."""
        if not self.to_retire:
            return
        try:
            if not self.stopped_previous:  # an exclusive handover stopped it already
                time.sleep(self.cfg["DRAIN_SECONDS"])
            for old_id in self.to_retire:
                containers.stop_deployment(old_id, timeout=self.cfg["STOP_TIMEOUT_SECONDS"])
            self._prune_images()
        except Exception:  # noqa: BLE001 - the new version serves; cleanup is retried later
            log.exception("retiring the versions before deployment %s failed", self.dep.id)

    def _prune_images(self) -> None:
        """Remove the app's images but the last ``KEEP_IMAGES`` served ones and those of
        its deployments under way: this runs after the app's lock is released, while the
        next deployment may have built its image and not started it yet."""
        keep = set(
            db.session.scalars(
                select(Deployment.image_tag)
                .where(
                    Deployment.application_id == self.app.id,
                    Deployment.status.in_(control.ROLLBACK_STATUSES),
                    Deployment.image_tag.is_not(None),
                )
                .order_by(Deployment.id.desc())
                .limit(self.cfg["KEEP_IMAGES"])
            ).all()
        )
        under_way = db.session.execute(
            select(Deployment.id, Deployment.image_tag).where(
                Deployment.application_id == self.app.id,
                Deployment.status.in_([s.value for s in ACTIVE_STATUSES]),
            )
        ).all()
        for dep_id, tag in under_way:  # its build's tag, before the row records it too
            keep |= {containers.image_tag(self.app.id, dep_id)} | ({tag} if tag else set())
        removed = containers.prune_images(self.app.id, keep)
        if removed:
            self.log.info(f"removed old images: {', '.join(removed)}")

    def _undo(self) -> None:
        """Remove what this run started and put the old routing back."""
        try:
            if self.stopped_previous:
                self._undo_exclusive()
                return
            if self.switched:
                self._restore_routes()
            containers.stop_and_remove(self.new_containers, timeout=2)
        except Exception:  # noqa: BLE001 - undo is best effort; the reaper retries
            log.exception("cleanup after deployment %s failed", self.dep.id)
        finally:
            routing.release(self.app.id)

    def _undo_exclusive(self) -> None:
        """The new version goes first (one writer), then the old one starts again and the
        route goes back to it (the retry middleware holds requests meanwhile)."""
        containers.stop_and_remove(self.new_containers, timeout=2)
        containers.start_again(self.stopped_previous)
        self.log.info(f"started deployment #{self.previous.id} again")
        self.stopped_previous = []
        self._restore_routes()

    def _restore_routes(self) -> None:
        if self.previous is None:
            routing.unroute(self.app)
            self.log.info("removed the route: no earlier version to go back to")
            return
        # The port that version ran with: the app's may have changed since.
        ran = self.previous.runtime_settings or {}
        port = ran.get("container_port") or self.app.container_port
        previous = containers.find_version(self.previous.id, port)
        routing.route_to(self.app, previous)
        self.log.info(f"routing back to deployment #{self.previous.id}")
        try:
            traefik.wait_until_served(self.app.id, previous.endpoints, timeout=5)
        except traefik.ProxyError:
            log.warning("deployment %s: Traefik did not confirm the route back to #%s",
                        self.dep.id, self.previous.id)  # fmt: skip

    def _end(self, status: DeploymentStatus, reason: str) -> None:
        db.session.rollback()
        self.dep = db.session.get(Deployment, self.dep.id)
        if self.dep.status in ACTIVE_STATUSES:
            self.dep.status = status.value
            self.dep.error = reason
        # ``step`` stays: it says where the deployment stopped (the progress line).
        self.dep.finished_at = utcnow()
        db.session.commit()
        redis.client.delete(control.CANCEL_KEY.format(self.dep.id))
        # One line says how it ended; a cancellation's reason already says "cancelled".
        self.log.info(
            reason if status == DeploymentStatus.cancelled else f"{status.value}: {reason}"
        )
        self.log.close()
        livestatus.publish(self.dep)
