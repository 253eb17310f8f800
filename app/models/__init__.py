"""The data model, one module per aggregate."""

from app.models.accounts import Installation, Membership, Role, Team, User
from app.models.applications import Application, Domain, EnvVar
from app.models.audit import AuditEvent
from app.models.base import Base
from app.models.deployments import (
    ACTIVE_STATUSES,
    Deployment,
    DeploymentLogLine,
    DeploymentStatus,
    DeployStep,
)
from app.models.projects import Environment, Project
from app.models.webhooks import WebhookDelivery

__all__ = [
    "ACTIVE_STATUSES",
    "Application",
    "AuditEvent",
    "Base",
    "Deployment",
    "DeploymentLogLine",
    "DeploymentStatus",
    "DeployStep",
    "Domain",
    "EnvVar",
    "Environment",
    "Installation",
    "Membership",
    "Project",
    "Role",
    "Team",
    "User",
    "WebhookDelivery",
]
