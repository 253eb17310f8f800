"""The team's members and invitations.

Everyone in the team may list the members; changes need ``member.manage`` (the
``admin`` scope and an admin role), and ``app.accounts.members`` /
``app.accounts.invitations`` enforce the rest as on the page: nobody above their own
role, the last owner stays, a project role never above the team role. A member removed,
demoted or narrowed has their sessions ended and their API keys for the team revoked.
The page's password check again has no equivalent for a key: the key's scope is the gate.
"""

from __future__ import annotations

from flask_login import current_user

from app import access
from app.access import Action
from app.accounts import invitations, members
from app.extensions import db
from app.models import Invitation, Membership, Role, User
from app.web.api import base, forms, spec
from app.web.api.base import bp
from app.web.api.conventions import iso

TAG = "Members"
CODES = {403: "forbidden", 404: "not_found", 409: "conflict", 410: "gone"}


def present_member(membership: Membership) -> dict:
    grants = sorted((pm.project_id, pm.role) for pm in membership.projects)
    return {
        "id": membership.id, "user_id": membership.user_id, "name": membership.user.name,
        "email": membership.user.email, "role": membership.role,
        "all_projects": bool(membership.all_projects),
        "projects": [{"project_id": pid, "role": role} for pid, role in grants],
        "created_at": iso(membership.created_at),
    }  # fmt: skip


def present_invitation(invitation: Invitation) -> dict:
    return {
        "id": invitation.id, "email": invitation.email, "role": invitation.role,
        "all_projects": bool(invitation.all_projects),
        "projects": [{"project_id": int(p["project_id"]), "role": p["role"]}
                     for p in invitation.projects or ()],
        "invited_by_id": invitation.invited_by_id, "expires_at": iso(invitation.expires_at),
        "created_at": iso(invitation.created_at),
    }  # fmt: skip


def _refused(exc: invitations.InvitationRefused, field: str):
    if exc.status == 422:
        forms.fail_fields({field: exc.message})
    base.fail(exc.status, CODES.get(exc.status, "refused"), exc.message)


def _actor() -> User:
    return db.session.get(User, current_user.id)


def _membership(membership_id: int, action: Action) -> Membership:
    team = access.in_current_team(action)
    found = db.session.get(Membership, membership_id) if membership_id <= access.MAX_ID else None
    if found is None or found.team_id != team.id:
        base.fail(404, "not_found", "No such member in this team.")
    return found


@bp.get("/members")
@spec.operation("listMembers", TAG, "The team's members", Action.MEMBER_READ, query="PageQuery",
                response="MemberPage")  # fmt: skip
def members_list():
    team = access.in_current_team(Action.MEMBER_READ)
    params = base.query()
    return base.page(members.listing_query(team), Membership.id, present_member, params,
                     newest_first=False)  # fmt: skip


@bp.get("/members/<int:membership_id>")
@spec.operation("getMember", TAG, "One member", Action.MEMBER_READ, response="Member", etag=True)
def member_get(membership_id: int):
    return base.respond(present_member(_membership(membership_id, Action.MEMBER_READ)), etag=True)


def _projects_change(membership: Membership, changes: dict) -> tuple[bool, list] | None:
    """(all projects?, [(project id, role)]) the body asks for, or None to leave them."""
    if "all_projects" not in changes and "projects" not in changes:
        return None
    projects = changes.get("projects")
    all_projects = changes.get("all_projects")
    if all_projects is None:
        all_projects = False if projects is not None else membership.all_projects
    if all_projects and projects:
        forms.fail_fields({"projects": "Give projects only with all_projects false."})
    pairs = [(p["project_id"], p["role"]) for p in projects or ()]
    if not all_projects and projects is None:
        pairs = [(pm.project_id, pm.role) for pm in membership.projects]
    return bool(all_projects), pairs


