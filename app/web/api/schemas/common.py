"""Models every part of the API shares: the error envelope, pages, the key's member."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ErrorBody", "Error", "PageQuery", "Input", "Me", "MeTeam", "MeKey", "OpenApi"]


class Input(BaseModel):
    """A request body or query: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    code: str = Field(description="A stable, machine-readable code, e.g. `invalid`")
    message: str = Field(description="What went wrong, for a person")
    details: dict = Field(description="More: `fields` maps each invalid field to its error")


class Error(BaseModel):
    error: ErrorBody


class PageQuery(Input):
    limit: int = Field(50, ge=1, le=100, description="Items per page")
    cursor: str | None = Field(None, max_length=40, description="`next_cursor` of the last page")


class MeTeam(BaseModel):
    id: int
    name: str
    role: str


class MeKey(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    project_ids: list[int] | None
    expires_at: datetime | None
    last_used_at: datetime | None
    created_at: datetime
    revoked_at: datetime | None


class OpenApi(BaseModel):
    """The OpenAPI 3.1 document."""

    model_config = ConfigDict(extra="allow")
    openapi: str


class Me(BaseModel):
    id: int
    email: str
    name: str
    team: MeTeam
    key: MeKey
