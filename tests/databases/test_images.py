"""The engines' test images keep the official images' contracts: pulled from the
loopback registry, each starts on a fresh named volume with a password, accepts that
password from another container and refuses a wrong one, keeps its data when the
container is replaced on the same volume, and serves the test app of apps.py."""

from __future__ import annotations

import time
import uuid

import docker
import pytest
import requests

from tests.databases import apps
from tests.databases.conftest import CLIENT_IMAGE

PASSWORD = "s3cret-Pa55"
LABELS = {"slipway.test": "1"}

# What each engine is started with, where its data lives, and its client's command line
# (run in the client image on the same network, the database at the alias "db").
ENGINES = {
    "postgres": {
        "env": {"POSTGRES_PASSWORD": PASSWORD, "POSTGRES_USER": "shop", "POSTGRES_DB": "shop"},
        "command": None,
        "data": "/var/lib/postgresql/data",
        "client": lambda sql: ["psql", "-X", "-h", "db", "-U", "shop", "-d", "shop", "-tAc", sql],
        "password_env": "PGPASSWORD",
        "write": "CREATE TABLE t (v text); INSERT INTO t VALUES ('kept')",
        "read": "SELECT v FROM t",
        "url": f"postgresql://shop:{PASSWORD}@db:5432/shop",
        "url_var": "DATABASE_URL",
    },
    "mariadb": {
        "env": {
            "MARIADB_ROOT_PASSWORD": "root-" + PASSWORD,
            "MARIADB_DATABASE": "shop",
            "MARIADB_USER": "shop",
            "MARIADB_PASSWORD": PASSWORD,
        },  # fmt: skip
        "command": None,
        "data": "/var/lib/mysql",
        "client": lambda sql: ["mariadb", "-h", "db", "-u", "shop", "-N", "-B", "shop", "-e", sql],
        "password_env": "MYSQL_PWD",
        "write": "CREATE TABLE t (v VARCHAR(20)); INSERT INTO t VALUES ('kept')",
        "read": "SELECT v FROM t",
        "url": f"mysql://shop:{PASSWORD}@db:3306/shop",
        "url_var": "DATABASE_URL",
    },
    "redis": {
        "env": {},
        "command": ["redis-server", "--requirepass", PASSWORD, "--appendonly", "yes"],
        "data": "/data",
        "client": lambda cmd: ["redis-cli", "-h", "db", *cmd.split()],
        "password_env": "REDISCLI_AUTH",
        "write": "SET t kept",
        "read": "GET t",
        "url": f"redis://:{PASSWORD}@db:6379/0",
        "url_var": "REDIS_URL",
    },
}


class Lab:
    """Containers, volumes, networks and images of one test, labelled and removed."""

    def __init__(self):
        self.client = docker.from_env()
        self.containers, self.volumes, self.networks, self.images = [], [], [], []

    def name(self, what: str) -> str:
        return f"slipway-test-db-{what}-{uuid.uuid4().hex[:8]}"

    def network(self):
        network = self.client.networks.create(self.name("net"), labels=LABELS)
        self.networks.append(network)
        return network

    def volume(self):
        volume = self.client.volumes.create(self.name("vol"), labels=LABELS)
        self.volumes.append(volume)
        return volume

    def run(self, image: str, network, alias: str | None = None, **kwargs):
        container = self.client.containers.create(
            image, name=self.name("c"), labels=LABELS, detach=True, **kwargs
        )
        self.containers.append(container)
        network.connect(container, aliases=[alias] if alias else None)
        container.start()
        container.reload()
        return container

    def close(self):
        for container in self.containers:
            try:
                container.remove(force=True, v=True)
            except docker.errors.NotFound:
                pass
        for item in (*self.volumes, *self.networks):
            item.remove()
        for image in self.images:
            self.client.images.remove(image, force=True)
        self.client.close()


@pytest.fixture
def lab():
    lab = Lab()
    yield lab
    lab.close()