def _check_projects(membership: Membership, role: str | None, pairs: list) -> None:
    """Refuse the projects before the role changes: a body is applied whole or not at all
    (the two changes are two of the domain's transactions)."""
    role = Role(role or membership.role)
    try:
        if role == Role.owner:
            raise members.MemberChangeRefused("An owner has access to every project.", 422)
        invitations.project_grants(membership.team, role, pairs)
    except members.MemberChangeRefused as exc:
        _refused(exc, "projects")


@bp.patch("/members/<int:membership_id>")
@spec.operation(
    "updateMember", TAG, "Change a member's role or project access", Action.MEMBER_MANAGE,
    body="MemberUpdate", response="Member", etag=True,
    description="`projects` (with `all_projects` false) replaces the member's projects.",
)  # fmt: skip
def member_update(membership_id: int):
    membership = _membership(membership_id, Action.MEMBER_MANAGE)
    changes = base.body().model_dump(exclude_unset=True)
    base.if_match(present_member(membership))
    actor = _actor()
    projects = _projects_change(membership, changes)
    if projects is not None and not projects[0]:
        _check_projects(membership, changes.get("role"), projects[1])
    if changes.get("role") is not None:
        try:
            members.change_role(actor, membership, changes["role"])
        except members.MemberChangeRefused as exc:
            _refused(exc, "role")
    if projects is not None:
        try:
            members.set_projects(actor, membership, *projects)
        except members.MemberChangeRefused as exc:
            _refused(exc, "projects")
    db.session.refresh(membership)
    return base.respond(present_member(membership), etag=True)


@bp.delete("/members/<int:membership_id>")
@spec.operation("removeMember", TAG, "Remove a member (their keys for the team are revoked)",
                Action.MEMBER_MANAGE, status=204)  # fmt: skip
def member_remove(membership_id: int):
    membership = _membership(membership_id, Action.MEMBER_MANAGE)
    try:
        members.remove(_actor(), membership)
    except members.MemberChangeRefused as exc:
        _refused(exc, "member")
    return base.no_content()


# ---- invitations -------------------------------------------------------------------


@bp.get("/invitations")
@spec.operation("listInvitations", TAG, "The team's open invitations", Action.MEMBER_READ,
                query="PageQuery", response="InvitationPage")  # fmt: skip
def invitations_list():
    team = access.in_current_team(Action.MEMBER_READ)
    params = base.query()
    return base.page(invitations.pending_query(team), Invitation.id, present_invitation, params)


@bp.post("/invitations")
@spec.operation(
    "createInvitation", TAG, "Invite by email, or make a link", Action.MEMBER_MANAGE,
    body="InvitationCreate", response="InvitationCreated", status=201, shown_once=True,
    description="The answer holds the invitation link, this once. An email invitation is "
    "mailed when the server has SMTP settings (`mail` says how it went).",
)  # fmt: skip
def invitation_create():
    team = access.in_current_team(Action.MEMBER_MANAGE)
    values = base.body()
    try:
        invitation, token = invitations.create(
            team, _actor(), email=values.email or None, role=values.role,
            all_projects=values.all_projects,
            projects=[(p.project_id, p.role) for p in values.projects],
        )  # fmt: skip
    except invitations.InvitationRefused as exc:
        _refused(exc, "projects" if "project" in exc.message else "email")
    outcome = invitations.send(invitation, token) if invitation.email else None
    answer = present_invitation(invitation) | {
        "link": invitations.invitation_url(token), "mail": outcome,
    }  # fmt: skip
    return base.respond(answer, 201)


@bp.delete("/invitations/<int:invitation_id>")
@spec.operation("revokeInvitation", TAG, "Revoke an open invitation", Action.MEMBER_MANAGE,
                status=204)  # fmt: skip
def invitation_revoke(invitation_id: int):
    team = access.in_current_team(Action.MEMBER_MANAGE)
    found = db.session.get(Invitation, invitation_id) if invitation_id <= access.MAX_ID else None
    if found is None or found.team_id != team.id:
        base.fail(404, "not_found", "No such invitation in this team.")
    try:
        invitations.revoke(found, _actor())
    except invitations.InvitationRefused as exc:
        _refused(exc, "invitation")
    return base.no_content()
