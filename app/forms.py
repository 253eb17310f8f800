"""Flask-WTF forms. Field rules come from ``app.names``; forms only wire them in."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    DateField,
    EmailField,
    FileField,
    FloatField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
    SelectMultipleField,
    StringField,
    TextAreaField,
)
from wtforms.validators import (
    DataRequired,
    EqualTo,
    InputRequired,
    Length,
    NumberRange,
    Optional,
    StopValidation,
    ValidationError,
)
from wtforms.widgets import CheckboxInput, ListWidget

from app import names
from app.accounts.apikeys import SCOPE_LABELS
from app.databases.engines import CHOICES as DATABASE_ENGINES
from app.models.accounts import PASSWORD_MAX_LENGTH, PASSWORD_MIN_LENGTH
from app.projects.catalog import APP_FIELDS
from app.projects.envvars import parse_dotenv


def checked(rule: Callable[..., str], *args) -> Callable:
    """A WTForms validator from a ``names`` rule; the rule may normalise the value."""

    def validator(_form, field) -> None:
        try:
            field.data = rule(field.data, *args)
        except names.InvalidValue as exc:
            raise ValidationError(str(exc)) from None

    return validator


class Limit(Length):
    """``Length`` whose message names the field and its limit, without a ``maxlength``
    attribute: a browser cuts a longer paste at ``maxlength`` without a word, whereas the
    server refuses it and says what the limit is."""

    def __init__(self, maximum: int, what: str, minimum: int = -1):
        if minimum > 0:
            message = f"{what} must be {minimum:,} to {maximum:,} characters long."
        else:
            message = f"{what} is limited to {maximum:,} characters."
        super().__init__(min=minimum, max=maximum, message=message)
        self.field_flags = {}

    def __call__(self, form, field) -> None:
        # Stop here: the field's other rules would only add noise about a value that long.
        try:
            super().__call__(form, field)
        except ValidationError as exc:
            raise StopValidation(str(exc)) from None


def strip(value):
    return value.strip() if isinstance(value, str) else value


class SetupForm(FlaskForm):
    name = StringField(
        "Your name",
        [DataRequired(), Limit(100, "Your name"), checked(names.plain_text)],
        filters=[strip],
    )
    email = EmailField("Email", [DataRequired(), Limit(254, "The email address")], filters=[strip])
    team = StringField(
        "Team name",
        [DataRequired(), Limit(100, "The team name"), checked(names.plain_text)],
        filters=[strip],
    )
    password = PasswordField(
        "Password",
        [DataRequired(), Limit(PASSWORD_MAX_LENGTH, "The password", PASSWORD_MIN_LENGTH)],
    )
    confirm = PasswordField("Repeat password", [EqualTo("password", "Passwords differ.")])

    def validate_email(self, field) -> None:
        if "@" not in field.data:
            raise ValidationError("Enter an email address.")
        field.data = field.data.lower()


class LoginForm(FlaskForm):
    email = EmailField("Email", [DataRequired(), Limit(254, "The email address")], filters=[strip])
    password = PasswordField(
        "Password", [DataRequired(), Limit(PASSWORD_MAX_LENGTH, "The password")]
    )
    next = HiddenField()


class NewPasswordForm(FlaskForm):
    """A new password, by the rules every form that sets one follows."""

    password = PasswordField(
        "New password",
        [DataRequired(), Limit(PASSWORD_MAX_LENGTH, "The password", PASSWORD_MIN_LENGTH)],
    )
    confirm = PasswordField("Repeat new password", [EqualTo("password", "Passwords differ.")])


class PasswordForm(NewPasswordForm):
    current = PasswordField(
        "Current password", [DataRequired(), Limit(PASSWORD_MAX_LENGTH, "The password")]
    )


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", [DataRequired(), Limit(254, "The email address")], filters=[strip])


class InstallationAdminForm(FlaskForm):
    """One row's toggle on the installation admins page: name or un-name ``user_id``."""

    user_id = IntegerField("User", [InputRequired(message="Choose a user.")])
    change = SelectField(
        "Change",
        choices=[("name", "Name installation admin"), ("remove", "Take the naming back")],
        validate_choice=True,
    )


class ProjectForm(FlaskForm):
    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The project name"), checked(names.slug, "The project name")],
        filters=[strip],
    )
    description = TextAreaField(
        "Description", [Optional(), Limit(2000, "The description"), checked(names.plain_text)]
    )


