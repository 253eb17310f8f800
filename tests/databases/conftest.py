"""Fixtures of the database tests: the engines' test images (scripts/db-images.sh, built
here from Debian's packages) served from a real registry on loopback, so the product
pulls them as it would pull postgres:16 from Docker Hub."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import docker
import pytest

from tests.registry import Registry, push

ROOT = Path(__file__).resolve().parents[2]
# The local images scripts/db-images.sh builds, and their names in the registry.
IMAGES = {
    "postgres": "slipway-test/postgres:16",
    "mariadb": "slipway-test/mariadb:11",
    "redis": "slipway-test/redis:7",
}
CLIENT_IMAGE = "slipway-test/dbclient:latest"
CONFIG_KEYS = {"postgres": "IMAGE_POSTGRES", "mariadb": "IMAGE_MARIADB", "redis": "IMAGE_REDIS"}


def ensure_db_images() -> dict[str, str]:
    """Run scripts/db-images.sh (seconds when its tarball and images are in place);
    a failure is an error of the test, never a skip."""
    env = os.environ | {
        "DB_IMAGE_POSTGRES": IMAGES["postgres"], "DB_IMAGE_MARIADB": IMAGES["mariadb"],
        "DB_IMAGE_REDIS": IMAGES["redis"], "DB_IMAGE_CLIENT": CLIENT_IMAGE,
    }  # fmt: skip
    done = subprocess.run(["bash", str(ROOT / "scripts" / "db-images.sh")], env=env,
                          capture_output=True, text=True, timeout=1800, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"scripts/db-images.sh failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return dict(IMAGES)


class DbRegistry:
    """The loopback registry holding the engine images; ``image(engine)`` is the
    reference to pull, ``config`` the product's settings naming them."""

    def __init__(self, registry: Registry, refs: dict[str, str]):
        self.registry = registry
        self.host = registry.host
        self.refs = refs

    def image(self, engine: str) -> str:
        return self.refs[engine]

    def forget(self, ref: str) -> str:
        """The engine drops its local ``ref`` (the layers stay), so whoever runs it next
        pulls it: another test of the session may have pulled it already."""
        client = docker.from_env()
        try:
            client.images.remove(ref)
        except docker.errors.ImageNotFound:
            pass
        finally:
            client.close()
        return ref

    @property
    def config(self) -> dict[str, str]:
        return {CONFIG_KEYS[engine]: ref for engine, ref in self.refs.items()}


@pytest.fixture(scope="session")
def db_images() -> dict[str, str]:
    """The engine and client images, built (or found cached) for this session."""
    return ensure_db_images()


@pytest.fixture(scope="session")
def db_registry(db_images, tmp_path_factory):
    """The engine images pushed to a registry on 127.0.0.1 as ``postgres:16``,
    ``mariadb:11`` and ``redis:7``; the engine keeps no image under those references
    (the layers stay: the local slipway-test/* images share them), so whoever runs
    one pulls it first. The registry stops at the end of the session."""
    client = docker.from_env()
    with Registry(tmp_path_factory.mktemp("db-registry")) as reg:
        refs = {}
        for engine, local in db_images.items():
            name, _, tag = local.removeprefix("slipway-test/").partition(":")
            ref = reg.ref(name, tag)
            client.images.get(local).tag(f"{reg.host}/{name}", tag)
            push(client, ref)
            client.images.remove(ref)
            refs[engine] = ref
        yield DbRegistry(reg, refs)
        for ref in refs.values():
            try:
                client.images.remove(ref)
            except docker.errors.ImageNotFound:
                pass
    client.close()
