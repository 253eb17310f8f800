"""``slipway databases``: a project's managed databases, and linking one to an app."""

from __future__ import annotations

import time

import click

from slipway_cli.base import APP, api, resolve_app, resolve_project
from slipway_cli.output import as_json, fields, json_option, listing

DATABASE_COLUMNS = (
    ("ID", lambda d: d.get("id")),
    ("NAME", lambda d: d.get("name")),
    ("ENGINE", lambda d: f"{d.get('engine')} {d.get('version')}"),
    ("STATUS", lambda d: d.get("status")),
    ("HOST", lambda d: f"{d.get('host')}:{d.get('port')}"),
    ("PUBLIC", lambda d: d.get("public_port")),
    ("ERROR", lambda d: d.get("error")),
)
FINAL = ("running", "failed", "stopped", "deleted")


def resolve_database(client, project: str, name: str) -> dict:
    """The database ``name`` of project ``project`` (a plain number: the database's id)."""
    if name.isdigit():
        return client.get(f"/databases/{int(name)}")
    found = resolve_project(client, project)
    for database in client.every(f"/projects/{found['id']}/databases"):
        if database.get("name") == name:
            return database
    raise click.ClickException(f"No database {name!r} in project {project!r}.")


def _wait(client, database: dict, timeout: float) -> dict:
    """Poll until the job is done (a final status and no work in progress)."""
    deadline = time.monotonic() + timeout
    while database.get("status") not in FINAL or database.get("progress"):
        if time.monotonic() > deadline:
            raise click.ClickException(
                f"Database {database.get('name')} is still {database.get('status')} "
                f"({database.get('progress') or 'no progress'}) after {timeout:g} s."
            )
        time.sleep(1)
        database = client.get(f"/databases/{database['id']}")
    return database


def _said(database: dict, raw: bool, done: str) -> None:
    if raw:
        as_json(database)
        return
    click.echo(f"Database {database.get('name')} {done}: {database.get('status')}.")
    if database.get("error"):
        click.echo(database["error"], err=True)


wait_option = click.option("--wait", type=click.FloatRange(0), default=0,
                           help="Wait up to this many seconds for the job to end.")  # fmt: skip


@click.group()
def databases():
    """Databases: ls, show, create, start, stop, restart, rotate, delete, link, unlink."""


@databases.command("ls")
@click.argument("project")
@json_option
def databases_ls(project: str, raw: bool):
    """The databases of PROJECT (its name or id)."""
    client = api()
    found = resolve_project(client, project)
    listing(client.every(f"/projects/{found['id']}/databases"), DATABASE_COLUMNS, raw,
            "No databases.")  # fmt: skip


@databases.command("show")
@click.argument("project")
@click.argument("name")
@json_option
def databases_show(project: str, name: str, raw: bool):
    """One database: its state and how the project's apps reach it (no password)."""
    found = resolve_database(api(), project, name)
    if raw:
        as_json(found)
    else:
        fields(found, [key for key in found if not isinstance(found[key], dict | list)])


@databases.command("create")
@click.argument("project")
@click.argument("name")
@click.option("--engine", type=click.Choice(["postgres", "mariadb", "redis"]), required=True)
@click.option("--memory", "memory_limit_mb", type=click.IntRange(16), help="Memory limit, MiB.")
@click.option("--cpus", "cpu_limit", type=click.FloatRange(0.05, 64), help="CPU limit, cores.")
@wait_option
@json_option
def databases_create(project, name, engine, memory_limit_mb, cpu_limit, wait, raw):
    """Create database NAME in PROJECT (a strong password is generated and kept sealed)."""
    client = api()
    found = resolve_project(client, project)
    body = {"name": name, "engine": engine, "memory_limit_mb": memory_limit_mb,
            "cpu_limit": cpu_limit}  # fmt: skip
    database = client.post(f"/projects/{found['id']}/databases",
                           {k: v for k, v in body.items() if v is not None})  # fmt: skip
    if wait:
        database = _wait(client, database, wait)
    _said(database, raw, "created" if wait else "is being created")
    if database.get("status") == "failed":
        raise SystemExit(1)


def _action(verb: str, path: str, done: str):
    @databases.command(verb, help=f"{verb.capitalize()} database NAME of PROJECT.")
    @click.argument("project")
    @click.argument("name")
    @wait_option
    @json_option
    def command(project: str, name: str, wait: float, raw: bool):
        client = api()
        database = resolve_database(client, project, name)
        database = client.post(f"/databases/{database['id']}/{path}")
        if wait:
            database = _wait(client, database, wait)
        _said(database, raw, done)

    return command


databases_start = _action("start", "start", "started")
databases_stop = _action("stop", "stop", "stopped")
databases_restart = _action("restart", "restart", "restarted")
databases_rotate = _action("rotate", "rotate-password", "has a new password")


@databases.command("delete")
@click.argument("project")
@click.argument("name")
@click.option("--no-final-backup", is_flag=True, help="Do not take a final backup first.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@wait_option
@json_option
def databases_delete(project, name, no_final_backup, yes, wait, raw):
    """Delete database NAME of PROJECT (its volume is kept for the grace period)."""
    client = api()
    database = resolve_database(client, project, name)
    if not yes:
        click.confirm(f"Delete database {database['name']} of {project}?", abort=True)
    final = "false" if no_final_backup else "true"
    database = client.request("DELETE", f"/databases/{database['id']}",
                              params={"final_backup": final})  # fmt: skip
    if wait:
        database = _wait(client, database, wait)
    _said(database, raw, "deleted" if wait else "is being deleted")


@databases.command("link")
@click.argument("app", type=APP)
@click.argument("database")
@click.option("--prefix", default="", help="ANALYTICS gives ANALYTICS_DATABASE_URL, …")
@json_option
def databases_link(app: str, database: str, prefix: str, raw: bool):
    """Link DATABASE (a name in the app's project, or an id) to APP (<project>/<app>)."""
    client = api()
    found = resolve_app(client, app)
    target = resolve_database(client, str(found["project_id"]), database)
    link = client.post(f"/apps/{found['id']}/database-links",
                       {"database_id": target["id"], "prefix": prefix})  # fmt: skip
    if raw:
        as_json(link)
    else:
        click.echo(f"Linked {target['name']} to {app}: {', '.join(link['variables'])} "
                   "from the next deploy.")  # fmt: skip


@databases.command("unlink")
@click.argument("app", type=APP)
@click.argument("database")
def databases_unlink(app: str, database: str):
    """Unlink DATABASE (its name) from APP."""
    client = api()
    found = resolve_app(client, app)
    for link in client.get(f"/apps/{found['id']}/database-links").get("data", []):
        if link["database_name"] == database or str(link["database_id"]) == database:
            client.delete(f"/apps/{found['id']}/database-links/{link['id']}")
            click.echo(f"Unlinked {link['database_name']} from {app}: from the next deploy.")
            return
    raise click.ClickException(f"{database!r} is not linked to {app}.")
