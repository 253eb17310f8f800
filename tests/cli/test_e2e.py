"""``slipway`` end to end: a real gunicorn and ``worker.py`` on the test database, a real
git server, Docker and Traefik (tests/deploys' ``infra``). The CLI logs in, creates an
app, deploys it and follows its build log and its runtime log, as a user would.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from sqlalchemy import select

from app.extensions import db
from app.models import Application, Deployment, DeploymentLogLine, Installation, Project
from tests import lab
from tests.browser.conftest import ROOT, server_env, start_server
from tests.cli.conftest import Cli, member
from tests.conftest import running_app
from tests.deploys.conftest import _remove_slipway_resources, _through_traefik, infra  # noqa: F401

pytestmark = pytest.mark.once

DEPLOY_TIMEOUT = 180
_names = iter(range(1, 10_000))


class Worker:
    """``python worker.py --queues deploy,default``, its output in ``log``."""

    def __init__(self, env: dict, log: Path):
        self.log_path = log
        self.log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, "worker.py", "--queues", "deploy,default"], cwd=ROOT, env=env,
            start_new_session=True, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # a warm shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()


class Lab:
    def __init__(self, shared: dict, data_dir: Path, home: Path):
        config = shared["config"]
        self.infra, self.data_dir = shared, data_dir
        self.env = {
            "SLIPWAY_PROXY_DIR": config["PROXY_DIR"],
            "SLIPWAY_BUILDS_DIR": config["BUILDS_DIR"],
            "SLIPWAY_HTTP_PORT": str(config["HTTP_PORT"]),
            "SLIPWAY_HTTPS_PORT": str(config["HTTPS_PORT"]),
            "SLIPWAY_PROXY_API_PORT": str(config["PROXY_API_PORT"]),
            "SLIPWAY_OUTBOUND_ALLOWED_HOSTS": "127.0.0.1",
            "SLIPWAY_BASE_DOMAIN": "localhost",
            "SLIPWAY_WATCH_SECONDS": "1",
            "SLIPWAY_HEALTH_TIMEOUT_SECONDS": "30",
            "SLIPWAY_DRAIN_SECONDS": "0.5",
            "SLIPWAY_STOP_TIMEOUT_SECONDS": "2",
            "SLIPWAY_DOCKER_HOST": os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock"),
            "SLIPWAY_ADOPT_UNLABELLED": "0",  # never claim the engine's objects
        }
        self.port = lab.free_port()
        self.server = self.start_server()
        self.worker = Worker(server_env(config, data_dir, self.env), data_dir / "worker.log")
        self.cli = Cli(home, self.server.url)

    def start_server(self):
        return start_server(self.infra["config"], self.data_dir, self.env, port=self.port)

    def kill_server(self) -> None:
        """SIGKILL gunicorn and its worker: streams drop without an end, the port frees."""
        master = psutil.Process(self.server.process.pid)
        every = [*master.children(recursive=True), master]
        for process in every:
            process.kill()
        psutil.wait_procs(every, timeout=10)
        self.server.process.wait(10)

    def stop(self) -> None:
        self.worker.stop()
        self.server.stop()


@pytest.fixture
def app(infra):  # noqa: F811
    """The test's app on the infra's settings; what its apps left in Docker is removed."""
    with running_app(infra["config"]) as app:
        yield app
        app_ids = set(db.session.scalars(select(Application.id)))
        installation_id = db.session.scalar(select(Installation.installation_id))
    dynamic = Path(infra["config"]["PROXY_DIR"]) / "dynamic"
    _remove_slipway_resources(app_ids, installation_id, dynamic)


@pytest.fixture
def deploy_lab(app, infra, tmp_path):  # noqa: F811
    """gunicorn and worker.py with the infra's settings; stopped before the tables empty."""
    (tmp_path / "home").mkdir()
    (tmp_path / "data").mkdir()
    started = Lab(infra, tmp_path / "data", tmp_path / "home")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def repo(infra):  # noqa: F811
    return lab.Repo(infra["git"], f"clisite{next(_names)}", infra["root"] / "clework")


def _new_app(deploy_lab: Lab, repo, name: str = "web") -> str:
    """Log in, create a project and a git app through the CLI; the app's PROJECT/APP."""
    cli = deploy_lab.cli
    cli.login(member().token)
    project = f"cli{next(_names)}"
    assert cli("projects", "create", project).code == 0
    made = cli("apps", "create", project, name, "--git-url", repo.url, "--branch", "main",
               "--port", "8000", "--health-path", "/")  # fmt: skip
    assert made.code == 0, made
    return f"{project}/{name}"


def _stored_log(deployment_id: int) -> list[str]:
    db.session.expire_all()
    lines = list(db.session.scalars(
        select(DeploymentLogLine.text).where(DeploymentLogLine.deployment_id == deployment_id)
        .order_by(DeploymentLogLine.seq)
    ))  # fmt: skip
    db.session.close()
    return lines


def _deployments(ref: str) -> list[Deployment]:
    db.session.expire_all()
    project, name = ref.split("/")
    found = list(db.session.scalars(
        select(Deployment).join(Application, Deployment.application_id == Application.id)
        .join(Project, Application.project_id == Project.id)
        .where(Application.name == name, Project.name == project).order_by(Deployment.id)
    ))  # fmt: skip
    db.session.close()
    return found


def _diagnose(deploy_lab: Lab) -> str:
    return f"worker:\n{deploy_lab.worker.tail()}\nserver:\n{deploy_lab.server.log_tail()}"


