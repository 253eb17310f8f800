"""What a deployment's replicas are doing now, as the engine says.

:func:`deployment_replicas` gives, per replica, its state, how its last run
ended (exit code, OOM kill) and its address on its network, verified against the
network's own table: the address is what Docker gave *this* container id, now. A
stopped container has no address: Docker frees it at once and hands it to the
next container started on the network, so an address is never trusted from an
earlier look.
"""

from __future__ import annotations

from dataclasses import dataclass

from docker.errors import DockerException, NotFound

from app.runtime import installation
from app.runtime.engine import LABEL_APP, LABEL_DEPLOYMENT, LABEL_REPLICA, ContainerError, client
from app.runtime.engine import explain as _explain
from app.runtime.installation import LABEL_INSTALLATION
from app.runtime.versions import network_of


@dataclass(frozen=True)
class ReplicaFacts:
    """One replica as the engine sees it now."""

    id: str
    name: str
    replica: str  # its index label (``0``, ``1``, …)
    state: str  # running | restarting | exited | paused | created | dead | removing | gone
    address: str  # its address on its network, verified; "" when it has none
    exit_code: int | None = None
    oom_killed: bool = False
    error: str = ""
    finished_at: str | None = None
    restart_count: int = 0

    @property
    def serving(self) -> bool:
        return self.state == "running" and bool(self.address)

    def endpoint(self, port: int) -> str:
        """What Traefik may route to (``http://<address>:<port>``), or "" if not serving."""
        return f"http://{self.address}:{port}" if self.serving else ""


def _facts(container, table: dict[str, str]) -> ReplicaFacts:
    attrs = container.attrs
    state = attrs.get("State") or {}
    status = state.get("Status") or "unknown"
    network = network_of(container.labels or {})
    mine = ((attrs.get("NetworkSettings") or {}).get("Networks") or {}).get(network) or {}
    address = mine.get("IPAddress") or ""
    # The network's own table: this id holds this address now (a stopped container is
    # not in it, and its old address may already be another container's).
    if status != "running" or table.get(container.id) != address:
        address = ""
    code = state.get("ExitCode")
    return ReplicaFacts(
        id=container.id,
        name=container.name,
        replica=(container.labels or {}).get(LABEL_REPLICA, "?"),
        state=status,
        address=address,
        exit_code=code if status not in ("running", "created") else None,
        oom_killed=bool(state.get("OOMKilled")),
        error=state.get("Error") or "",
        finished_at=state.get("FinishedAt") if status != "running" else None,
        restart_count=int(attrs.get("RestartCount") or 0),
    )


def _network_table(engine, name: str) -> dict[str, str]:
    """``{container id: address}`` of the containers on a network, from the network."""
    try:
        found = engine.api.inspect_network(name)
    except NotFound:
        return {}
    return {
        cid: (entry.get("IPv4Address") or "").split("/")[0]
        for cid, entry in (found.get("Containers") or {}).items()
    }


def deployment_replicas(
    app_id: int, deployment_id: int, ids: list[str] | None = None
) -> list[ReplicaFacts]:
    """The facts of a deployment's replicas (or of the containers ``ids``), by replica.

    Only this installation's containers of this app; an id that is gone is a ``gone``
    replica."""
    engine = client(timeout=30)
    try:
        if ids is None:
            labels = [f"{LABEL_APP}={app_id}", f"{LABEL_DEPLOYMENT}={deployment_id}"]
            found = [
                c
                for c in engine.containers.list(all=True, filters={"label": labels})
                if installation.owns(c.labels)
            ]
            missing: list[str] = []
        else:
            found, missing = [], []
            for cid in ids:
                try:
                    container = engine.containers.get(cid)
                except NotFound:
                    missing.append(cid)
                    continue
                labels = container.labels or {}
                if installation.owns(labels) and labels.get(LABEL_APP) == str(app_id):
                    found.append(container)
        tables: dict[str, dict[str, str]] = {}
        facts = []
        for container in found:
            network = network_of(container.labels or {})
            if network not in tables:
                tables[network] = _network_table(engine, network)
            facts.append(_facts(container, tables[network]))
        facts += [ReplicaFacts(cid, cid[:12], "?", "gone", "") for cid in missing]
        return sorted(facts, key=lambda f: (f.replica, f.name))
    except (DockerException, OSError) as exc:
        raise ContainerError(f"inspecting the containers failed: {_explain(exc)}") from None
    finally:
        engine.close()


def installation_app_ids() -> set[int]:
    """The apps that have a container of this installation (running or not)."""
    mine = installation.current_id()
    if mine is None:
        return set()
    engine = client(timeout=30)
    try:
        listed = engine.api.containers(all=True, filters={"label": f"{LABEL_INSTALLATION}={mine}"})
    except (DockerException, OSError) as exc:
        raise ContainerError(f"listing the containers failed: {_explain(exc)}") from None
    finally:
        engine.close()
    apps = {(c.get("Labels") or {}).get(LABEL_APP, "") for c in listed}
    return {int(a) for a in apps if a.isdigit()}
