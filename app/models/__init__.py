"""The data model, one module per aggregate."""

from app.models.accounts import (
    Installation,
    Invitation,
    Membership,
    PasswordReset,
    ProjectMembership,
    RecoveryCode,
    Role,
    Team,
    User,
)
from app.models.apikeys import ApiKey
from app.models.applications import Application, Domain, EnvVar, HttpsMode, WwwMode
from app.models.audit import AuditEvent
from app.models.backups import (
    Backup,
    BackupDestination,
    BackupPolicy,
    BackupStatus,
    Restore,
    TargetType,
)
from app.models.base import Base
from app.models.certificates import AcmeAccount, Certificate, CertSource, CertState
from app.models.databases import (
    Database,
    DatabaseLink,
    DatabaseStatus,
    Engine,
    MountMode,
    Volume,
    VolumeState,
)
from app.models.deployments import (
    ACTIVE_STATUSES,
    FINAL_STATUSES,
    SERVED_STATUSES,
    Deployment,
    DeploymentLogLine,
    DeploymentStatus,
    DeployStep,
)
from app.models.metrics import MetricSample, MetricScope
from app.models.notifications import ChannelKind, NotificationChannel, NotificationEvent
from app.models.projects import Environment, Project
from app.models.sso import OidcIdentity, OidcProvider
from app.models.webhooks import WebhookDelivery

__all__ = [
    "Database",
    "DatabaseLink",
    "DatabaseStatus",
    "Engine",
    "MountMode",
    "Volume",
    "VolumeState",
    "ApiKey",
    "Invitation",
    "OidcIdentity",
    "OidcProvider",
    "ProjectMembership",
    "RecoveryCode",
    "AcmeAccount",
    "Certificate",
    "CertSource",
    "CertState",
    "HttpsMode",
    "WwwMode",
    "ACTIVE_STATUSES",
    "FINAL_STATUSES",
    "SERVED_STATUSES",
    "Application",
    "AuditEvent",
    "Backup",
    "BackupDestination",
    "BackupPolicy",
    "BackupStatus",
    "ChannelKind",
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
    "MetricSample",
    "MetricScope",
    "NotificationChannel",
    "NotificationEvent",
    "PasswordReset",
    "Project",
    "Restore",
    "Role",
    "TargetType",
    "Team",
    "User",
    "WebhookDelivery",
]