def test_deploy_wait_prints_the_build_log_and_exits_0_once_running(deploy_lab, repo):
    repo.commit(lab.web_files("v1"), "v1")
    ref = _new_app(deploy_lab, repo)
    done = deploy_lab.cli("deploy", ref, "--wait", "--timeout", str(DEPLOY_TIMEOUT),
                          timeout=DEPLOY_TIMEOUT + 30)  # fmt: skip
    assert done.code == 0, f"{done}\n{_diagnose(deploy_lab)}"
    [deployment] = _deployments(ref)
    assert deployment.status == "running"
    assert f"Deployment {deployment.id} is running." in done.err
    # stdout is the build log, every stored line once, in order.
    assert done.out.splitlines() == _stored_log(deployment.id)
    assert len(done.out.splitlines()) > 3
    project, name = ref.split("/")
    assert _through_traefik(deploy_lab.infra, f"{name}.{project}.localhost").text == (
        "hello from v1\n"
    )


def test_a_failing_build_exits_non_zero_with_the_log_and_the_error(deploy_lab, repo):
    repo.commit(lab.web_files("v1", extra_run="/bin/false"), "broken")
    ref = _new_app(deploy_lab, repo)
    done = deploy_lab.cli("deploy", ref, "--wait", timeout=DEPLOY_TIMEOUT)
    assert done.code == 1, f"{done}\n{_diagnose(deploy_lab)}"
    [deployment] = _deployments(ref)
    assert deployment.status == "failed"
    assert done.out.splitlines() == _stored_log(deployment.id)
    assert "/bin/false" in done.out  # the build's own output names the step that failed
    assert f"Deployment {deployment.id} failed: {deployment.error}" in done.err


class Lines:
    """A process's stdout, line by line, read in a thread."""

    def __init__(self, proc: subprocess.Popen):
        self.proc, self.lines, self._queue = proc, [], queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def finish(self) -> list[str]:
        """Every line, once the process has ended."""
        self._thread.join(10)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return self.lines

    def _read(self):
        for line in self.proc.stdout:
            self._queue.put(line.rstrip("\n"))

    def wait_for(self, predicate, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.2)
            except queue.Empty:
                continue
            self.lines.append(line)
            if predicate(line):
                return line
        raise AssertionError(f"not seen in {timeout} s; got {self.lines[-20:]}")


def test_deploy_wait_resumes_the_log_when_the_server_restarts(deploy_lab, repo):
    """Killed mid-build and started again, the server is asked with Last-Event-ID: the
    printed log has every line once."""
    files = lab.web_files("v1", extra_run="/bin/echo building && /bin/sleep 6 && /bin/echo done")
    repo.commit(files, "slow build")
    ref = _new_app(deploy_lab, repo)
    proc = deploy_lab.cli.popen("deploy", ref, "--wait", "--timeout", str(DEPLOY_TIMEOUT))
    try:
        out = Lines(proc)
        out.wait_for(lambda line: "building" in line, timeout=90)
        deploy_lab.kill_server()  # the connection drops mid-stream
        deploy_lab.server = deploy_lab.start_server()
        code = proc.wait(DEPLOY_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
    out.finish()
    err = proc.stderr.read()
    [deployment] = _deployments(ref)
    assert code == 0, f"{err}\n{out.lines}\n{_diagnose(deploy_lab)}"
    assert out.lines == _stored_log(deployment.id)


def _ticking_files(version: str) -> dict[str, str]:
    """A site that also writes a line to stdout every 0.3 s, naming its version."""
    script = (f"(while true; do /bin/echo tick-{version}; /bin/sleep 0.3; done) & "
              "exec /bin/busybox httpd -f -p 8000 -h /www")  # fmt: skip
    return {
        "Dockerfile": f'FROM {lab.BASE_IMAGE}\nCOPY www /www\nCMD ["/bin/sh", "-c", "{script}"]\n',
        "www/index.html": f"hello from {version}\n",
    }


def test_logs_follow_the_app_across_a_redeploy_and_rollback_goes_back(deploy_lab, repo):
    cli = deploy_lab.cli
    repo.commit(_ticking_files("v1"), "v1")
    ref = _new_app(deploy_lab, repo)
    first = cli("deploy", ref, "--wait", timeout=DEPLOY_TIMEOUT)
    assert first.code == 0, f"{first}\n{_diagnose(deploy_lab)}"
    recent = cli("logs", ref)
    assert recent.code == 0, recent
    assert "tick-v1" in recent.out

    proc = cli.popen("logs", ref, "-f")
    try:
        out = Lines(proc)
        out.wait_for(lambda line: line.endswith("tick-v1"))
        repo.commit(_ticking_files("v2"), "v2")
        second = cli("deploy", ref, "--wait", timeout=DEPLOY_TIMEOUT)
        assert second.code == 0, f"{second}\n{_diagnose(deploy_lab)}"
        out.wait_for(lambda line: line.endswith("tick-v2"))
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0
    assert proc.stderr.read().count("-- following deployment") >= 2

    project, name = ref.split("/")
    host = f"{name}.{project}.localhost"
    assert _through_traefik(deploy_lab.infra, host).text == "hello from v2\n"
    back = cli("rollback", ref, "--wait", timeout=DEPLOY_TIMEOUT)
    assert back.code == 0, f"{back}\n{_diagnose(deploy_lab)}"
    assert _through_traefik(deploy_lab.infra, host).text == "hello from v1\n"