def _query(probe, engine: str, sql: str, password: str = PASSWORD):
    spec = ENGINES[engine]
    return probe.exec_run(spec["client"](sql), environment={spec["password_env"]: password})


def _until_connected(probe, engine: str, started: float, timeout: float = 90) -> float:
    """Seconds from ``started`` to the first authenticated query that succeeds."""
    while time.monotonic() - started < timeout:
        result = _query(probe, engine, "SELECT 1" if engine != "redis" else "PING")
        if (
            result.exit_code == 0
            and b"NOAUTH" not in result.output
            and b"rror" not in result.output
        ):
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{engine} accepted no connection within {timeout} s")


def _ip(container, network) -> str:
    container.reload()
    return container.attrs["NetworkSettings"]["Networks"][network.name]["IPAddress"]


def _get(base: str, path: str, timeout: float = 30) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return requests.get(base + path, timeout=10)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.mark.once
@pytest.mark.parametrize("engine", ["postgres", "mariadb", "redis"])
def test_an_engine_image_keeps_the_official_contract(engine, db_registry, lab, tmp_path):
    spec = ENGINES[engine]
    client = lab.client
    ref = db_registry.forget(db_registry.image(engine))
    with pytest.raises(docker.errors.ImageNotFound):
        client.images.get(ref)  # nothing local under the reference: it is pulled
    repository, _, tag = ref.rpartition(":")
    assert ref in client.images.pull(repository, tag=tag).tags

    network, volume = lab.network(), lab.volume()
    probe = lab.run(CLIENT_IMAGE, network, command=["sleep", "infinity"])
    mount = {volume.name: {"bind": spec["data"], "mode": "rw"}}
    started = time.monotonic()
    db = lab.run(ref, network, alias="db", environment=spec["env"], command=spec["command"],
                 volumes=mount)  # fmt: skip
    first = _until_connected(probe, engine, started)

    wrong = _query(probe, engine, spec["read"], password="wrong")
    if engine == "redis":
        assert b"WRONGPASS" in wrong.output, wrong.output
    else:
        assert wrong.exit_code != 0, wrong.output
        assert b"auth" in wrong.output.lower() or b"denied" in wrong.output.lower()
    written = _query(probe, engine, spec["write"])
    assert written.exit_code == 0 and b"rror" not in written.output, written.output

    # Replaced on the same volume: the data is there, the new password env ignored.
    db.stop(timeout=20)
    db.remove()
    started = time.monotonic()
    lab.run(ref, network, alias="db", environment=spec["env"], command=spec["command"],
            volumes=mount)  # fmt: skip
    again = _until_connected(probe, engine, started)
    assert _query(probe, engine, spec["read"]).output.strip() == b"kept"
    print(f"\n{engine}: first connection {first:.2f} s on a new volume, {again:.2f} s on restart")

    # The test app, built FROM the client image, on the linked URL.
    for name, text in apps.app_files(engine).items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    image = client.images.build(path=str(tmp_path), rm=True, labels=LABELS)[0]
    lab.images.append(image.id)
    web = lab.run(image.id, network, environment={spec["url_var"]: spec["url"]})
    base = f"http://{_ip(web, network)}:8000"
    assert _get(base, "/").text == f"ok {engine}\n"
    for value in ("one", "two"):
        response = _get(base, f"/write?v={value}")
        assert (response.status_code, response.text) == (200, f"wrote {value}\n"), response.text
    response = _get(base, "/read")
    assert (response.status_code, response.text) == (200, "one\ntwo\n"), response.text


@pytest.mark.once
def test_postgres_refuses_to_initialise_without_a_password(db_images, lab):
    network = lab.network()
    db = lab.run(db_images["postgres"], network, volumes={lab.volume().name: {
        "bind": "/var/lib/postgresql/data", "mode": "rw"}})  # fmt: skip
    assert db.wait(timeout=30)["StatusCode"] != 0
    assert b"POSTGRES_PASSWORD" in db.logs()
