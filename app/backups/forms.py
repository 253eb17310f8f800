"""Flask-WTF forms for backups and notification channels (rules from ``app.names``)."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
)
from wtforms.validators import (
    DataRequired,
    InputRequired,
    NumberRange,
    Optional,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app import names
from app.forms import Limit, checked, strip
from app.models import ChannelKind, NotificationEvent


class DestinationForm(FlaskForm):
    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The name"), checked(names.slug, "The name")],
        filters=[strip],
    )
    endpoint_url = StringField("Endpoint URL", [DataRequired(), Limit(500, "The endpoint URL")],
                               filters=[strip])  # fmt: skip
    region = StringField("Region", [DataRequired(), Limit(32, "The region"),
                         checked(names.s3_region)], default="us-east-1",
                         filters=[strip])  # fmt: skip
    bucket = StringField("Bucket", [DataRequired(), Limit(63, "The bucket name"),
                         checked(names.bucket)], filters=[strip])  # fmt: skip
    prefix = StringField("Prefix", [Limit(200, "The prefix"), checked(names.s3_prefix)],
                         filters=[strip])  # fmt: skip
    access_key_id = StringField("Access key", [DataRequired(), Limit(200, "The access key")],
                                filters=[strip])  # fmt: skip
    secret_access_key = PasswordField("Secret key", [Limit(500, "The secret key")])
    path_style = BooleanField("Path-style addressing (MinIO, Ceph, most self-hosted S3)")

    def __init__(self, *args, allowed_hosts: tuple[str, ...] = (), editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed, self._editing = allowed_hosts, editing

    def validate_endpoint_url(self, field) -> None:
        try:
            field.data = names.public_url(field.data, self._allowed, "endpoint URL")
        except names.InvalidValue as exc:
            raise ValidationError(str(exc)) from None

    def validate_secret_access_key(self, field) -> None:
        if not field.data and not self._editing:
            raise ValidationError("Enter the secret key.")


def _id(value) -> int | None:
    if value in (None, ""):
        return None
    return int(value)


class PolicyForm(FlaskForm):
    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The name"), checked(names.slug, "The name")],
        filters=[strip],
    )
    target_type = RadioField(
        "What to back up", default="postgres",
        choices=[("postgres", "A PostgreSQL database"), ("slipway", "Slipway's own database"),
                 ("database", "A managed database"), ("volume", "A volume")],
    )  # fmt: skip
    # Choices: the team's managed databases and app volumes (set by the page); an id
    # that is not among them (another team's) is refused by the choice check.
    database_id = SelectField("Managed database", coerce=_id, choices=[], validate_choice=False)
    volume_id = SelectField("Volume", coerce=_id, choices=[], validate_choice=False)
    stop_app = BooleanField("Stop the app while the volume is copied (a consistent copy)")
    database_url = PasswordField("Database URL", [Limit(500, "The database URL")], filters=[strip])
    destination_id = SelectField("Destination", coerce=int)
    cron = StringField("Schedule (cron)", [DataRequired(), Limit(100, "The schedule"),
                       checked(names.cron)],
                       default="0 2 * * *", filters=[strip])  # fmt: skip
    keep_local_days = IntegerField("Keep local copies (days)", [InputRequired(),
                                   NumberRange(0, 3650)], default=7)  # fmt: skip
    keep_daily = IntegerField("Keep daily in S3", [InputRequired(), NumberRange(0, 3650)],
                              default=30)  # fmt: skip
    keep_weekly = IntegerField("Keep weekly in S3", [InputRequired(), NumberRange(0, 520)],
                               default=12)  # fmt: skip
    enabled = BooleanField("Enabled", default=True)

    def __init__(self, *args, allowed_hosts=(), may_own=False, editing=False, **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed, self._may_own, self._editing = allowed_hosts, may_own, editing
        self.parsed_url: tuple[str, str | None] | None = None

    def validate_target_type(self, field) -> None:
        if field.data == "slipway" and not self._may_own:
            raise ValidationError("Only the installation owner can back up Slipway's own database.")

    def _chosen(self, field, kind: str, label: str) -> None:
        if self.target_type.data != kind:
            field.data = None
            return
        if field.data not in {value for value, _ in field.choices}:
            raise ValidationError(f"Choose one of your team's {label}.")

    def validate_database_id(self, field) -> None:
        self._chosen(field, "database", "databases")

    def validate_volume_id(self, field) -> None:
        self._chosen(field, "volume", "volumes")

    def validate_database_url(self, field) -> None:
        if self.target_type.data != "postgres":
            return
        if not field.data:
            if not self._editing:
                raise ValidationError("Enter the database URL, password included.")
            return
        try:
            self.parsed_url = names.database_url(field.data, self._allowed)
        except names.InvalidValue as exc:
            raise ValidationError(str(exc)) from None


class RestoreForm(FlaskForm):
    mode = RadioField(
        "Restore into", default="new",
        choices=[("new", "A new database"), ("same", "The same database")],
    )  # fmt: skip
    new_database = StringField("New database name", [Limit(63, "The database name")],
                               filters=[strip])  # fmt: skip
    confirm = StringField("Type the database name to confirm", [Limit(63, "The database name")],
                          filters=[strip])  # fmt: skip

    def __init__(self, *args, database_name: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self._database_name = database_name

    def validate_new_database(self, field) -> None:
        if self.mode.data == "new":
            try:
                field.data = names.database_name(field.data or "")
            except names.InvalidValue as exc:
                raise ValidationError(str(exc)) from None

    def validate_confirm(self, field) -> None:
        if self.mode.data == "same" and field.data != self._database_name:
            raise ValidationError(f"Type {self._database_name} to overwrite it.")


class MultiCheckboxField(SelectMultipleField):
    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


EVENT_LABELS = {
    NotificationEvent.backup_failed.value: "A backup failed",
    NotificationEvent.drill_failed.value: "A restore drill failed",
    NotificationEvent.deploy_failed.value: "A deployment failed",
    NotificationEvent.app_down.value: "An app went down",
    NotificationEvent.app_crash_looping.value: "An app keeps crashing",
    NotificationEvent.app_recovered.value: "An app serves again",
    NotificationEvent.certificate_failed.value: "A certificate order failed",
    NotificationEvent.certificate_expiring.value: "A certificate expires soon",
}


class ChannelForm(FlaskForm):
    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The name"), checked(names.slug, "The name")],
        filters=[strip],
    )
    kind = SelectField("Kind", choices=[
        (ChannelKind.webhook.value, "Webhook (JSON POST)"),
        (ChannelKind.slack.value, "Slack or Discord incoming webhook"),
        (ChannelKind.email.value, "Email (SMTP)"),
    ])  # fmt: skip
    events = MultiCheckboxField("Events", choices=list(EVENT_LABELS.items()),
                                default=[NotificationEvent.backup_failed.value])  # fmt: skip
    url = PasswordField("Webhook URL", [Limit(500, "The webhook URL")], filters=[strip])
    smtp_host = StringField("SMTP host", [Limit(253, "The SMTP host")], filters=[strip])
    smtp_port = IntegerField("SMTP port", [Optional(), NumberRange(1, 65535)], default=587)
    smtp_starttls = BooleanField("STARTTLS", default=True)
    smtp_username = StringField("SMTP user", [Limit(200, "The SMTP user")], filters=[strip])
    smtp_password = PasswordField("SMTP password", [Limit(500, "The SMTP password")])
    sender = StringField("From", [Limit(254, "The sender address")], filters=[strip])
    to = StringField("To", [Limit(254, "The recipient address")], filters=[strip])

    def __init__(self, *args, allowed_hosts: tuple[str, ...] = (), kind: str | None = None,
                 **kwargs):  # fmt: skip
        """``kind``: the kind of the channel being edited, which the form cannot change."""
        super().__init__(*args, **kwargs)
        self._allowed, self._editing = allowed_hosts, kind is not None
        if kind is not None:
            self.kind.data = kind

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        if self._editing and self.kind.data != ChannelKind.email.value and not self.url.data:
            return ok  # an empty URL on an edit keeps the stored one
        if self.kind.data == ChannelKind.email.value:
            rules = [(self.smtp_host, lambda v: names.hostname(v.lower(), "The SMTP host"))]
            for field in (self.sender, self.to):
                if (
                    not field.errors
                    and "@" not in (field.data or "")
                    or any(c in field.data for c in "\r\n,;")
                ):
                    field.errors = [*field.errors, "Enter one email address."]
                    ok = False
        else:
            rules = [(self.url, lambda v: names.public_url(v, self._allowed, "webhook URL"))]
        for field, rule in rules:
            if field.errors:  # over its limit already
                continue
            try:
                field.data = rule(field.data or "")
                if (
                    field is self.smtp_host
                    and field.data not in self._allowed
                    and (names.is_internal_address(field.data))
                ):
                    raise names.InvalidValue(names.internal_refused(field.data))
            except names.InvalidValue as exc:
                field.errors = [*field.errors, str(exc)]
                ok = False
        return ok
