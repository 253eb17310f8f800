"""Deployments, their build log and the waits and streams that follow them."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from app.models.deployments import DeploymentStatus
from app.web.api.schemas.common import Input, PageQuery

__all__ = [
    "Deployment", "DeploymentPage", "DeploymentListQuery", "DeploymentCreate", "RollbackCreate",
    "WaitQuery", "BuildLogQuery", "BuildLogLine", "BuildLog", "DeploymentLogsQuery",
    "AppLogsQuery",
]  # fmt: skip

Status = Literal[tuple(s.value for s in DeploymentStatus)]  # type: ignore[valid-type]


class Deployment(BaseModel):
    id: int
    app_id: int
    status: Status
    step: str | None = Field(description="The pipeline step while building or deploying")
    trigger: str = Field(description="manual, api, webhook, rollback, apply, restart…")
    final: bool = Field(description="It will not change any more")
    commit_sha: str | None
    commit_message: str | None
    git_ref: str | None = Field(description="The ref it deploys (null: the app's branch)")
    image: str | None = Field(description="The image tag it built or runs")
    rollback_of_id: int | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    url: str


class DeploymentPage(BaseModel):
    data: list[Deployment]
    next_cursor: str | None


class DeploymentListQuery(PageQuery):
    status: Status | None = None


class DeploymentCreate(Input):
    ref: str | None = Field(None, max_length=255,
                            description="A branch or tag to deploy (git apps; default: the "
                            "app's branch)")  # fmt: skip

    @field_validator("ref")
    @classmethod
    def _ref(cls, value: str | None) -> str | None:
        from app import names

        if value is None:
            return None
        try:
            return names.branch(value)
        except names.InvalidValue as exc:
            raise ValueError(str(exc)) from None


class RollbackCreate(Input):
    keep_env: bool = Field(False, description="Run with today's env instead of the env "
                           "that deployment ran with")  # fmt: skip


class WaitQuery(Input):
    wait: float | None = Field(None, ge=0, le=86400,
                               description="Seconds to wait for a final status (capped by the "
                               "server's API_WAIT_MAX_SECONDS)")  # fmt: skip


class BuildLogQuery(Input):
    after: int = Field(0, ge=0, le=2**31, description="Lines after this number")
    limit: int = Field(5000, ge=1, le=10000)


class BuildLogLine(BaseModel):
    n: int
    text: str
    stream: str = Field(description="stdout, stderr, slipway (Slipway's own), container")
    ts: datetime


class BuildLog(BaseModel):
    lines: list[BuildLogLine]
    truncated: bool = Field(description="The stored log was cut at BUILD_LOG_MAX_BYTES")
    dropped_lines: int
    next_after: int | None = Field(description="More lines: ask again with after=this")
    final: bool


class DeploymentLogsQuery(Input):
    follow: bool = Field(False, description="Keep the stream open until the deployment is final")
    after: int | None = Field(None, ge=0, le=2**31,
                              description="Resume after this line (as Last-Event-ID)")  # fmt: skip


class AppLogsQuery(Input):
    follow: bool = Field(False, description="Keep following, across redeploys")
