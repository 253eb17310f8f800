"""The runtime's public API: what the rest of Slipway calls to use the Docker engine.

The code lives in the modules beside this one (``engine``, ``images``,
``versions``, ``logs``, ``stats``, ``replicas``); callers import this module only, so that a
Swarm backend can later replace what stands behind these names.
"""

from __future__ import annotations

from app.runtime.engine import (
    ENGINE_STATUS_KEY,
    LABEL_APP,
    LABEL_DEPLOYMENT,
    LABEL_PROJECT,
    LABEL_REPLICA,
    NETWORK,
    ContainerError,
    EngineStatus,
    client,
    engine_status,
    probe_engine,
)
from app.runtime.images import (
    ImageFacts,
    Pulled,
    app_images,
    build_image,
    check_not_a_build,
    image_exists,
    image_tag,
    inspect_image,
    kept_image,
    prune_images,
    pull_image,
)
from app.runtime.installation import LABEL_INSTALLATION, adopt_unlabelled, owns
from app.runtime.logs import LogStream, follow_logs, recent_logs, replicas_of
from app.runtime.replicas import ReplicaFacts, deployment_replicas, installation_app_ids
from app.runtime.stats import raw_stats, running_app_containers, running_database_containers
from app.runtime.versions import (
    Replica,
    ReplicaState,
    Version,
    containers_of,
    ensure_network,
    find_version,
    network_of,
    probe,
    project_network,
    prune_networks,
    replica_logs,
    replica_state,
    start_again,
    start_replicas,
    start_version,
    stop_and_remove,
    stop_deployment,
    stop_only,
    stop_version,
)

__all__ = [
    "ENGINE_STATUS_KEY", "LABEL_APP", "LABEL_DEPLOYMENT", "LABEL_INSTALLATION", "LABEL_PROJECT",
    "LABEL_REPLICA",
    "NETWORK", "adopt_unlabelled", "owns",
    "ImageFacts", "app_images", "check_not_a_build", "inspect_image", "kept_image",
    "ContainerError", "EngineStatus", "LogStream", "Replica", "ReplicaState", "Version",
    "find_version", "probe", "start_version", "stop_deployment", "stop_version",
    "build_image", "client", "containers_of", "engine_status", "Pulled", "pull_image",
    "ensure_network", "network_of", "project_network", "prune_networks", "follow_logs",
    "image_exists", "image_tag", "probe_engine",
    "prune_images", "raw_stats", "recent_logs", "replica_logs", "replica_state",
    "replicas_of", "running_app_containers", "running_database_containers", "start_replicas",
    "stop_and_remove",
    "ReplicaFacts", "deployment_replicas", "installation_app_ids", "start_again", "stop_only",
]  # fmt: skip
