"""``slipway apps``, ``slipway env`` and ``slipway domains``."""

from __future__ import annotations

import re

import click

from slipway_cli.base import APP, api, resolve_app, resolve_project
from slipway_cli.output import as_json, fields, json_option, listing

ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

APP_COLUMNS = (
    ("APP", lambda a: f"{a.get('project')}/{a.get('name')}"),
    ("ID", lambda a: a.get("id")),
    ("SOURCE", lambda a: a.get("image") if a.get("source_type") == "image"
     else f"{a.get('git_url')}#{a.get('git_branch')}" if a.get("git_url") else None),
    ("STATUS", lambda a: a.get("status")),
    ("HEALTH", lambda a: a.get("health")),
    ("URL", lambda a: a.get("url")),
)  # fmt: skip


@click.group()
def apps():
    """Apps: ls, show, create."""


@apps.command("ls")
@click.option("--project", "-p", help="Only the apps of this project (its name).")
@json_option
def apps_ls(project: str | None, raw: bool):
    """The apps the key can see, with the state of their latest deployment."""
    found = api().every("/apps", project=project)
    listing(found, APP_COLUMNS, raw, "No apps.")


@apps.command("show")
@click.argument("app", type=APP)
@json_option
def apps_show(app: str, raw: bool):
    """One app's settings and state."""
    found = resolve_app(api(), app)
    if raw:
        as_json(found)
    else:
        fields(found, [name for name in found if not isinstance(found[name], dict | list)])


@apps.command("create")
@click.argument("project")
@click.argument("name")
@click.option("--image", help="Run this image (e.g. nginx:1.27); no build.")
@click.option("--git-url", help="Build the Dockerfile of this repository.")
@click.option("--branch", "git_branch", help="The branch to build (with --git-url).")
@click.option("--port", "container_port", type=click.IntRange(1, 65535),
              help="The port the container listens on.")  # fmt: skip
@click.option("--replicas", type=click.IntRange(1), help="How many containers serve it.")
@click.option("--health-path", "health_check_path", help="The path the health check asks for.")
@click.option("--description", help="A line about the app.")
@click.option("--environment", help="One of the project's environments (default: its first).")
@click.option("--env", "env_pairs", multiple=True, metavar="KEY=VALUE",
              help="A variable (repeat the option for more).")  # fmt: skip
@json_option
def apps_create(project: str, name: str, image, git_url, git_branch, env_pairs, raw, **settings):
    """Create the app NAME in PROJECT (a name or an id), from an image or a git repository."""
    if image and (git_url or git_branch):
        raise click.UsageError("Give either --image or --git-url (with --branch), not both.")
    if git_branch and not git_url:
        raise click.UsageError("--branch goes with --git-url.")
    if not image and not git_url:
        raise click.UsageError("Say what to run: --image IMAGE or --git-url URL.")
    body: dict = {"name": name}
    if image:
        body |= {"source_type": "image", "image": image}
    else:
        body |= {"source_type": "git", "git_url": git_url}
        body |= {"git_branch": git_branch} if git_branch else {}
    body |= {key: value for key, value in settings.items() if value is not None}
    if env_pairs:
        body["env"] = dict(_pairs(env_pairs))
    client = api()
    project_row = resolve_project(client, project)
    made = client.post(f"/projects/{project_row['id']}/apps", body)
    if raw:
        as_json(made)
    else:
        click.echo(f"App {made.get('project')}/{made['name']} created (id {made['id']}).")
        click.echo(f"Deploy it: slipway deploy {made.get('project')}/{made['name']} --wait")


# ---- env --------------------------------------------------------------------


@click.group()
def env():
    """Environment variables: ls, set, unset (a change applies at the next deploy)."""


def _app_and_rest(words: tuple[str, ...], is_app) -> tuple[str, list[str]]:
    """The app among ``words`` (before or after the variables) and the other words."""
    found = [word for word in words if is_app(word)]
    if len(found) != 1:
        raise click.UsageError("Name one app, as <project>/<app>.")
    rest = [word for word in words if word is not found[0]]
    if not rest:
        raise click.UsageError("Name at least one variable.")
    return APP.convert(found[0], None, None), rest


