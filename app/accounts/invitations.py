"""Invitations to a team, by email or by a copyable link.

A token is 32 random bytes (URL-safe); only its SHA-256 is stored, so the database
alone opens nothing. An invitation lasts ``INVITATION_TTL_HOURS`` (72), works once and
can be revoked. It carries a role and either every project or a list of projects with
a role on each; nobody invites above their own role, and no project role is above the
invitation's. An email invitation can be accepted only by an account with that address
(case-insensitive).

Accepting claims the row in one conditional UPDATE (still open, not revoked, not
expired): of two requests racing with one token, one joins the team, the other is told
the invitation was used. Every refusal raises :class:`InvitationRefused` and is audited;
unknown tokens are counted per client address (``audit.record_counted``), never with
the token itself.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from datetime import timedelta

from flask import current_app, has_request_context, request
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError

from app import access, audit, mail
from app.extensions import client_address, db
from app.models import Invitation, Membership, Project, ProjectMembership, Role, Team, User
from app.models.base import utcnow

log = logging.getLogger("slipway.accounts")


class InvitationRefused(Exception):
    """The invitation cannot be made, used or revoked; ``message`` says why (it is shown
    to the user), ``status`` is the HTTP answer."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.message, self.status = message, status


def lifetime() -> timedelta:
    return timedelta(hours=current_app.config["INVITATION_TTL_HOURS"])


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def normalise_email(email: str | None) -> str | None:
    email = (email or "").strip().lower()
    return email or None


def invitation_path(token: str) -> str:
    return f"/invitations/{token}"


def invitation_url(token: str) -> str:
    """The absolute link: SLIPWAY_PUBLIC_URL, else the address the inviter is using
    (the inviter's own request: nobody else chooses its Host header)."""
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    if not base and has_request_context():
        base = request.host_url.rstrip("/")
    return f"{base}{invitation_path(token)}"


def mail_configured() -> bool:
    return mail.installation_server() is not None


# ---- rules shared with app.accounts.members ----------------------------------------


def parse_role(value) -> Role:
    try:
        return Role(value)
    except ValueError:
        raise InvitationRefused("Choose a role: viewer, developer, admin or owner.", 422) from None


def project_grants(team: Team, role: Role, projects) -> dict[int, Role]:
    """{project id: role} for a project-limited grant, checked: every project one of
    ``team``'s, every role valid and not above ``role``, at least one project."""
    chosen: dict[int, Role] = {}
    for project_id, project_role in projects or ():
        try:
            project_id = int(project_id)
        except (TypeError, ValueError):
            raise InvitationRefused("A chosen project is not one of this team's.", 422) from None
        project_role = parse_role(project_role)
        if not role.allows(project_role):
            raise InvitationRefused(
                f"A project role cannot be above the team role ({role.value}).", 422
            )
        chosen[project_id] = project_role
    if not chosen:
        raise InvitationRefused("Choose at least one project, or give access to all.", 422)
    found = set(
        db.session.scalars(
            select(Project.id).where(Project.team_id == team.id, Project.id.in_(chosen))
        )
    )
    if found != set(chosen):
        raise InvitationRefused("A chosen project is not one of this team's.", 422)
    return chosen


def _actor_role(actor: User, team: Team) -> Role:
    """The actor's role on ``team``, if they may manage its members."""
    if not access.can(actor, access.Action.MEMBER_MANAGE, team):
        raise InvitationRefused("You may not manage this team's members.", 403)
    return access.role_on(actor, team)


# ---- creating, sending, revoking ----------------------------------------------------


def create(
    team: Team,
    actor: User,
    *,
    email: str | None,
    role,
    all_projects: bool,
    projects=(),
) -> tuple[Invitation, str]:
    """A new invitation to ``team`` (audited); returns it with its token, which is
    stored only hashed and must be shown or mailed now. ``projects``: (project id, role)
    pairs for a project-limited invitation."""
    own = _actor_role(actor, team)
    role = parse_role(role)
    if not own.allows(role):
        raise InvitationRefused(f"You cannot invite with a role above your own ({own.value}).", 403)
    email = normalise_email(email)
    if email is not None and "@" not in email:
        raise InvitationRefused("Enter an email address, or leave it empty for a link.", 422)
    if email is not None and _member_by_email(team, email):
        raise InvitationRefused(f"{email} is already a member of {team.name}.", 422)
    chosen = {} if all_projects else project_grants(team, role, projects)
    token = secrets.token_urlsafe(32)
    invitation = Invitation(
        team_id=team.id, email=email, token_hash=digest(token), role=role.value,
        all_projects=bool(all_projects),
        projects=[{"project_id": pid, "role": r.value} for pid, r in sorted(chosen.items())],
        invited_by_id=actor.id, expires_at=utcnow() + lifetime(),
    )  # fmt: skip
    db.session.add(invitation)
    db.session.flush()
    audit.record(
        audit.Action.INVITATION_CREATED, team_id=team.id, target=invitation, user_id=actor.id,
        email=email, role=role.value, all_projects=invitation.all_projects,
        projects=invitation.projects,
    )  # fmt: skip
    db.session.commit()
    return invitation, token


