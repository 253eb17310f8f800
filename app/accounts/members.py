"""A team's members: roles, project access, removal, leaving, ownership.

The rules, for every function here:

- nobody grants a role above their own role on the team;
- an actor changes or removes only members whose role is not above theirs;
- a team always keeps an owner: the last one can neither leave, nor be demoted, nor be
  removed (transfer ownership first);
- a project role is never above the membership's role; an owner has every project.

Removing a member, lowering a role or narrowing project access ends that member's
sessions (``User.end_all_sessions``: their next request is logged out, their open
sockets close within ``WS_RECHECK_SECONDS``). Every change is audited with the team.
"""

from __future__ import annotations

from sqlalchemy import func, select

from app import access, audit
from app.accounts import apikeys
from app.accounts.invitations import InvitationRefused, parse_role, project_grants
from app.extensions import db
from app.models import Membership, ProjectMembership, Role, Team, User

# One refusal type for invitations and members: a message for the user and a status.
MemberChangeRefused = InvitationRefused


def _team(membership: Membership) -> Team:
    return db.session.get(Team, membership.team_id)


def _own_role(actor: User, team: Team) -> Role:
    if not access.can(actor, access.Action.MEMBER_MANAGE, team):
        raise MemberChangeRefused("You may not manage this team's members.", 403)
    return access.role_on(actor, team)


def _may_touch(actor: User, membership: Membership) -> Role:
    """The actor's role, if they may change ``membership`` (not above their own)."""
    own = _own_role(actor, _team(membership))
    if not own.allows(membership.role_enum):
        raise MemberChangeRefused("You cannot change a member whose role is above yours.", 403)
    return own


def owner_count(team_id: int) -> int:
    return db.session.scalar(
        select(func.count(Membership.id)).where(
            Membership.team_id == team_id, Membership.role == Role.owner.value
        )
    )


def _refuse_last_owner(membership: Membership, what: str) -> None:
    if membership.role == Role.owner.value and owner_count(membership.team_id) <= 1:
        raise MemberChangeRefused(
            f"The last owner cannot {what}: transfer ownership to another member first.", 409
        )


def project_roles(membership: Membership) -> dict[int, Role]:
    return {pm.project_id: Role(pm.role) for pm in membership.projects}


def _done(user: User, *, end_sessions: bool, team_id: int | None = None, why: str = "") -> None:
    """Commit a change to ``user``'s place in a team; one that takes rights away ends
    their sessions and revokes their API keys for ``team_id``."""
    if end_sessions:
        user.end_all_sessions()
    if team_id is not None:
        apikeys.revoke_for_member(user.id, team_id, why)
    db.session.commit()
    access.forget()


def change_role(actor: User, membership: Membership, role) -> None:
    """Give ``membership`` another role; a limited membership's project roles above the
    new role come down to it."""
    own = _may_touch(actor, membership)
    role = parse_role(role)
    if not own.allows(role):
        raise MemberChangeRefused(f"You cannot grant a role above your own ({own.value}).", 403)
    old = membership.role_enum
    if role == old:
        return
    if role != Role.owner:
        _refuse_last_owner(membership, "be given another role")
    if role == Role.owner and not membership.all_projects:
        _set_all_projects(membership)
    for pm in membership.projects:
        if not role.allows(Role(pm.role)):
            pm.role = role.value
    membership.role = role.value
    audit.record(
        audit.Action.MEMBER_ROLE_CHANGED, team_id=membership.team_id, target=membership.user,
        user_id=actor.id, membership_id=membership.id, **{"from": old.value, "to": role.value},
    )  # fmt: skip
    demoted = role.rank < old.rank
    _done(membership.user, end_sessions=demoted, team_id=membership.team_id if demoted else None,
          why=f"role lowered to {role.value}")  # fmt: skip


def _set_all_projects(membership: Membership) -> None:
    membership.all_projects = True
    for pm in list(membership.projects):
        membership.projects.remove(pm)


def _narrowed(was_all: bool, before: dict[int, Role], all_projects: bool, after: dict) -> bool:
    if all_projects:
        return False
    if was_all:
        return True
    return any(pid not in after or after[pid].rank < role.rank for pid, role in before.items())


