"""Flask-WTF forms. Field rules come from ``app.names``; forms only wire them in."""

from __future__ import annotations

from collections.abc import Callable

from flask_wtf import FlaskForm
from wtforms import (
    BooleanField,
    EmailField,
    FloatField,
    HiddenField,
    IntegerField,
    PasswordField,
    RadioField,
    SelectField,
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
    ValidationError,
)

from app import names
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


def strip(value):
    return value.strip() if isinstance(value, str) else value


class SetupForm(FlaskForm):
    name = StringField(
        "Your name", [DataRequired(), Length(max=100), checked(names.plain_text)], filters=[strip]
    )
    email = EmailField("Email", [DataRequired(), Length(max=254)], filters=[strip])
    team = StringField(
        "Team name", [DataRequired(), Length(max=100), checked(names.plain_text)], filters=[strip]
    )
    password = PasswordField(
        "Password", [DataRequired(), Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH)]
    )
    confirm = PasswordField("Repeat password", [EqualTo("password", "Passwords differ.")])

    def validate_email(self, field) -> None:
        if "@" not in field.data:
            raise ValidationError("Enter an email address.")
        field.data = field.data.lower()


class LoginForm(FlaskForm):
    email = EmailField("Email", [DataRequired(), Length(max=254)], filters=[strip])
    password = PasswordField("Password", [DataRequired(), Length(max=200)])
    next = HiddenField()


class NewPasswordForm(FlaskForm):
    """A new password, by the rules every form that sets one follows."""

    password = PasswordField(
        "New password", [DataRequired(), Length(min=PASSWORD_MIN_LENGTH, max=PASSWORD_MAX_LENGTH)]
    )
    confirm = PasswordField("Repeat new password", [EqualTo("password", "Passwords differ.")])


class PasswordForm(NewPasswordForm):
    current = PasswordField("Current password", [DataRequired()])


class ForgotPasswordForm(FlaskForm):
    email = EmailField("Email", [DataRequired(), Length(max=254)], filters=[strip])


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
        "Name", [DataRequired(), checked(names.slug, "The project name")], filters=[strip]
    )
    description = TextAreaField(
        "Description", [Optional(), Length(max=2000), checked(names.plain_text)]
    )


def _dotenv(_form, field) -> None:
    try:
        parse_dotenv(field.data or "")
    except names.InvalidValue as exc:
        raise ValidationError(str(exc)) from None


class ApplicationForm(FlaskForm):
    name = StringField(
        "Name", [DataRequired(), checked(names.slug, "The app name")], filters=[strip]
    )
    description = TextAreaField(
        "Description", [Optional(), Length(max=2000), checked(names.plain_text)]
    )
    environment_id = SelectField("Environment", coerce=int)
    source_type = RadioField(
        "Source", choices=[("git", "Git repository"), ("image", "Docker image")], default="git"
    )
    git_url = StringField("Repository URL", filters=[strip])
    git_branch = StringField("Branch", default="main", filters=[strip])
    build_context = StringField("Build context", default=".", filters=[strip])
    dockerfile_path = StringField("Dockerfile path", default="Dockerfile", filters=[strip])
    image = StringField("Image", filters=[strip])
    container_port = IntegerField(
        "Container port", [InputRequired(), NumberRange(1, 65535)], default=8000
    )
    replicas = IntegerField("Replicas", [InputRequired(), NumberRange(1, 10)], default=1)
    health_check_path = StringField(
        "Health-check path",
        [DataRequired(), checked(names.health_path)],
        default="/",
        filters=[strip],
    )
    cpu_limit = FloatField("CPU limit (cores)", [Optional(), NumberRange(0.05, 64)])
    memory_limit_mb = IntegerField("Memory limit (MiB)", [Optional(), NumberRange(16, 262144)])
    auto_deploy = BooleanField("Deploy automatically on push")
    env_text = TextAreaField("Environment variables", [_dotenv])
    secret_env_text = TextAreaField("Secret environment variables", [_dotenv])

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
    key = StringField("Key", [DataRequired(), checked(names.env_key)], filters=[strip])
    value = TextAreaField("Value", [checked(names.env_value)])
    is_secret = BooleanField("Secret")


class GitSettingsForm(FlaskForm):
    watch_paths = TextAreaField("Watch paths", [checked(names.watch_paths)])
    deploy_tags = StringField("Deploy tags matching", [checked(names.tag_pattern)], filters=[strip])
    submodules = BooleanField("Clone submodules")

    def validate(self, extra_validators=None) -> bool:
        # checked() would store the parsed list; keep the text the user typed.
        text = self.watch_paths.data
        ok = super().validate(extra_validators)
        if ok:
            self.watch_paths.data = "\n".join(names.watch_paths(text))
        return ok


class GitTokenForm(FlaskForm):
    token = PasswordField("Access token", [DataRequired(), Length(max=500)])
    user = StringField("User name", [Optional(), Length(max=100)], filters=[strip])

    def validate_user(self, field) -> None:
        try:
            field.data = names.token_user(field.data)
        except names.InvalidValue as exc:
            raise ValidationError(str(exc)) from None
