"""What the commands print: aligned tables for people, the API's JSON for scripts."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import click

Column = tuple[str, Callable[[dict], Any]]  # header, value of a row


def cell(value: Any) -> str:
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value).replace("\n", " ")


def table(rows: Sequence[dict], columns: Sequence[Column], empty: str = "Nothing yet.") -> None:
    """``rows`` as a table whose columns line up (the last one is not padded)."""
    if not rows:
        click.echo(empty, err=True)
        return
    lines = [[header for header, _ in columns]]
    lines += [[cell(value(row)) for _, value in columns] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(columns))]
    for line in lines:
        padded = [text.ljust(width) for text, width in zip(line[:-1], widths, strict=False)]
        click.echo("  ".join([*padded, line[-1]]).rstrip())


def as_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False))


def listing(data: list, columns: Sequence[Column], raw: bool, empty: str) -> None:
    """A listing: the API's ``data`` as JSON with ``--json``, else a table."""
    if raw:
        as_json(data)
    else:
        table(data, columns, empty)


def fields(record: dict, names: Sequence[str]) -> None:
    """One record as ``name: value`` lines, aligned."""
    width = max(len(name) for name in names)
    for name in names:
        click.echo(f"{name + ':':<{width + 1}} {cell(record.get(name))}")


json_option = click.option("--json", "raw", is_flag=True, help="Print the API's JSON data.")
