"""Managed databases and their links to apps (``app.web.api.databases``).

The rules are the dashboard's (``app.forms.DatabaseForm``, ``LinkDatabaseForm``); the
name's and the prefix's own checks are the domain's (``app.databases``), whose message
comes back in ``details.fields``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field

from app.web.api.schemas.common import Input, PageQuery

__all__ = [
    "DatabaseCreate", "DatabaseListQuery", "Database", "DatabasePage", "DatabaseDeleteQuery",
    "PublicPortPut", "LinkCreate", "Link", "LinkList",
]  # fmt: skip

MAX_ID = 2**63 - 1


class DatabaseCreate(Input):
    name: str = Field(max_length=63, description="2-63 characters: a-z, 0-9 and '-'; the "
                      "internal host name the project's apps reach it at")  # fmt: skip
    engine: Literal["postgres", "mariadb", "redis"]
    memory_limit_mb: int | None = Field(None, ge=16, le=262144)
    cpu_limit: float | None = Field(None, ge=0.05, le=64, allow_inf_nan=False)


class DatabaseListQuery(PageQuery):
    pass


class DatabaseDeleteQuery(Input):
    final_backup: Literal["true", "false"] = Field(
        "true", description="Take a final backup first (the database needs a backup policy)"
    )


class Database(BaseModel):
    id: int
    project_id: int
    name: str
    engine: str
    version: str
    image: str
    status: str = Field(description="creating, running, stopped, failed, deleting or deleted")
    progress: str | None = Field(description="What the worker is doing now")
    error: str | None = Field(description="Why it failed, for a person")
    host: str = Field(description="Its internal host name on the project's network")
    port: int
    user: str | None
    database: str | None
    url: str = Field(description="DATABASE_URL / REDIS_URL with the password masked")
    public_port: int | None = Field(description="Its TLS port on this server, or null")
    memory_limit_mb: int | None
    cpu_limit: float | None
    linked_app_ids: list[int]
    password_rotated_at: datetime | None
    ready_at: datetime | None
    created_at: datetime


class DatabasePage(BaseModel):
    data: list[Database]
    next_cursor: str | None


class PublicPortPut(Input):
    port: int | None = Field(description="One of SLIPWAY_DATABASE_PUBLIC_PORTS, or null to close")


class LinkCreate(Input):
    database_id: int = Field(ge=1, le=MAX_ID)
    prefix: str = Field("", max_length=39, description="ANALYTICS gives ANALYTICS_DATABASE_URL")


class Link(BaseModel):
    id: int
    app_id: int
    database_id: int
    database_name: str
    prefix: str
    variables: list[str] = Field(description="The variables it gives the app (no values)")


class LinkList(BaseModel):
    data: list[Link]