class TeamForm(FlaskForm):
    name = StringField(
        "Team name",
        [DataRequired(), Limit(100, "The team name"), checked(names.plain_text)],
        filters=[strip],
    )


class TeamSettingsForm(TeamForm):
    require_2fa = BooleanField("Members must use two-factor login")
    audit_retention_days = IntegerField(
        "Keep audit events for (days)",
        [InputRequired(message="Enter a number of days."), NumberRange(30, 3650)],
        default=365,
    )


def _dotenv(_form, field) -> None:
    try:
        parse_dotenv(field.data or "")
    except names.InvalidValue as exc:
        raise ValidationError(str(exc)) from None


ENV_TEXT_LIMIT = 256 * 1024


class ApplicationForm(FlaskForm):
    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The app name"), checked(names.slug, "The app name")],
        filters=[strip],
    )
    description = TextAreaField(
        "Description", [Optional(), Limit(2000, "The description"), checked(names.plain_text)]
    )
    environment_id = SelectField("Environment", coerce=int)
    source_type = RadioField(
        "Source", choices=[("git", "Git repository"), ("image", "Docker image")], default="git"
    )
    git_url = StringField("Repository URL", [Limit(500, "The repository URL")], filters=[strip])
    git_branch = StringField(
        "Branch", [Limit(255, "The branch name")], default="main", filters=[strip]
    )
    build_context = StringField(
        "Build context", [Limit(255, "The build context")], default=".", filters=[strip]
    )
    dockerfile_path = StringField(
        "Dockerfile path",
        [Limit(255, "The Dockerfile path")],
        default="Dockerfile",
        filters=[strip],
    )
    image = StringField("Image", [Limit(255, "The image reference")], filters=[strip])
    container_port = IntegerField(
        "Container port", [InputRequired(), NumberRange(1, 65535)], default=8000
    )
    replicas = IntegerField("Replicas", [InputRequired(), NumberRange(1, 10)], default=1)
    health_check_path = StringField(
        "Health-check path",
        [DataRequired(), Limit(255, "The health-check path"), checked(names.health_path)],
        default="/",
        filters=[strip],
    )
    cpu_limit = FloatField("CPU limit (cores)", [Optional(), NumberRange(0.05, 64)])
    memory_limit_mb = IntegerField("Memory limit (MiB)", [Optional(), NumberRange(16, 262144)])
    watch_seconds = IntegerField(
        "Watch window (seconds)",
        [Optional(), NumberRange(0, 3600, "Enter 0 to 3600 seconds, or leave it empty.")],
    )
    auto_deploy = BooleanField("Deploy automatically on push")
    env_text = TextAreaField(
        "Environment variables", [Limit(ENV_TEXT_LIMIT, "The variables"), _dotenv]
    )
    secret_env_text = TextAreaField(
        "Secret environment variables", [Limit(ENV_TEXT_LIMIT, "The variables"), _dotenv]
    )

    def __init__(self, *args, allowed_git_hosts: tuple[str, ...] = (), **kwargs):
        super().__init__(*args, **kwargs)
        self._allowed_git_hosts = allowed_git_hosts

    def validate(self, extra_validators=None) -> bool:
        ok = super().validate(extra_validators)
        # Which fields are required depends on the source.
        if self.source_type.data == "git":
            rules = [
                (self.git_url, names.git_url, (self._allowed_git_hosts,)),
                (self.git_branch, names.branch, ()),
                (self.build_context, names.relative_path, ("The build context",)),
                (self.dockerfile_path, names.relative_path, ("The Dockerfile path",)),
            ]
        else:
            rules = [(self.image, names.image, ())]
        for field, rule, args in rules:
            if field.errors:  # over its limit already
                continue
            try:
                field.data = rule(field.data or "", *args)
            except names.InvalidValue as exc:
                field.errors = [*field.errors, str(exc)]
                ok = False
        return ok

    def values(self) -> dict:
        """The validated settings as :func:`app.projects.catalog.create_app` takes them."""
        values = {field: getattr(self, field).data for field in APP_FIELDS}
        values["env"] = parse_dotenv(self.env_text.data or "")
        values["secret_env"] = parse_dotenv(self.secret_env_text.data or "")
        return values


