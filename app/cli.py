"""``flask --app app …`` commands beyond Flask-Migrate's ``db`` group."""

from __future__ import annotations

import click
from flask import Flask
from flask_migrate import upgrade


def register(app: Flask) -> None:
    @app.cli.command("migrate")
    def migrate_command() -> None:
        """Upgrade the database to the newest migration."""
        upgrade()
        click.echo("database is at the newest migration")

    @app.cli.command("proxy-config")
    def proxy_config_command() -> None:
        """Write Traefik's static configuration; print its path."""
        from app.proxy import traefik

        click.echo(traefik.write_static_config())
