"""Where ``slipway login`` keeps the server's URL and the API key.

A JSON file, ``config.json``, in the user's config directory (``click.get_app_dir``:
``$XDG_CONFIG_HOME/slipway`` or ``~/.config/slipway`` on Linux), readable by its owner
only (file 0600, directory 0700): it holds a credential. ``SLIPWAY_URL`` and
``SLIPWAY_TOKEN`` override what the file says, one by one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import click

FILE_NAME = "config.json"


@dataclass
class Settings:
    url: str | None
    token: str | None


def directory() -> Path:
    return Path(click.get_app_dir("slipway"))


def path() -> Path:
    return directory() / FILE_NAME


def normalise_url(url: str) -> str:
    """``https://paas.example.com/`` or ``…/api/v1`` -> ``https://paas.example.com``."""
    url = url.strip().rstrip("/")
    if url.endswith("/api/v1"):
        url = url[: -len("/api/v1")]
    if "://" not in url:
        url = "https://" + url
    return url


def read_file() -> dict:
    try:
        data = json.loads(path().read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load() -> Settings:
    """The file's settings, each overridden by its environment variable when that is set."""
    stored = read_file()
    url = os.environ.get("SLIPWAY_URL") or stored.get("url")
    token = os.environ.get("SLIPWAY_TOKEN") or stored.get("token")
    return Settings(normalise_url(url) if url else None, token or None)


def save(url: str, token: str) -> Path:
    """Write the file, owner-only from its first byte (never world-readable, even briefly)."""
    folder = directory()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(folder, 0o700)
    target = path()
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(out.fileno(), 0o600)  # an existing file keeps its mode on open: set it
        json.dump({"url": url, "token": token}, out, indent=2)
        out.write("\n")
    return target


def forget() -> bool:
    """Remove the file; whether there was one."""
    try:
        path().unlink()
    except FileNotFoundError:
        return False
    return True