def set_projects(actor: User, membership: Membership, all_projects: bool, projects=()) -> None:
    """Every project, or only ``projects`` ((project id, role) pairs, roles not above the
    membership's)."""
    _may_touch(actor, membership)
    team = _team(membership)
    role = membership.role_enum
    if not all_projects and role == Role.owner:
        raise MemberChangeRefused("An owner has access to every project.", 422)
    after = {} if all_projects else project_grants(team, role, projects)
    was_all, before = membership.all_projects, project_roles(membership)
    narrowed = _narrowed(was_all, before, all_projects, after)
    if all_projects:
        _set_all_projects(membership)
    else:
        membership.all_projects = False
        for pm in list(membership.projects):
            if pm.project_id not in after:
                membership.projects.remove(pm)
            else:
                pm.role = after[pm.project_id].value
        for pid, project_role in after.items():
            if pid not in before:
                membership.projects.append(
                    ProjectMembership(project_id=pid, role=project_role.value)
                )
    audit.record(
        audit.Action.MEMBER_PROJECTS_CHANGED, team_id=membership.team_id,
        target=membership.user, user_id=actor.id, membership_id=membership.id,
        **{"from": _describe(was_all, before), "to": _describe(all_projects, after)},
    )  # fmt: skip
    team_id = membership.team_id if narrowed else None
    _done(membership.user, end_sessions=narrowed, team_id=team_id, why="project access narrowed")


def _describe(all_projects: bool, roles: dict[int, Role]) -> str | dict[str, str]:
    return "all" if all_projects else {str(pid): r.value for pid, r in sorted(roles.items())}


def _drop(membership: Membership) -> User:
    user = membership.user
    if user.current_team_id == membership.team_id:
        user.current_team_id = None
    db.session.delete(membership)
    return user


def remove(actor: User, membership: Membership) -> None:
    """Take ``membership``'s user out of the team; their sessions end."""
    _may_touch(actor, membership)
    if membership.user_id == actor.id:
        raise MemberChangeRefused("To take yourself out of the team, leave it.", 422)
    _refuse_last_owner(membership, "be removed")
    team_id, membership_id, role = membership.team_id, membership.id, membership.role
    user = _drop(membership)
    audit.record(audit.Action.MEMBER_REMOVED, team_id=team_id, target=user, user_id=actor.id,
                 membership_id=membership_id, role=role)  # fmt: skip
    _done(user, end_sessions=True, team_id=team_id, why="removed from the team")


def leave(user: User, team: Team) -> None:
    """``user`` leaves ``team`` (their sessions go on: they may belong to other teams,
    and open sockets on this team close at their next check)."""
    membership = db.session.scalar(
        select(Membership).where(Membership.team_id == team.id, Membership.user_id == user.id)
    )
    if membership is None:
        raise MemberChangeRefused("You are not a member of this team.", 404)
    _refuse_last_owner(membership, "leave the team")
    membership_id, role = membership.id, membership.role
    _drop(membership)
    audit.record(audit.Action.MEMBER_LEFT, team_id=team.id, target=user, user_id=user.id,
                 membership_id=membership_id, role=role)  # fmt: skip
    _done(user, end_sessions=False, team_id=team.id, why="left the team")


def transfer_ownership(actor: User, membership: Membership) -> None:
    """Make ``membership`` an owner with every project; the actor, an owner, becomes an
    admin (they chose to step down: their own session goes on)."""
    team = _team(membership)
    if access.role_on(actor, team) != Role.owner:
        raise MemberChangeRefused("Only an owner can transfer ownership.", 403)
    if membership.user_id == actor.id:
        raise MemberChangeRefused("Choose another member to transfer ownership to.", 422)
    mine = db.session.scalar(
        select(Membership).where(Membership.team_id == team.id, Membership.user_id == actor.id)
    )
    previous = membership.role
    membership.role = Role.owner.value
    _set_all_projects(membership)
    mine.role = Role.admin.value
    audit.record(
        audit.Action.OWNERSHIP_TRANSFERRED, team_id=team.id, target=membership.user,
        user_id=actor.id, membership_id=membership.id, previous_role=previous,
        from_user_id=actor.id, to_user_id=membership.user_id,
    )  # fmt: skip
    _done(membership.user, end_sessions=False)


def listing_query(team: Team):
    """The statement of the team's memberships, with their users (unordered)."""
    return select(Membership).join(User).where(Membership.team_id == team.id)


def listing(team: Team) -> list[Membership]:
    """The team's memberships, owners first, then by name."""
    rank = {r.value: -r.rank for r in Role}
    found = list(db.session.scalars(listing_query(team).order_by(User.name)))
    return sorted(found, key=lambda m: rank.get(m.role, 0))
