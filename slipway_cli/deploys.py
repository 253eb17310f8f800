"""``slipway deploy``, ``deployments``, ``logs`` and ``rollback``.

``deploy --wait`` prints the build log (stdout) as the server writes it, from the
deployment's event stream; a dropped connection is resumed with ``Last-Event-ID``. Its
exit code says how the deployment ended: 0 ``running``, 1 anything else (failed,
cancelled...), 3 still going when ``--timeout`` passed. Progress notes go to stderr, so
that stdout is the log alone.
"""

from __future__ import annotations

import sys
import time

import click

from slipway_cli.base import APP, api, resolve_app
from slipway_cli.client import Client, TimedOut, follow
from slipway_cli.output import as_json, json_option, listing

EXIT_FAILED = 1
EXIT_TIMED_OUT = 3
SUCCESS = "running"

DEPLOYMENT_COLUMNS = (
    ("ID", lambda d: d.get("id")),
    ("STATUS", lambda d: d.get("status")),
    ("TRIGGER", lambda d: d.get("trigger")),
    ("COMMIT", lambda d: (d.get("commit_sha") or "")[:10] or None),
    ("CREATED", lambda d: d.get("created_at")),
    ("MESSAGE", lambda d: d.get("error") or (d.get("commit_message") or "").split("\n")[0]),
)


def _note(text: str) -> None:
    click.echo(text, err=True)


def _line_text(data) -> str:
    return data.get("text", "") if isinstance(data, dict) else str(data)


def watch(client: Client, deployment: dict, timeout: float) -> int:
    """Print the deployment's log until it ends; the exit code of how it ended."""
    deployment_id = deployment["id"]
    deadline = time.monotonic() + timeout
    end: dict = {}

    def is_over() -> bool:
        return bool(client.get(f"/deployments/{deployment_id}").get("final"))

    try:
        for event in follow(client, f"/deployments/{deployment_id}/logs", {"follow": 1},
                            deadline=deadline, is_over=is_over):  # fmt: skip
            if event.event == "line":
                click.echo(_line_text(event.data))
            elif event.event == "status" and isinstance(event.data, dict):
                step = event.data.get("step")
                _note(f"-> {event.data.get('status')}" + (f" ({step})" if step else ""))
            elif event.event == "end":
                end = event.data if isinstance(event.data, dict) else {}
    except TimedOut:
        now = client.get(f"/deployments/{deployment_id}")
        _note(f"Timed out after {timeout:g} s: deployment {deployment_id} is still "
              f"{now.get('status')} (it goes on).")  # fmt: skip
        return EXIT_TIMED_OUT
    except KeyboardInterrupt:
        _note(f"Stopped following; deployment {deployment_id} goes on.")
        return 130
    final = client.get(f"/deployments/{deployment_id}")
    status = final.get("status") or end.get("status")
    error = final.get("error") or end.get("error")
    if status == SUCCESS:
        _note(f"Deployment {deployment_id} is running.")
        return 0
    _note(f"Deployment {deployment_id} {status}" + (f": {error}" if error else "."))
    return EXIT_FAILED


@click.command()
@click.argument("app", type=APP)
@click.option("--wait", "-w", is_flag=True, help="Follow the build log until it ends.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800.0, show_default=True,
              help="With --wait: give up waiting after this many seconds.")  # fmt: skip
@json_option
def deploy(app: str, wait: bool, timeout: float, raw: bool):
    """Deploy the app (PROJECT/APP) now.

    With --wait, the exit code is 0 only if the deployment ends running.
    """
    client = api()
    app_row = resolve_app(client, app)
    deployment = client.post(f"/apps/{app_row['id']}/deployments", {})
    if raw and not wait:
        as_json(deployment)
        return
    _note(f"Deployment {deployment['id']} of {app} {deployment.get('status')}.")
    if wait:
        sys.exit(watch(client, deployment, timeout))


@click.group()
def deployments():
    """Deployments: ls, show, log, cancel."""


@deployments.command("ls")
@click.argument("app", type=APP)
@click.option("--limit", type=click.IntRange(1, 100), default=20, show_default=True)
@json_option
def deployments_ls(app: str, limit: int, raw: bool):
    """The app's deployments, newest first."""
    client = api()
    found = client.get(f"/apps/{resolve_app(client, app)['id']}/deployments", limit=limit)
    listing(found.get("data", []), DEPLOYMENT_COLUMNS, raw, "No deployments.")


@deployments.command("log")
@click.argument("deployment_id", type=int)
@click.option("--follow", "-f", "following", is_flag=True, help="Keep printing until it ends.")
def deployments_log(deployment_id: int, following: bool):
    """A deployment's build log."""
    client = api()
    params = {"follow": 1} if following else None
    for event in follow(client, f"/deployments/{deployment_id}/logs", params):
        if event.event == "line":
            click.echo(_line_text(event.data))


@deployments.command("cancel")
@click.argument("deployment_id", type=int)
def deployments_cancel(deployment_id: int):
    """Cancel a deployment that is queued or building."""
    found = api().post(f"/deployments/{deployment_id}/cancel")
    click.echo(f"Deployment {deployment_id} {found.get('status')}.")


@click.command()
@click.argument("app", type=APP)
@click.option("--follow", "-f", "follow_", is_flag=True,
              help="Keep printing new lines, across redeploys, until Ctrl-C.")  # fmt: skip
def logs(app: str, follow_: bool):
    """The app's runtime (container) logs: the recent lines, or -f to follow."""
    client = api()
    app_id = resolve_app(client, app)["id"]
    params = {"follow": 1} if follow_ else None
    try:
        for event in follow(client, f"/apps/{app_id}/logs", params, read_timeout=60):
            data = event.data if isinstance(event.data, dict) else {}
            if event.event in ("line", "message"):
                click.echo(_line_text(event.data))
            elif event.event == "attached":
                _note(f"-- following deployment {data.get('deployment_id')} "
                      f"({data.get('replicas')} replica(s))")  # fmt: skip
            elif event.event == "skipped":
                _note(f"-- {data.get('count')} line(s) skipped (too fast to keep up)")
            elif event.event == "error":
                _note(f"-- the server stopped following: {data.get('reason') or event.data}")
    except KeyboardInterrupt:
        pass


def _previous(client: Client, app_id: int) -> dict:
    """The deployment served before the current one (the newest that was replaced)."""
    history = client.get(f"/apps/{app_id}/deployments", limit=100).get("data", [])
    for row in history:
        if row.get("status") == "replaced":
            return row
    raise click.ClickException("No earlier successful deployment to roll back to.")


@click.command()
@click.argument("app", type=APP)
@click.option("--to", "to", type=int, help="The deployment to go back to (default: the previous).")
@click.option("--wait", "-w", is_flag=True, help="Follow it until it ends.")
@click.option("--timeout", type=click.FloatRange(min=1), default=1800.0, show_default=True)
def rollback(app: str, to: int | None, wait: bool, timeout: float):
    """Serve an earlier deployment's image again (no rebuild)."""
    client = api()
    app_row = resolve_app(client, app)
    target = client.get(f"/deployments/{to}") if to else _previous(client, app_row["id"])
    if target.get("app_id") != app_row["id"]:
        raise click.ClickException(f"Deployment {to} is not one of {app}'s.")
    started = client.post(f"/deployments/{target['id']}/rollback")
    _note(f"Rolling back {app} to deployment {target['id']}: deployment {started['id']} "
          f"{started.get('status')}.")  # fmt: skip
    if wait:
        sys.exit(watch(client, started, timeout))
