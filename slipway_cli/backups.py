"""``slipway backups``: the runs of the team's backup policies, and a run now."""

from __future__ import annotations

import click

from slipway_cli.base import api
from slipway_cli.output import as_json, json_option, listing

BACKUP_COLUMNS = (
    ("ID", lambda b: b.get("id")),
    ("POLICY", lambda b: f"{b.get('policy')} ({b.get('policy_id')})"),
    ("STATUS", lambda b: b.get("status")),
    ("SIZE", lambda b: b.get("size_bytes")),
    ("STARTED", lambda b: b.get("started_at") or b.get("created_at")),
    ("ERROR", lambda b: b.get("error")),
)
POLICY_COLUMNS = (
    ("ID", lambda p: p.get("id")),
    ("NAME", lambda p: p.get("name")),
    ("TARGET", lambda p: p.get("target_type")),
    ("CRON", lambda p: p.get("cron")),
    ("DESTINATION", lambda p: p.get("destination_id")),
    ("ENABLED", lambda p: p.get("enabled")),
)


@click.group()
def backups():
    """Backups: ls, run, policies."""


@backups.command("ls")
@click.argument("policy_id", type=int, required=False)
@json_option
def backups_ls(policy_id: int | None, raw: bool):
    """The backups made (of one policy when POLICY_ID is given), newest first."""
    found = api().every("/backups", policy_id=policy_id)
    listing(found, BACKUP_COLUMNS, raw, "No backups.")


@backups.command("policies")
@json_option
def backups_policies(raw: bool):
    """The team's backup policies."""
    listing(api().every("/backups/policies"), POLICY_COLUMNS, raw, "No backup policies.")


@backups.command("run")
@click.argument("policy_id", type=int)
@json_option
def backups_run(policy_id: int, raw: bool):
    """Back up now with the policy POLICY_ID."""
    started = api().post(f"/backups/policies/{policy_id}/run")
    if raw:
        as_json(started)
    else:
        click.echo(f"Backup {started.get('id')} of policy {policy_id} {started.get('status')}.")
