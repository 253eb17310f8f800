"""What every command shares: the API client of the saved login, errors, app names."""

from __future__ import annotations

import click

from slipway_cli import config
from slipway_cli.client import ApiError, Client, Unreachable

EXIT_API_ERROR = 1


def report(exc: ApiError) -> None:
    """The API's message on stderr, with each refused field on a line of its own."""
    click.echo(f"Error: {exc.message} ({exc.status} {exc.code})", err=True)
    for name, message in exc.fields.items():
        click.echo(f"  {name}: {message}", err=True)


class Group(click.Group):
    """A group whose commands end with the API's error (exit 1) instead of a traceback."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            report(exc)
            ctx.exit(EXIT_API_ERROR)
        except Unreachable as exc:
            click.echo(f"Error: {exc}", err=True)
            click.echo("Check the URL (slipway login, or SLIPWAY_URL) and your network.", err=True)
            ctx.exit(EXIT_API_ERROR)


def api() -> Client:
    """The client of the saved login (or of SLIPWAY_URL / SLIPWAY_TOKEN)."""
    settings = config.load()
    if not settings.url or not settings.token:
        raise click.ClickException(
            "Not logged in: run `slipway login` (or set SLIPWAY_URL and SLIPWAY_TOKEN)."
        )
    return Client(settings.url, settings.token)


def split_ref(ref: str) -> tuple[str, str]:
    project, sep, name = ref.partition("/")
    if not sep or not project or not name or "/" in name:
        raise click.BadParameter(f"{ref!r}: name an app as <project>/<app>.", param_hint="APP")
    return project, name


def resolve_app(client: Client, ref: str) -> dict:
    """The app named ``<project>/<app>`` (a plain number is taken as the app's id)."""
    if ref.isdigit():
        return client.get(f"/apps/{int(ref)}")
    project, name = split_ref(ref)
    found = client.get("/apps", project=project, name=name).get("data", [])
    if not found:
        raise click.ClickException(
            f"No app {name!r} in project {project!r} (or your key cannot see it)."
        )
    return found[0]


def resolve_project(client: Client, ref: str) -> dict:
    """The project named ``ref`` (a plain number is taken as its id)."""
    if ref.isdigit():
        return client.get(f"/projects/{int(ref)}")
    for project in client.every("/projects", name=ref):
        if project.get("name") == ref:
            return project
    raise click.ClickException(f"No project {ref!r} (or your key cannot see it).")


class AppRef(click.ParamType):
    """``<project>/<app>``, checked before any request is made (a usage error, exit 2)."""

    name = "PROJECT/APP"

    def convert(self, value, param, ctx):
        if isinstance(value, str) and not value.isdigit():
            project, sep, name = value.partition("/")
            if not sep or not project or not name or "/" in name:
                self.fail(f"{value!r}: name an app as <project>/<app>.", param, ctx)
        return value


APP = AppRef()
