"""``/api/v1``: the REST API (``base`` has its rules, ``spec`` its OpenAPI document),
and ``/api/docs``, the document as a page. One module per resource; each handler
parses, authorises, calls the domain function the page calls, and answers."""

from __future__ import annotations

# Each module adds its routes to the blueprints when imported.
from app.web.api import (
    apps,  # noqa: F401
    audit,  # noqa: F401
    backups,  # noqa: F401
    databases,  # noqa: F401
    deployments,  # noqa: F401
    docs,  # noqa: F401
    domains,  # noqa: F401
    env,  # noqa: F401
    keys,  # noqa: F401
    logs,  # noqa: F401
    members,  # noqa: F401
    meta,  # noqa: F401
    notifications,  # noqa: F401
    projects,  # noqa: F401
)
from app.web.api.base import bp
from app.web.api.docs import bp as docs_bp

__all__ = ["bp", "docs_bp"]