def _member_by_email(team: Team, email: str) -> bool:
    query = (
        select(Membership.id)
        .join(User, User.id == Membership.user_id)
        .where(Membership.team_id == team.id, func.lower(User.email) == email)
    )
    return db.session.scalar(query) is not None


def mail_text(invitation: Invitation, token: str) -> str:
    inviter = invitation_inviter(invitation)
    where = (
        "every project"
        if invitation.all_projects
        else ", ".join(f"{name} ({role})" for name, role in project_names(invitation))
    )
    expires = invitation.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    return (
        f"{inviter} invited you to the team {invitation.team.name} on Slipway, "
        f"as {invitation.role} on {where}.\n\n"
        f"Open this link to accept (it works once, until {expires}):\n\n"
        f"{invitation_url(token)}\n\n"
        f"The invitation is for {invitation.email}: accept it with an account of that "
        "address, or create one from the link. If you did not expect it, ignore this mail.\n"
    )


def send(invitation: Invitation, token: str) -> str:
    """Mail an email invitation: "sent", "not configured" or "failed" (audited when sent)."""
    server = mail.installation_server()
    if server is None or not invitation.email:
        return "not configured"
    subject = f"Join {invitation.team.name} on Slipway"
    try:
        mail.send(server, current_app.config["SMTP_SENDER"], invitation.email, subject,
                  mail_text(invitation, token))  # fmt: skip
    except mail.MailError as exc:
        log.warning("invitation %s not mailed: %s", invitation.id, exc)
        return "failed"
    audit.record(audit.Action.INVITATION_SENT, team_id=invitation.team_id, target=invitation,
                 email=invitation.email)  # fmt: skip
    db.session.commit()
    return "sent"


def revoke(invitation: Invitation, actor: User) -> None:
    """Close an open invitation: its link stops working at once."""
    team = db.session.get(Team, invitation.team_id)
    own = _actor_role(actor, team)
    if not own.allows(Role(invitation.role)):
        raise InvitationRefused("You cannot revoke an invitation above your own role.", 403)
    closed = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
        )
        .values(revoked_at=utcnow())
    )
    if closed.rowcount != 1:
        db.session.rollback()
        raise InvitationRefused("This invitation was already used or revoked.", 409)
    audit.record(audit.Action.INVITATION_REVOKED, team_id=invitation.team_id, target=invitation,
                 user_id=actor.id, email=invitation.email)  # fmt: skip
    db.session.commit()


def pending_query(team: Team):
    """The statement of the team's invitations still open (neither used, revoked nor
    expired), unordered: the page sorts it, the API pages it."""
    return select(Invitation).where(
        Invitation.team_id == team.id,
        Invitation.accepted_at.is_(None),
        Invitation.revoked_at.is_(None),
        Invitation.expires_at > utcnow(),
    )


def pending(team: Team) -> list[Invitation]:
    """The team's invitations still open (neither used, revoked nor expired), newest first."""
    return list(db.session.scalars(pending_query(team).order_by(Invitation.id.desc())))


def invitation_inviter(invitation: Invitation) -> str:
    user = db.session.get(User, invitation.invited_by_id) if invitation.invited_by_id else None
    return user.name if user else "A former member"


def project_names(invitation: Invitation) -> list[tuple[str, str]]:
    """(project name, role) of a limited invitation, for pages and the mail."""
    roles = {int(p["project_id"]): p["role"] for p in invitation.projects or ()}
    if not roles:
        return []
    rows = db.session.execute(
        select(Project.id, Project.name).where(Project.id.in_(roles)).order_by(Project.name)
    )
    return [(name, roles[pid]) for pid, name in rows]


# ---- using a token --------------------------------------------------------------------


def _address() -> str:
    return client_address() if has_request_context() else "local"


def _refuse(message: str, status: int, invitation: Invitation | None, reason: str):
    """Audit the refusal (one row per invitation or address a minute), then raise."""
    if invitation is None:
        audit.record_counted(audit.Action.INVITATION_REFUSED, key=f"unknown|{_address()}",
                             reason=reason)  # fmt: skip
    else:
        audit.record_counted(
            audit.Action.INVITATION_REFUSED, key=f"{invitation.id}|{reason}",
            team_id=invitation.team_id, target=invitation, reason=reason,
        )  # fmt: skip
    db.session.commit()
    raise InvitationRefused(message, status)


