"""Slipway at rest (issue 12 item 5): resident memory after a minute idle, and start-up time.

    .venv/bin/python bench/idle.py                  # cold + warm start, 60 s idle
    .venv/bin/python bench/idle.py --idle 20 --no-cold

The bench clones the repository (its committed HEAD) into a temporary folder, as a
newcomer would, and there runs ``make run`` twice with its own data folder and free
ports, the Docker engine of this machine and the embedded Redis (no ``SLIPWAY_*``
setting from this shell reaches it):

- ``make_run_cold_s``: the fresh clone, no ``.venv`` yet: ``make run`` → the line with the
  URL it prints. It creates the venv and installs what Slipway needs to run.
- ``make_run_warm_s``: the same clone again after the first one stopped (Ctrl-C): the
  venv is there and the database migrated.

After the warm start prints its URL the bench asks ``/healthz`` and opens the dashboard
(``/``, which on a new installation is the first-run setup page) as a newcomer's browser
would, waits ``--idle`` seconds and sums the resident memory (RSS) of ``make``, the
supervisor and every process below them: ``idle_rss_mib``, with the figure per process
(``processes``). ``--no-cold`` reuses this checkout's venv for the clone (a symlink) and
reports only the warm start.

Progress goes to stderr; the last stdout line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
URL_LINE = re.compile(r"Slipway is running at (http://\S+)")


def log(text: str) -> None:
    print(f"[idle] {text}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MakeRun:
    """``make run`` in ``clone``; its output is kept and searched for the URL line."""

    def __init__(self, clone: Path, data_dir: Path):
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLIPWAY_")}
        env.update(
            SLIPWAY_DATA_DIR=str(data_dir),
            SLIPWAY_LISTEN=f"127.0.0.1:{free_port()}",
            SLIPWAY_HTTP_PORT=str(free_port()),
            SLIPWAY_HTTPS_PORT=str(free_port()),
            SLIPWAY_PROXY_API_PORT=str(free_port()),
            # This engine's unlabelled objects belong to whoever else runs here.
            SLIPWAY_ADOPT_UNLABELLED="0",
        )
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["make", "run"], cwd=clone, env=env, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: list[str] = []
        self.url: str | None = None
        self.url_seconds: float | None = None
        self._seen = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            found = URL_LINE.search(line)
            if found and self.url is None:
                self.url_seconds = time.monotonic() - self.started
                self.url = found.group(1)
                self._seen.set()
        self._seen.set()

    def wait_for_url(self, timeout: float) -> float:
        self._seen.wait(timeout)
        if self.url is None:
            tail = "\n".join(self.lines[-40:])
            raise SystemExit(f"make run printed no URL within {timeout:.0f} s:\n{tail}")
        return self.url_seconds or 0.0

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)  # the terminal's Ctrl-C
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    def resident(self) -> list[dict]:
        """Every process of the group with its RSS, ``make`` first."""
        top = psutil.Process(self.proc.pid)
        found = []
        for proc in [top, *top.children(recursive=True)]:
            try:
                found.append(
                    {
                        "pid": proc.pid,
                        "name": " ".join(proc.cmdline()[:3])[:80] or proc.name(),
                        "rss_mib": round(proc.memory_info().rss / 2**20, 1),
                    }
                )
            except psutil.NoSuchProcess:
                pass
        return found


def clone_repo(into: Path) -> Path:
    clone = into / "slipway"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(ROOT), str(clone)], check=True)
    return clone


def start(clone: Path, data_dir: Path, what: str, timeout: float) -> tuple[MakeRun, float]:
    log(f"{what}: make run")
    run = MakeRun(clone, data_dir)
    seconds = run.wait_for_url(timeout)
    log(f"{what}: URL {run.url} after {seconds:.1f} s")
    return run, seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle", type=float, default=60.0, help="seconds idle before the RSS")
    parser.add_argument("--no-cold", action="store_true", help="reuse this venv; warm only")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="slipway-idle-"))
    data_dir = tmp / "data"
    result: dict = {"loadavg_1m_before": round(os.getloadavg()[0], 2)}
    try:
        clone = clone_repo(tmp)
        if args.no_cold:
            (clone / ".venv").symlink_to(ROOT / ".venv")
            result["make_run_cold_s"] = None
        else:
            run, seconds = start(clone, data_dir, "cold", timeout=600)
            result["make_run_cold_s"] = round(seconds, 1)
            run.stop()
        run, seconds = start(clone, data_dir, "warm", timeout=120)
        result["make_run_warm_s"] = round(seconds, 1)
        try:
            for path in ("/healthz", "/"):  # redirects are followed: / → /setup
                with urllib.request.urlopen(run.url.rstrip("/") + path, timeout=10) as answer:
                    assert answer.status == 200, (path, answer.status)
            log(f"idle for {args.idle:.0f} s")
            time.sleep(args.idle)
            processes = run.resident()
        finally:
            run.stop()
        result["idle_rss_mib"] = round(sum(p["rss_mib"] for p in processes), 1)
        result["process_count"] = len(processes)
        result["processes"] = processes
        result["idle_seconds"] = args.idle
        result["loadavg_1m_after"] = round(os.getloadavg()[0], 2)
    finally:
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
