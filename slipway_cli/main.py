"""``slipway``: the group, login, and the commands that are not one resource's.

Shell completion is click's: ``eval "$(_SLIPWAY_COMPLETE=bash_source slipway)"`` in
``~/.bashrc`` (``zsh_source``, ``fish_source`` for the others), or the script that
``slipway completion bash|zsh|fish`` prints.
"""

from __future__ import annotations

import os
import sys

import click

from slipway_cli import __version__, apps, backups, config, databases, deploys
from slipway_cli.base import Group, api
from slipway_cli.client import Client
from slipway_cli.output import as_json, json_option, listing

SHELLS = ("bash", "zsh", "fish")


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="slipway")
def cli():
    """Slipway from the command line: apps, deployments, logs, env, domains, backups.

    Log in once with `slipway login` (an API key from the dashboard's API keys page);
    SLIPWAY_URL and SLIPWAY_TOKEN override the saved login. Apps are named
    PROJECT/APP. Every listing takes --json for the API's data as it is.
    """


@cli.command()
@click.option("--url", help="The Slipway server, e.g. https://paas.example.com.")
@click.option("--token", help="An API key (slw_…); '-' reads it from stdin. Asked when missing.")
def login(url: str | None, token: str | None):
    """Check a URL and an API key with the server and keep them for the next commands."""
    saved = config.read_file()
    if not url:
        url = click.prompt("Slipway URL", default=saved.get("url") or None)
    if token == "-":
        token = sys.stdin.readline().strip()
    if not token:
        token = click.prompt("API key", hide_input=True).strip()
    url = config.normalise_url(url)
    me = Client(url, token).get("/me")
    where = config.save(url, token)
    team, key = me.get("team") or {}, me.get("key") or {}
    scopes = ", ".join(key.get("scopes") or [])
    click.echo(
        f"Logged in to {url} as {me.get('email')} (team {team.get('name')}, "
        f"{team.get('role')}) with the key {key.get('name')!r}, scopes {scopes}."
    )
    click.echo(f"Saved in {where} (readable by you only).", err=True)
    for name in ("SLIPWAY_URL", "SLIPWAY_TOKEN"):
        if os.environ.get(name):
            click.echo(f"Note: {name} is set and overrides the saved login.", err=True)


@cli.command()
def logout():
    """Forget the saved login (the key itself stays valid: revoke it on the dashboard)."""
    if config.forget():
        click.echo(f"Removed {config.path()}.")
    else:
        click.echo("Not logged in.")


@cli.command()
@json_option
def whoami(raw: bool):
    """The key's member, team and scopes."""
    me = api().get("/me")
    if raw:
        as_json(me)
        return
    team, key = me.get("team") or {}, me.get("key") or {}
    click.echo(f"{me.get('email')} in team {team.get('name')} ({team.get('role')})")
    click.echo(f"key {key.get('name')!r} ({key.get('prefix')}), scopes: "
               f"{', '.join(key.get('scopes') or [])}")  # fmt: skip


@cli.command()
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell: str):
    """Print the shell completion script: eval "$(slipway completion bash)"."""
    from click.shell_completion import get_completion_class

    completer = get_completion_class(shell)(cli, {}, "slipway", "_SLIPWAY_COMPLETE")
    click.echo(completer.source())


@cli.group()
def projects():
    """Projects: ls, create."""


@projects.command("ls")
@json_option
def projects_ls(raw: bool):
    """The projects the key can see."""
    columns = (("ID", lambda p: p["id"]), ("NAME", lambda p: p["name"]),
               ("DESCRIPTION", lambda p: p.get("description")))  # fmt: skip
    listing(api().every("/projects"), columns, raw, "No projects.")


@projects.command("create")
@click.argument("name")
@click.option("--description", default=None)
@json_option
def projects_create(name: str, description: str | None, raw: bool):
    """Create a project."""
    body = {"name": name} | ({"description": description} if description else {})
    project = api().post("/projects", body)
    if raw:
        as_json(project)
    else:
        click.echo(f"Project {project['name']} created (id {project['id']}).")


cli.add_command(apps.apps)
cli.add_command(apps.env)
cli.add_command(apps.domains)
cli.add_command(deploys.deploy)
cli.add_command(deploys.deployments)
cli.add_command(deploys.logs)
cli.add_command(deploys.rollback)
cli.add_command(backups.backups)
cli.add_command(databases.databases)