def check(token: str) -> Invitation:
    """The open invitation for ``token``; raises :class:`InvitationRefused` saying why not."""
    invitation = db.session.scalar(select(Invitation).where(Invitation.token_hash == digest(token)))
    if invitation is None:
        _refuse("This invitation link is not valid. Check that it was copied whole, or ask "
                "for a new one.", 404, None, "unknown")  # fmt: skip
    if invitation.accepted_at is not None:
        _refuse("This invitation was already used. Ask the team for a new one.", 410,
                invitation, "used")  # fmt: skip
    if invitation.revoked_at is not None:
        _refuse("This invitation was revoked. Ask the team for a new one.", 410,
                invitation, "revoked")  # fmt: skip
    if invitation.expires_at <= utcnow():
        _refuse("This invitation has expired. Ask the team for a new one.", 410,
                invitation, "expired")  # fmt: skip
    return invitation


def why_not(invitation: Invitation, user: User) -> tuple[str, str, int] | None:
    """Why ``user`` may not accept this open invitation: (message, reason, status), or
    None. Read-only: the invitation page asks it to show the button or not."""
    if invitation.email and invitation.email.lower() != user.email.lower():
        return (
            "This invitation is for another email address. Log in with the account of "
            f"that address to accept it (you are logged in as {user.email}).",
            "wrong email", 403,
        )  # fmt: skip
    member = db.session.scalar(
        select(Membership.id).where(
            Membership.team_id == invitation.team_id, Membership.user_id == user.id
        )
    )
    if member is not None:
        return f"You are already a member of {invitation.team.name}.", "already a member", 409
    return None


def _check_for(invitation: Invitation, user: User) -> None:
    refusal = why_not(invitation, user)
    if refusal is not None:
        message, reason, status = refusal
        _refuse(message, status, invitation, reason)


def _claim_and_join(invitation: Invitation, user: User, *, new_account: bool) -> Membership:
    """Claim the row (one winner), create the membership, audit, commit."""
    now = utcnow()
    claimed = db.session.execute(
        update(Invitation)
        .where(
            Invitation.id == invitation.id,
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        .values(accepted_at=now, accepted_by_id=user.id)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        db.session.rollback()
        _refuse("This invitation was already used. Ask the team for a new one.", 410,
                invitation, "used")  # fmt: skip
    membership = Membership(team_id=invitation.team_id, user_id=user.id, role=invitation.role,
                            all_projects=invitation.all_projects)  # fmt: skip
    db.session.add(membership)
    db.session.flush()
    if not invitation.all_projects:
        roles = {int(p["project_id"]): p["role"] for p in invitation.projects or ()}
        existing = db.session.scalars(
            select(Project.id).where(Project.team_id == invitation.team_id, Project.id.in_(roles))
        )
        db.session.add_all(
            ProjectMembership(membership_id=membership.id, project_id=pid, role=roles[pid])
            for pid in existing
        )
    user.current_team_id = invitation.team_id
    audit.record(
        audit.Action.INVITATION_ACCEPTED, team_id=invitation.team_id, target=invitation,
        user_id=user.id, membership_id=membership.id, role=invitation.role,
        new_account=new_account,
    )  # fmt: skip
    try:
        db.session.commit()
    except IntegrityError:
        db.session.rollback()
        raise InvitationRefused("You are already a member of this team.", 409) from None
    access.forget()
    return membership


def accept(token: str, user: User) -> Membership:
    """``user`` (logged in) joins the invitation's team; it becomes their current team."""
    invitation = check(token)
    _check_for(invitation, user)
    return _claim_and_join(invitation, user, new_account=False)


def accept_new_account(
    token: str, name: str, password: str, email_for_link_invites: str | None = None
) -> User:
    """Create the account and join the team, in one transaction: a refused claim creates
    no account. An email invitation's account gets the invited address, whatever was
    sent; a link invitation's gets ``email_for_link_invites``."""
    invitation = check(token)
    email = invitation.email or normalise_email(email_for_link_invites)
    if not email or "@" not in email:
        raise InvitationRefused("Enter an email address.", 422)
    if db.session.scalar(select(User.id).where(func.lower(User.email) == email)) is not None:
        raise InvitationRefused(
            "An account with this email address exists already: log in to accept.", 409
        )
    user = User(email=email, name=name)
    user.set_password(password)
    db.session.add(user)
    try:
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        raise InvitationRefused(
            "An account with this email address exists already: log in to accept.", 409
        ) from None
    _claim_and_join(invitation, user, new_account=True)
    return user