class EnvVarForm(FlaskForm):
    key = StringField(
        "Key", [DataRequired(), Limit(255, "The key"), checked(names.env_key)], filters=[strip]
    )
    value = TextAreaField("Value", [Limit(32 * 1024, "A value"), checked(names.env_value)])
    is_secret = BooleanField("Secret")


class DomainForm(FlaskForm):
    """An app's domain. The host and prefix are checked by ``app.proxy.domains`` (which
    converts the host to punycode); the form keeps what was typed for a re-render."""

    host = StringField(
        "Host name", [DataRequired("Enter a host name such as shop.example.com."),
                      Limit(300, "A host name")], filters=[strip],
    )  # fmt: skip
    path_prefix = StringField("Path prefix", [Limit(300, "A path prefix")], default="/")
    strip_prefix = BooleanField("Strip the prefix before passing the request on")
    https_mode = SelectField(
        "HTTPS",
        choices=[
            ("redirect", "HTTPS; plain HTTP redirects to it (once the certificate is active)"),
            ("only", "HTTPS only; plain HTTP gets 404"),
            ("off", "Plain HTTP only, no certificate"),
        ],
        default="redirect",
    )
    www = SelectField(
        "www",
        choices=[
            ("none", "The host alone"),
            ("both", "The host and its www twin both serve"),
            ("to_apex", "www.<host> redirects to <host>"),
            ("to_www", "<host> redirects to www.<host>"),
        ],
        default="none",
    )


class DomainEditForm(DomainForm):
    """The same fields as :class:`DomainForm` but the host, which is not editable."""

    host = None


PEM_LIMIT = 64 * 1024


class CertificateUploadForm(FlaskForm):
    """A certificate of one's own: the chain (leaf first) and its private key, pasted or
    chosen as files. ``app.proxy.certs.upload`` checks them; the key is never rendered."""

    chain_pem = TextAreaField("Certificate chain (PEM, leaf first)",
                              [Limit(PEM_LIMIT, "The certificate chain")])  # fmt: skip
    chain_file = FileField("…or the chain as a file")
    key_pem = TextAreaField("Private key (PEM, without a passphrase)",
                            [Limit(PEM_LIMIT, "The private key")])  # fmt: skip
    key_file = FileField("…or the key as a file")

    def validate(self, extra_validators=None) -> bool:
        pairs = ((self.chain_pem, self.chain_file, "the certificate chain"),
                 (self.key_pem, self.key_file, "the private key"))  # fmt: skip
        for text, upload, _ in pairs:
            chosen = upload.data
            if not (text.data or "").strip() and getattr(chosen, "filename", None):
                # One byte over the limit is enough for the Limit rule to refuse it.
                text.data = chosen.read(PEM_LIMIT + 1).decode("utf-8", "replace")
        valid = super().validate(extra_validators)
        for text, _, what in pairs:
            if not text.errors and not (text.data or "").strip():
                text.errors = [*text.errors, f"Paste {what} or choose its file."]
                valid = False
        return valid


# Room for MAX_WATCH_PATHS lines of the longest pattern, with blank lines and spaces.
WATCH_PATHS_TEXT_LIMIT = 4 * names.MAX_WATCH_PATHS * names.MAX_WATCH_PATH_LENGTH


class GitSettingsForm(FlaskForm):
    watch_paths = TextAreaField(
        "Watch paths",
        [Limit(WATCH_PATHS_TEXT_LIMIT, "The watch paths"), checked(names.watch_paths)],
    )
    deploy_tags = StringField(
        "Deploy tags matching",
        [Limit(255, "The tag pattern"), checked(names.tag_pattern)],
        filters=[strip],
    )
    submodules = BooleanField("Clone submodules")

    def validate(self, extra_validators=None) -> bool:
        # checked() would store the parsed list; keep the text the user typed.
        text = self.watch_paths.data
        ok = super().validate(extra_validators)
        if ok:
            self.watch_paths.data = "\n".join(names.watch_paths(text))
        return ok


class GitTokenForm(FlaskForm):
    # Not id="token": that is the id of the Git page's section this form is in.
    token = PasswordField(
        "Access token", [DataRequired(), Limit(500, "The access token")], id="access_token"
    )
    user = StringField("User name", [Optional(), Limit(100, "The user name")], filters=[strip])

    def validate_user(self, field) -> None:
        try:
            field.data = names.token_user(field.data)
        except names.InvalidValue as exc:
            raise ValidationError(str(exc)) from None


# ---- single sign-on (app.accounts.sso) ---------------------------------------------


