"""``flask --app app …`` commands beyond Flask-Migrate's ``db`` group."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import AppGroup


def register(app: Flask) -> None:
    @app.cli.command("migrate")
    @click.option(
        "--proxy-config",
        is_flag=True,
        help="Then write Traefik's static configuration and print its path (last line), "
        "as proxy-config does: make run's start-up in one process.",
    )
    def migrate_command(proxy_config: bool) -> None:
        """Upgrade the database to the newest migration."""
        from flask_migrate import upgrade

        upgrade()
        click.echo("database is at the newest migration")
        if proxy_config:
            from app.proxy import traefik

            click.echo(traefik.write_static_config())

    @app.cli.command("proxy-config")
    def proxy_config_command() -> None:
        """Write Traefik's static configuration; print its path."""
        from app.proxy import traefik

        click.echo(traefik.write_static_config())

    users = AppGroup("users", help="User accounts.")

    @users.command("reset-password")
    @click.argument("email")
    @click.option(
        "--password-stdin",
        is_flag=True,
        help="Read the new password from standard input and set it now, instead of "
        "printing a link.",
    )
    def reset_password_command(email: str, password_stdin: bool) -> None:
        """Print a one-time link (1 hour) for EMAIL to set a new password.

        Using the link, or --password-stdin, ends every session of the user."""
        from app.accounts import resets
        from app.models.accounts import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH

        user = resets.find_user(email)
        if user is None:
            raise click.ClickException(f"no user has the email {email}")
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not PASSWORD_MIN_LENGTH <= len(password) <= PASSWORD_MAX_LENGTH:
                raise click.ClickException(
                    f"the password must have {PASSWORD_MIN_LENGTH} to {PASSWORD_MAX_LENGTH} "
                    "characters; nothing was changed"
                )
            resets.set_password(user, password)
            click.echo(f"New password set for {user.email}; every session of it has ended.")
            return
        token = resets.issue(user, via="cli")
        url = resets.reset_url(token)
        click.echo(f"One-time link for {user.email} to set a new password (valid for 1 hour):")
        if url:
            click.echo(url)
        else:
            click.echo(resets.reset_path(token))
            click.echo(
                "SLIPWAY_PUBLIC_URL is not set: open this path on the address you open the "
                "dashboard at.",
                err=True,
            )

    app.cli.add_command(users)
