"""Projects, apps, environment variables and domains (``app.web.api.projects``,
``apps``, ``env``, ``domains``).

The input rules are the dashboard forms' (``app.forms``): the same limits and the same
``app.names`` checks, so the API refuses what the forms refuse, with the same words.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
)
from pydantic_core import PydanticCustomError

from app import names, outbound
from app.models import HttpsMode, WwwMode
from app.projects.catalog import DEFAULT_ENVIRONMENT
from app.web.api.schemas.common import Input, PageQuery

__all__ = [
    "ProjectCreate", "ProjectUpdate", "ProjectListQuery", "Project", "ProjectPage",
    "AppCreate", "AppUpdate", "AppListQuery", "App", "AppPage",
    "EnvVarPut", "EnvVar", "EnvVarList",
    "DomainCreate", "DomainUpdate", "Domain", "DomainPage",
]  # fmt: skip

MAX_ID = 2**63 - 1
ENV_VALUE_LIMIT = 32 * 1024
ENV_ITEMS_LIMIT = 1000


def _rule(rule, *args):
    """A pydantic check from an ``app.names`` rule (its words become the field's error)."""

    def check(value):
        try:
            return rule(value, *args)
        except names.InvalidValue as exc:
            raise PydanticCustomError("invalid", str(exc)) from None

    return check


def _drop_default(schema: dict) -> None:
    schema.pop("default", None)


def unsent(description: str | None = None, **constraints):
    """A field of a partial update: absent means unchanged (``model_fields_set``); it
    is not nullable unless its type says so, and its schema has no default."""
    return Field(None, description=description, json_schema_extra=_drop_default, **constraints)


def _stripped(limit: int):
    return StringConstraints(strip_whitespace=True, max_length=limit)


ProjectName = Annotated[str, _stripped(63), AfterValidator(_rule(names.slug, "The project name"))]
AppName = Annotated[str, _stripped(63), AfterValidator(_rule(names.slug, "The app name"))]
Description = Annotated[str, Field(max_length=2000), AfterValidator(_rule(names.plain_text))]
EnvKey = Annotated[str, Field(max_length=255), AfterValidator(_rule(names.env_key))]
EnvValue = Annotated[str, Field(max_length=ENV_VALUE_LIMIT), AfterValidator(_rule(names.env_value))]
EnvMap = Annotated[dict[EnvKey, EnvValue], Field(max_length=ENV_ITEMS_LIMIT)]
HealthPath = Annotated[str, _stripped(255), AfterValidator(_rule(names.health_path))]
EnvironmentName = Annotated[str, Field(max_length=63)]
NameFilter = Annotated[str, Field(max_length=63), AfterValidator(_rule(names.plain_text))]
SourceType = Literal["git", "image"]
Port = Annotated[int, Field(ge=1, le=65535)]
Replicas = Annotated[int, Field(ge=1, le=10)]
CpuLimit = Annotated[float, Field(ge=0.05, le=64, allow_inf_nan=False)]
MemoryLimit = Annotated[int, Field(ge=16, le=262144)]
WatchSeconds = Annotated[int, Field(ge=0, le=3600)]


# ---- projects ---------------------------------------------------------------


class ProjectCreate(Input):
    name: ProjectName = Field(description="2-63 characters: a-z, 0-9 and '-', a letter first")
    description: Description = ""


class ProjectUpdate(Input):
    """Only the fields sent change."""

    name: ProjectName = unsent(description="A new name moves its apps' default addresses")
    description: Description = unsent()


class ProjectListQuery(PageQuery):
    name: NameFilter | None = Field(None, description="Only the project of this name")


class Project(BaseModel):
    id: int
    name: str
    description: str
    environments: list[str] = Field(description="Its environments' names")
    created_at: datetime


class ProjectPage(BaseModel):
    data: list[Project]
    next_cursor: str | None


# ---- apps -------------------------------------------------------------------


class AppCreate(Input):
    """An app's settings, as the dashboard's app form has them. ``source_type`` decides
    which of the git fields or ``image`` are required; the other source's are ignored."""

    name: AppName
    description: Description = ""
    environment: EnvironmentName | None = Field(
        None,
        description=f"One of the project's environments, by name; null: its first "
        f"({DEFAULT_ENVIRONMENT})",
    )
    source_type: SourceType = "git"
    git_url: Annotated[str, _stripped(500)] = Field("", validate_default=True)
    git_branch: Annotated[str, _stripped(255)] = Field("main", validate_default=True)
    build_context: Annotated[str, _stripped(255)] = Field(".", validate_default=True)
    dockerfile_path: Annotated[str, _stripped(255)] = Field("Dockerfile", validate_default=True)
    image: Annotated[str, _stripped(255)] = Field("", validate_default=True)
    container_port: Port = 8000
    replicas: Replicas = 1
    health_check_path: HealthPath = "/"
    cpu_limit: CpuLimit | None = Field(None, description="Cores; null: no limit")
    memory_limit_mb: MemoryLimit | None = Field(None, description="MiB; null: no limit")
    watch_seconds: WatchSeconds | None = Field(
        None, description="The watch window after a switch; null: the server's default"
    )
    auto_deploy: bool = False
    env: EnvMap | None = Field(
        None, description="Plain variables; on an update they replace all the plain ones"
    )
    secret_env: EnvMap | None = Field(
        None, description="Secret variables, set or replaced one by one (never read back)"
    )

    @field_validator("git_url", "git_branch", "build_context", "dockerfile_path", "image")
    @classmethod
    def _by_source(cls, value: str, info: ValidationInfo) -> str:
        """The fields of the chosen source are checked as the form checks them."""
        source = info.data.get("source_type")
        field = info.field_name
        if source == "git" and field == "git_url":
            return _rule(names.git_url, outbound.allowed_hosts())(value)
        if source == "git" and field == "git_branch":
            return _rule(names.branch)(value)
        if source == "git" and field == "build_context":
            return _rule(names.relative_path, "The build context")(value)
        if source == "git" and field == "dockerfile_path":
            return _rule(names.relative_path, "The Dockerfile path")(value)
        if source == "image" and field == "image":
            return _rule(names.image)(value)
        return value


class AppUpdate(Input):
    """Only the fields sent change; the result is checked as a whole, as on create."""

    name: AppName = unsent(description="A new name moves the default address")
    description: Description = unsent()
    environment: EnvironmentName = unsent()
    source_type: SourceType = unsent()
    git_url: Annotated[str, _stripped(500)] = unsent()
    git_branch: Annotated[str, _stripped(255)] = unsent()
    build_context: Annotated[str, _stripped(255)] = unsent()
    dockerfile_path: Annotated[str, _stripped(255)] = unsent()
    image: Annotated[str, _stripped(255)] = unsent()
    container_port: Port = unsent()
    replicas: Replicas = unsent()
    health_check_path: HealthPath = unsent()
    cpu_limit: CpuLimit | None = unsent()
    memory_limit_mb: MemoryLimit | None = unsent()
    watch_seconds: WatchSeconds | None = unsent()
    auto_deploy: bool = unsent()
    env: EnvMap = unsent(description="Replaces all the plain variables")
    secret_env: EnvMap = unsent(description="Secret variables to set or replace")


class AppListQuery(PageQuery):
    project_id: int | None = Field(None, ge=1, le=MAX_ID)
    project: NameFilter | None = Field(None, description="The project's name")
    name: NameFilter | None = Field(None, description="The app's name")


class App(BaseModel):
    id: int
    name: str
    project_id: int
    project: str = Field(description="The project's name")
    environment: str
    description: str
    source_type: str
    git_url: str | None
    git_branch: str | None
    build_context: str
    dockerfile_path: str
    image: str | None
    container_port: int
    replicas: int
    health_check_path: str
    cpu_limit: float | None
    memory_limit_mb: int | None
    watch_seconds: int | None
    auto_deploy: bool
    status: str | None = Field(description="The newest deployment's status; null: none yet")
    health: str | None = Field(description="What serves it now; null until first routed")
    url: str = Field(description="The default address")
    created_at: datetime
    updated_at: datetime


class AppPage(BaseModel):
    data: list[App]
    next_cursor: str | None


# ---- environment variables -------------------------------------------------


class EnvVarPut(Input):
    value: EnvValue
    secret: bool = Field(False, description="Stored encrypted; its value is never read back")


class EnvVar(BaseModel):
    key: str
    value: str | None = Field(description="null for a secret")
    secret: bool
    updated_at: datetime


class EnvVarList(BaseModel):
    data: list[EnvVar]
    next_cursor: str | None = Field(description="Always null: every variable is listed")


# ---- domains ----------------------------------------------------------------


class DomainCreate(Input):
    host: str = Field(max_length=300, description="Such as shop.example.com (IDN allowed)")
    path_prefix: str = Field("/", max_length=300)
    strip_prefix: bool = False
    https_mode: HttpsMode = HttpsMode.redirect
    www: WwwMode = WwwMode.none


class DomainUpdate(Input):
    """Only the fields sent change; the host cannot (remove the domain and add another)."""

    path_prefix: str = unsent(max_length=300)
    strip_prefix: bool = unsent()
    https_mode: HttpsMode = unsent()
    www: WwwMode = unsent()


class Domain(BaseModel):
    id: int
    app_id: int
    host: str = Field(description="In punycode")
    host_display: str = Field(description="As people read it (Unicode)")
    path_prefix: str
    strip_prefix: bool
    https_mode: str
    www: str
    www_host: str | None = Field(description="The www twin, when the www option is on")
    url: str
    certificate_state: str | None
    certificate_expires_at: datetime | None
    state: str = Field(description="The certificate's state in words")
    created_at: datetime


class DomainPage(BaseModel):
    data: list[Domain]
    next_cursor: str | None
