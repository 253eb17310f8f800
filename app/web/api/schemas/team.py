"""Models of the team's resources: backups (destinations, policies, runs, restores),
notification channels, members, invitations, audit events.

Secret values (an S3 secret key, a database password, a webhook URL, an SMTP password,
a signing secret) are fields of the inputs only; the outputs say whether one is stored
(``has_...``). The one exception is a generic webhook's signing secret, which the
answer to its creation carries once, as the dashboard shows it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from app.web.api.schemas.common import Input, PageQuery

__all__ = [
    "AuditEvent", "AuditEventPage", "AuditQuery", "Backup", "BackupPage", "BackupQuery",
    "Destination", "DestinationCreate", "DestinationPage", "DestinationUpdate", "Invitation",
    "InvitationCreate", "InvitationCreated", "InvitationPage", "Member", "MemberPage",
    "MemberUpdate", "NotificationChannel", "NotificationChannelCreate",
    "NotificationChannelCreated", "NotificationChannelPage", "NotificationChannelUpdate",
    "Policy", "PolicyCreate", "PolicyPage", "PolicyUpdate", "ProjectGrant", "Restore",
    "RestoreCreate",
]  # fmt: skip

RoleName = Literal["viewer", "developer", "admin", "owner"]
EventName = Literal[
    "backup.failed", "drill.failed", "deploy.failed", "app.down", "app.recovered",
    "app.crash_looping", "certificate.failed", "certificate.expiring",
]  # fmt: skip
Name = Field(min_length=1, max_length=63, description="A slug: lowercase letters, digits, '-'")


# ---- backups: destinations ------------------------------------------------------


class DestinationCreate(Input):
    name: str = Name
    endpoint_url: str = Field(min_length=1, max_length=500, description="https:// S3 endpoint")
    region: str = Field("us-east-1", min_length=1, max_length=32)
    bucket: str = Field(min_length=1, max_length=63)
    prefix: str = Field("", max_length=200)
    access_key_id: str = Field(min_length=1, max_length=200)
    secret_access_key: str = Field(min_length=1, max_length=500, description="Write-only")
    path_style: bool = False


class DestinationUpdate(Input):
    """Fields left out keep their value; ``secret_access_key`` left out keeps the stored key."""

    name: str | None = Field(None, min_length=1, max_length=63)
    endpoint_url: str | None = Field(None, min_length=1, max_length=500)
    region: str | None = Field(None, min_length=1, max_length=32)
    bucket: str | None = Field(None, min_length=1, max_length=63)
    prefix: str | None = Field(None, max_length=200)
    access_key_id: str | None = Field(None, min_length=1, max_length=200)
    secret_access_key: str | None = Field(None, min_length=1, max_length=500)
    path_style: bool | None = None


class Destination(BaseModel):
    id: int
    name: str
    endpoint_url: str
    region: str
    bucket: str
    prefix: str
    access_key_id: str
    path_style: bool
    has_secret_key: bool
    created_at: datetime


class DestinationPage(BaseModel):
    data: list[Destination]
    next_cursor: str | None


# ---- backups: policies --------------------------------------------------------------


class PolicyCreate(Input):
    name: str = Name
    target_type: Literal["postgres", "slipway"] = "postgres"
    database_url: str | None = Field(
        None, max_length=500,
        description="postgresql://user:password@host:5432/db (write-only password); "
        "required for target_type postgres",
    )  # fmt: skip
    destination_id: int = Field(ge=1, le=2**62)
    cron: str = Field("0 2 * * *", min_length=1, max_length=100)
    keep_local_days: int = Field(7, ge=0, le=3650)
    keep_daily: int = Field(30, ge=0, le=3650)
    keep_weekly: int = Field(12, ge=0, le=520)
    enabled: bool = True


class PolicyUpdate(Input):
    """Fields left out keep their value; ``database_url`` left out keeps the stored one."""

    name: str | None = Field(None, min_length=1, max_length=63)
    target_type: Literal["postgres", "slipway"] | None = None
    database_url: str | None = Field(None, min_length=1, max_length=500)
    destination_id: int | None = Field(None, ge=1, le=2**62)
    cron: str | None = Field(None, min_length=1, max_length=100)
    keep_local_days: int | None = Field(None, ge=0, le=3650)
    keep_daily: int | None = Field(None, ge=0, le=3650)
    keep_weekly: int | None = Field(None, ge=0, le=520)
    enabled: bool | None = None


class Policy(BaseModel):
    id: int
    name: str
    target_type: str
    database_url: str | None = Field(description="Without its password")
    has_database_password: bool
    destination_id: int
    cron: str
    keep_local_days: int
    keep_daily: int
    keep_weekly: int
    enabled: bool
    created_at: datetime
    updated_at: datetime | None


class PolicyPage(BaseModel):
    data: list[Policy]
    next_cursor: str | None


# ---- backups: runs and restores -------------------------------------------------------


class BackupQuery(PageQuery):
    policy_id: int | None = Field(None, ge=1, le=2**62)


class Backup(BaseModel):
    id: int
    policy_id: int
    policy: str
    trigger: str
    status: str
    final: bool
    error: str | None
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    size_bytes: int | None
    sha256: str | None
    bucket: str | None
    object_key: str | None
    uploaded: bool
    has_local_copy: bool
    row_counts: dict[str, Any]
    created_at: datetime
    url: str


class BackupPage(BaseModel):
    data: list[Backup]
    next_cursor: str | None


class RestoreCreate(Input):
    mode: Literal["new", "same"] = Field(
        "new", description="Into a new database, or over the backed-up one"
    )
    new_database: str | None = Field(None, max_length=63, description="For mode new")
    confirm: str | None = Field(
        None, max_length=63, description="For mode same: the database's name, typed"
    )


class Restore(BaseModel):
    id: int
    backup_id: int
    kind: str
    target_database: str | None
    status: str
    final: bool
    error: str | None
    log: str
    comparison: dict[str, Any]
    started_at: datetime | None
    finished_at: datetime | None
    duration_seconds: float | None
    user_id: int | None
    created_at: datetime
    url: str


# ---- notification channels -------------------------------------------------------------


class NotificationChannelCreate(Input):
    name: str = Name
    kind: Literal["webhook", "slack", "email"]
    events: list[EventName] = Field(["backup.failed"], max_length=20)
    url: str | None = Field(None, max_length=500, description="Webhook kinds (write-only)")
    smtp_host: str | None = Field(None, max_length=253)
    smtp_port: int | None = Field(587, ge=1, le=65535)
    smtp_starttls: bool = True
    smtp_username: str | None = Field(None, max_length=200)
    smtp_password: str | None = Field(None, max_length=500, description="Write-only")
    sender: str | None = Field(None, max_length=254)
    to: str | None = Field(None, max_length=254)


class NotificationChannelUpdate(Input):
    """Fields left out keep their value (the kind never changes); a left-out ``url`` or
    ``smtp_password`` keeps the stored one."""

    name: str | None = Field(None, min_length=1, max_length=63)
    events: list[EventName] | None = Field(None, max_length=20)
    url: str | None = Field(None, min_length=1, max_length=500)
    smtp_host: str | None = Field(None, max_length=253)
    smtp_port: int | None = Field(None, ge=1, le=65535)
    smtp_starttls: bool | None = None
    smtp_username: str | None = Field(None, max_length=200)
    smtp_password: str | None = Field(None, min_length=1, max_length=500)
    sender: str | None = Field(None, max_length=254)
    to: str | None = Field(None, max_length=254)


class NotificationChannel(BaseModel):
    id: int
    name: str
    kind: str
    events: list[str]
    url_host: str | None = Field(description="Webhook kinds: the URL's host (the URL is secret)")
    smtp_host: str | None
    smtp_port: int | None
    smtp_starttls: bool | None
    smtp_username: str | None
    sender: str | None
    to: str | None
    has_secret: bool = Field(description="A webhook URL or an SMTP password is stored")
    signed: bool = Field(description="Generic webhooks: bodies are signed (HMAC-SHA256)")
    created_at: datetime


class NotificationChannelCreated(NotificationChannel):
    signing_secret: str | None = Field(
        description="Generic webhooks: the signing secret, shown this once; else null"
    )


class NotificationChannelPage(BaseModel):
    data: list[NotificationChannel]
    next_cursor: str | None


# ---- members and invitations ---------------------------------------------------------


class ProjectGrant(Input):
    project_id: int = Field(ge=1, le=2**62)
    role: RoleName


class MemberUpdate(Input):
    role: RoleName | None = None
    all_projects: bool | None = None
    projects: list[ProjectGrant] | None = Field(
        None, max_length=1000, description="With all_projects false: the projects and roles"
    )


class Member(BaseModel):
    id: int = Field(description="The membership's id")
    user_id: int
    name: str
    email: str
    role: str
    all_projects: bool
    projects: list[ProjectGrant]
    created_at: datetime


class MemberPage(BaseModel):
    data: list[Member]
    next_cursor: str | None


class InvitationCreate(Input):
    email: str | None = Field(
        None, max_length=254, pattern=r"^[^\x00-\x1f\x7f]*$", description="Empty: a link for anyone"
    )
    role: RoleName = "developer"
    all_projects: bool = True
    projects: list[ProjectGrant] = Field([], max_length=1000)


class Invitation(BaseModel):
    id: int
    email: str | None
    role: str
    all_projects: bool
    projects: list[ProjectGrant]
    invited_by_id: int | None
    expires_at: datetime
    created_at: datetime


class InvitationCreated(Invitation):
    link: str = Field(description="The invitation link, shown this once")
    mail: Literal["sent", "not configured", "failed"] | None = Field(
        description="Email invitations: whether the mail went out"
    )


class InvitationPage(BaseModel):
    data: list[Invitation]
    next_cursor: str | None


# ---- audit events ------------------------------------------------------------------------


class AuditQuery(PageQuery):
    action: str | None = Field(
        None, max_length=60, description="An action, or a family ending in '.' (member.)"
    )
    user_id: int | None = Field(None, ge=1, le=2**62)
    target_type: str | None = Field(None, max_length=40)
    target_id: int | None = Field(None, ge=1, le=2**62, description="With target_type")
    since: datetime | None = Field(None, description="Inclusive (UTC when no offset)")
    until: datetime | None = Field(None, description="Exclusive (UTC when no offset)")


class AuditEvent(BaseModel):
    id: int
    created_at: datetime
    user_id: int | None
    user_name: str | None
    user_email: str | None
    action: str
    target_type: str | None
    target_id: int | None
    ip: str | None
    api_key_id: int | None = Field(description="The API key it was done with, if any")
    details: dict[str, Any]


class AuditEventPage(BaseModel):
    data: list[AuditEvent]
    next_cursor: str | None
