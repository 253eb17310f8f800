"""API keys: the member's keys in the key's team, a new one (its token once)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, Field

from app.web.api.schemas.common import Input, MeKey, PageQuery

__all__ = ["ApiKeyItem", "ApiKeyPage", "ApiKeyQuery", "ApiKeyCreate", "ApiKeyCreated"]

ScopeName = Literal["read", "deploy", "write", "admin"]
ProjectId = Annotated[int, Field(ge=1, le=2**62)]


class ApiKeyItem(MeKey):
    """A key as listed: never its secret (only a hash of it is kept)."""


class ApiKeyPage(BaseModel):
    data: list[ApiKeyItem]
    next_cursor: str | None


class ApiKeyQuery(PageQuery):
    pass


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=100, description="What uses the key")
    scopes: list[ScopeName] = Field(
        min_length=1, max_length=4,
        description="Among the request key's own scopes (a key never makes a broader key)",
    )  # fmt: skip
    project_ids: list[ProjectId] | None = Field(
        None, min_length=1, max_length=500,
        description="Only these projects (null: every project). Required, and among its "
        "own, when the request key is project-limited",
    )  # fmt: skip
    expires_at: datetime | None = Field(
        None, description="When it stops working (UTC when no offset). Required, and no "
        "later than its own, when the request key expires",
    )  # fmt: skip


class ApiKeyCreated(ApiKeyItem):
    token: str = Field(description="The key itself: shown in this answer only, never again")