def _pairs(words) -> list[tuple[str, str]]:
    values = []
    for pair in words:
        key, sep, value = pair.partition("=")
        if not sep or not ENV_KEY.match(key):
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE.", param_hint="KEY=VALUE")
        values.append((key, value))
    return values


@env.command("ls")
@click.argument("app", type=APP)
@json_option
def env_ls(app: str, raw: bool):
    """The app's variables (a secret's value is never shown, nor sent by the API)."""
    client = api()
    found = client.get(f"/apps/{resolve_app(client, app)['id']}/env").get("data", [])
    columns = (("KEY", lambda v: v["key"]),
               ("VALUE", lambda v: "(secret)" if v.get("secret") else v.get("value")),
               ("UPDATED", lambda v: v.get("updated_at")))  # fmt: skip
    listing(found, columns, raw, "No variables.")


@env.command("set", context_settings={"ignore_unknown_options": False})
@click.argument("words", nargs=-1, required=True, metavar="KEY=VALUE... PROJECT/APP")
@click.option("--secret", is_flag=True, help="Keep the values secret (never shown again).")
def env_set(words: tuple[str, ...], secret: bool):
    """Set variables: slipway env set KEY=VALUE [KEY=VALUE...] PROJECT/APP [--secret]."""
    app, pairs = _app_and_rest(words, lambda word: "=" not in word)
    values = _pairs(pairs)
    client = api()
    app_id = resolve_app(client, app)["id"]
    for key, value in values:
        client.put(f"/apps/{app_id}/env/{key}", {"value": value, "secret": secret})
        click.echo(f"{key} set{' (secret)' if secret else ''}.")
    click.echo(f"Deploy to apply: slipway deploy {app}", err=True)


@env.command("unset")
@click.argument("words", nargs=-1, required=True, metavar="KEY... PROJECT/APP")
def env_unset(words: tuple[str, ...]):
    """Remove variables: slipway env unset KEY [KEY...] PROJECT/APP."""
    app, keys = _app_and_rest(words, lambda word: "/" in word or word.isdigit())
    client = api()
    app_id = resolve_app(client, app)["id"]
    for key in keys:
        client.delete(f"/apps/{app_id}/env/{key}")
        click.echo(f"{key} removed.")
    click.echo(f"Deploy to apply: slipway deploy {app}", err=True)


# ---- domains ----------------------------------------------------------------

DOMAIN_COLUMNS = (
    ("ID", lambda d: d.get("id")),
    ("HOST", lambda d: d.get("host_display") or d.get("host")),
    ("PATH", lambda d: d.get("path_prefix")),
    ("HTTPS", lambda d: d.get("https_mode")),
    ("WWW", lambda d: d.get("www")),
    ("STATE", lambda d: d.get("state")),
)


@click.group()
def domains():
    """Domains: ls, add."""


@domains.command("ls")
@click.argument("app", type=APP)
@json_option
def domains_ls(app: str, raw: bool):
    """The app's domains."""
    client = api()
    found = client.every(f"/apps/{resolve_app(client, app)['id']}/domains")
    listing(found, DOMAIN_COLUMNS, raw, "No domains.")


@domains.command("add")
@click.argument("app", type=APP)
@click.argument("host")
@click.option("--path-prefix", help="Route only this path (and below) to the app.")
@click.option("--strip-prefix", is_flag=True, default=None, help="Remove the prefix upstream.")
@click.option("--https", "https_mode", type=click.Choice(["redirect", "only", "off"]),
              help="HTTPS: redirect HTTP to it (default), HTTPS only, or off.")  # fmt: skip
@click.option("--www", type=click.Choice(["none", "both", "to_apex", "to_www"]),
              help="What the www. name does.")  # fmt: skip
@json_option
def domains_add(app: str, host: str, raw: bool, **options):
    """Route HOST to the app (its certificate is ordered when HTTPS is on)."""
    client = api()
    body = {"host": host} | {key: value for key, value in options.items() if value is not None}
    made = client.post(f"/apps/{resolve_app(client, app)['id']}/domains", body)
    if raw:
        as_json(made)
    else:
        click.echo(f"{made.get('host')} added (id {made.get('id')}).")
