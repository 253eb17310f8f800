"""Volume test kit: exclusive redeploys watched from outside, for tests and benchmarks.

:func:`exclusive_redeploys` redeploys an app that has an exclusive volume ``count``
times while one thread lists the running containers that mount the volume every
100 ms (``docker ps --filter volume=…``) and another sends a steady request loop
through Traefik. It returns the gaps the deployments recorded, their p95, the
requests that did not come back 200, and the most containers ever seen on the volume.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import docker
import requests


def running_on(client, docker_name: str) -> list[str]:
    """Ids of the running containers that mount the volume ``docker_name``."""
    return [c.id for c in client.containers.list(filters={"volume": docker_name})]


class Sampler(threading.Thread):
    """Counts the running containers on a volume every ``every`` seconds."""

    def __init__(self, docker_name: str, every: float = 0.1):
        super().__init__(daemon=True)
        self.docker_name, self.every = docker_name, every
        self.stop, self.samples = threading.Event(), []

    def run(self):
        client = docker.from_env()
        try:
            while not self.stop.is_set():
                self.samples.append(len(running_on(client, self.docker_name)))
                time.sleep(self.every)
        finally:
            client.close()


class RequestLoop(threading.Thread):
    """A steady request loop to ``url`` with ``Host: host``; counts what was not 200."""

    def __init__(self, url: str, host: str, pause: float = 0.02):
        super().__init__(daemon=True)
        self.url, self.host, self.pause = url, host, pause
        self.stop = threading.Event()
        self.ok, self.failed = 0, []

    def run(self):
        session = requests.Session()
        while not self.stop.is_set():
            try:
                answer = session.get(self.url, headers={"Host": self.host}, timeout=30)
                if answer.status_code == 200:
                    self.ok += 1
                else:
                    self.failed.append(answer.status_code)
            except requests.RequestException as exc:
                self.failed.append(type(exc).__name__)
            time.sleep(self.pause)


@dataclass
class ExclusiveRun:
    gaps_ms: list[int]
    failed: list  # status codes or exception names of the requests that failed
    ok: int
    most_on_volume: int  # the most running containers any sample saw on the volume
    samples: int

    @property
    def p95_ms(self) -> int:
        ordered = sorted(self.gaps_ms)
        return ordered[max(0, math.ceil(0.95 * len(ordered)) - 1)] if ordered else 0


def exclusive_redeploys(
    docker_name: str, traefik_url: str, host: str, redeploy: Callable[[int], object],
    count: int = 10,
) -> ExclusiveRun:  # fmt: skip
    """Run ``redeploy(n)`` ``count`` times (each returns the finished Deployment row)
    under the sampler and the request loop."""
    sampler, loop = Sampler(docker_name), RequestLoop(traefik_url, host)
    sampler.start()
    loop.start()
    gaps = []
    try:
        for n in range(count):
            done = redeploy(n)
            if done.status != "running":
                raise AssertionError(f"redeploy {n} ended {done.status}: {done.error}")
            gaps.append(done.volume_gap_ms)
        time.sleep(0.5)
    finally:
        sampler.stop.set()
        loop.stop.set()
        sampler.join(5)
        loop.join(35)
    return ExclusiveRun(gaps, loop.failed, loop.ok, max(sampler.samples, default=0),
                        len(sampler.samples))  # fmt: skip