class SsoProviderForm(FlaskForm):
    """An OpenID Connect provider; the domain (``sso.save_provider``) checks the values."""

    name = StringField("Name (on the button: Sign in with …)",
                       [DataRequired(), Limit(100, "The name"), checked(names.plain_text)],
                       filters=[strip])  # fmt: skip
    slug = StringField("Slug (in the callback URL)", [DataRequired(), Limit(40, "The slug")],
                       filters=[strip])  # fmt: skip
    discovery_url = StringField(
        "Issuer or discovery URL",
        [DataRequired(), Limit(500, "The discovery URL")],
        filters=[strip],
    )
    client_id = StringField("Client id", [DataRequired(), Limit(255, "The client id")],
                            filters=[strip])  # fmt: skip
    # Never rendered back; blank on edit keeps the stored secret.
    client_secret = PasswordField("Client secret", [Limit(1000, "The client secret")])
    allowed_domains = StringField(
        "Allowed email domains (space-separated)",
        [DataRequired(), Limit(2000, "The allowed domains")],
        filters=[strip],
    )
    team_id = SelectField("Team new users join", coerce=int, validate_choice=False)
    default_role = SelectField(
        "Their default role",
        choices=[("viewer", "viewer"), ("developer", "developer"), ("admin", "admin")],  # fmt: skip
        validate_choice=False,
    )
    groups_claim = StringField("Groups claim (optional)", [Limit(100, "The groups claim")],
                               filters=[strip])  # fmt: skip
    group_roles = TextAreaField("Group → role, one group=role a line (optional)",
                                [Limit(5000, "The group mapping")])  # fmt: skip
    enabled = BooleanField("Enabled", default=True)


class PasswordLoginForm(FlaskForm):
    change = HiddenField(validators=[DataRequired()])


# ---- members and invitations (app.web.members, app.web.invitations) ----------------

ROLE_CHOICES = [
    ("viewer", "Viewer"),
    ("developer", "Developer"),
    ("admin", "Admin"),
    ("owner", "Owner"),
]
ACCESS_CHOICES = [("all", "Every project"), ("some", "Only the projects chosen below")]


class InvitationForm(FlaskForm):
    """A new invitation; the per-project roles are ``project_<id>`` selects of the page,
    read by the view (the projects are the team's, known only at request time)."""

    email = EmailField("Email", [Optional(), Limit(254, "The email address")], filters=[strip])
    role = SelectField("Role", choices=ROLE_CHOICES, default="developer")
    access = RadioField("Projects", choices=ACCESS_CHOICES, default="all")

    def validate_email(self, field) -> None:
        if field.data:
            if "@" not in field.data:
                raise ValidationError("Enter an email address, or leave it empty for a link.")
            field.data = field.data.lower()


class MemberRoleForm(FlaskForm):
    role = SelectField("Role", choices=ROLE_CHOICES)


class MemberProjectsForm(FlaskForm):
    access = RadioField("Projects", choices=ACCESS_CHOICES, default="all")


class InvitationAccountForm(FlaskForm):
    """A new account from an invitation; an email invitation's address is fixed (the
    view ignores what is sent and uses the invited one)."""

    name = StringField(
        "Your name",
        [DataRequired(), Limit(100, "Your name"), checked(names.plain_text)],
        filters=[strip],
    )
    email = EmailField("Email", [DataRequired(), Limit(254, "The email address")], filters=[strip])
    password = PasswordField(
        "Password",
        [DataRequired(), Limit(PASSWORD_MAX_LENGTH, "The password", PASSWORD_MIN_LENGTH)],
    )
    confirm = PasswordField("Repeat password", [EqualTo("password", "Passwords differ.")])

    def validate_email(self, field) -> None:
        if "@" not in field.data:
            raise ValidationError("Enter an email address.")
        field.data = field.data.lower()


# ---- the audit log's filters (issue 14) ----------------------------------------------


class AuditFilterForm(FlaskForm):
    """The audit page's filters: a GET form (the filters live in the address, so a page
    and its CSV export can be linked), hence no CSRF token. The view fills the choices."""

    class Meta:
        csrf = False

    member = SelectField("Member", default="")
    action = SelectField("Action", default="")
    object_type = SelectField("Object", default="")
    object_id = IntegerField("Object id", [Optional(), NumberRange(min=1, max=2**62)])
    since = DateField("From (UTC)", [Optional()])
    until = DateField("To (UTC, inclusive)", [Optional()])
    before = IntegerField("Older than event", [Optional(), NumberRange(min=1, max=2**62)])

    def validate_object_id(self, field) -> None:
        if field.data is not None and not self.object_type.data:
            raise ValidationError("Choose the object's type too.")

    def validate_until(self, field) -> None:
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end date is before the start date.")


# ---- two-factor login and the check again (app.accounts.twofactor) ---------------------


class TwoFactorCodeForm(FlaskForm):
    """The second step of a login, and enrolment: a TOTP code (or a recovery code)."""

    code = StringField(
        "Code", [DataRequired(message="Enter the code."), Limit(40, "The code")], filters=[strip]
    )


class ReauthForm(FlaskForm):
    """The check again before a sensitive action: the password, or a TOTP code."""

    password = PasswordField("Password", [Optional(), Limit(PASSWORD_MAX_LENGTH, "The password")])
    code = StringField("Two-factor code", [Optional(), Limit(40, "The code")], filters=[strip])
    next = HiddenField()


# ---- API keys (app.accounts.apikeys) ---------------------------------------------------


class CheckboxesField(SelectMultipleField):
    """Several choices as checkboxes (the view may fill ``choices`` at request time)."""

    widget = ListWidget(prefix_label=False)
    option_widget = CheckboxInput()


class ApiKeyForm(FlaskForm):
    """A new API key of the current team; the view fills the projects the user can see.
    No project ticked means every project (the key never exceeds its member's role)."""

    name = StringField(
        "Name",
        [DataRequired(message="Give the key a name."), Limit(100, "The name"),
         checked(names.plain_text)],
        filters=[strip],
    )  # fmt: skip
    scopes = CheckboxesField("Scopes", choices=list(SCOPE_LABELS.items()))
    projects = CheckboxesField("Only these projects", coerce=int, choices=[])
    expires_on = DateField("Valid until (UTC, inclusive)", [Optional()])

    def validate_scopes(self, field) -> None:
        if not field.data:
            raise ValidationError("Choose at least one scope.")


class DatabaseForm(FlaskForm):
    """A new database; the name's rules (slug, free in the project) are the domain's."""

    name = StringField(
        "Name",
        [DataRequired(), Limit(63, "The database name"), checked(names.slug, "The database name")],
        filters=[strip],
    )
    engine = SelectField("Engine", choices=DATABASE_ENGINES, default="postgres")
    memory_limit_mb = IntegerField("Memory limit (MiB)", [Optional(), NumberRange(16, 262144)])
    cpu_limit = FloatField("CPU limit (cores)", [Optional(), NumberRange(0.05, 64)])


class PublicPortForm(FlaskForm):
    """Open a database's public port; the choices (the free ports of
    SLIPWAY_DATABASE_PUBLIC_PORTS) are set by the view, and any other number gets the
    domain's message (why it cannot be used) next to the field."""

    public_port = SelectField("Public port", coerce=int, validate_choice=False)


class LinkDatabaseForm(FlaskForm):
    """Link one of the project's live databases; the choices are set by the view, so a
    database of another project or team is not a valid choice (422)."""

    database_id = SelectField("Database", coerce=int, validate_choice=True)
    prefix = StringField(
        "Prefix (optional)", [Limit(39, "A prefix")], filters=[strip],
        description="ANALYTICS gives ANALYTICS_DATABASE_URL, …",
    )  # fmt: skip


# Volumes of apps (app.web.volumes): the label, path and mode are checked by
# app.projects.volumes, whose message goes next to the field.
MOUNT_MODES = [
    ("exclusive", "Exclusive: one container at a time (stop, then start; a short gap)"),
    ("shared", "Shared: the app tolerates two writers (zero-downtime blue/green)"),
]


class VolumeForm(FlaskForm):
    label = StringField(
        "Label", [DataRequired("Enter a label such as data."), Limit(63, "A label")],
        filters=[strip],
    )  # fmt: skip
    mount_path = StringField(
        "Mount path", [DataRequired("Enter a path such as /data."), Limit(255, "A mount path")],
        filters=[strip],
    )  # fmt: skip
    mode = SelectField("Mode", choices=MOUNT_MODES, default="exclusive")


class VolumeModeForm(FlaskForm):
    mode = SelectField("Mode", choices=MOUNT_MODES)
