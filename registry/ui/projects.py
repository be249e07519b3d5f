"""Projects: the list (search, create, visibility, quota), a project's repositories, members, robots and logs."""

from __future__ import annotations

from flask import request
from sqlalchemy import func, select

from registry import guard
from registry.api.common import ApiError, needs
from registry.model import quota
from registry.model.tables import Artifact, AuditLog, Member, Project, ProjectBlob, Repository, Robot, User
from registry.ui.common import bp, db, done, form, gib, page_of, principal, render, rights, visible_projects


def usage(session, project_ids: list[int]) -> dict[int, int]:
    """Storage used by each project of a page of the list, in one query (quota.usage counts one project)."""
    if not project_ids:
        return {}
    rows = session.execute(select(ProjectBlob.project_id, func.sum(ProjectBlob.size))
                           .where(ProjectBlob.project_id.in_(project_ids)).group_by(ProjectBlob.project_id))
    return {pid: int(total or 0) for pid, total in rows}


@bp.get("/projects")
@needs("identity")
def projects():
    """The projects the user may see, searchable by name, with repository counts and quota use."""
    q = request.args.get("q", "")[:255]
    where = [visible_projects(principal())]
    if q:
        where.append(Project.name.contains(q, autoescape=True))
    repos = (select(func.count(Repository.id)).where(Repository.project_id == Project.id)
             .correlate(Project).scalar_subquery())
    with db().session() as s:
        page = page_of(s, select(Project, repos).where(*where).order_by(Project.name),
                       select(func.count(Project.id)).where(*where))
        used = usage(s, [p.id for p, _ in page.items])
    return render("projects.html", page=page, used=used, q=q)


def project_context() -> dict:
    """What every page of one project shows: the project (the guard found it for the view's need) and the user's
    rights there (for the tabs and buttons)."""
    proj = guard.project()
    return {"project": proj, "rights": rights(proj)}


@bp.get("/projects/<project_name_or_id>")
@needs("project:pull")
def repositories(project_name_or_id: str):
    """A project's repositories with their artifact counts and last push, searchable."""
    q = request.args.get("q", "")[:255]
    with db().session() as s:
        ctx = project_context()
        proj = ctx["project"]
        where = [Repository.project_id == proj.id]
        if q:
            where.append(Repository.name.contains(q, autoescape=True))
        page = page_of(s, select(Repository).where(*where).order_by(Repository.name),
                       select(func.count(Repository.id)).where(*where))
        # Counts for this page's repositories only: never a pass over every artifact of the registry.
        stats = {rid: (n, last) for rid, n, last in s.execute(
            select(Artifact.repository_id, func.count(Artifact.id), func.max(Artifact.push_time))
            .where(Artifact.repository_id.in_([r.id for (r,) in page.items])).group_by(Artifact.repository_id))}
        used = quota.usage(s, proj.id)
    return render("repositories.html", page=page, stats=stats, q=q, used=used, tab="repositories", **ctx)


@bp.get("/projects/<project_name_or_id>/members")
@needs("project:read")
def members(project_name_or_id: str):
    from registry.model.roles import NAMES
    with db().session() as s:
        ctx = project_context()
        where = Member.project_id == ctx["project"].id
        page = page_of(s, select(Member, User.username).join(User, User.id == Member.user_id).where(where)
                       .order_by(User.username), select(func.count(Member.id)).where(where))
    return render("members.html", page=page, roles=NAMES, tab="members", **ctx)


@bp.get("/projects/<project_name_or_id>/robots")
@needs("project:members")
def robots(project_name_or_id: str):
    with db().session() as s:
        ctx = project_context()
        where = Robot.project_id == ctx["project"].id
        page = page_of(s, select(Robot).where(where).order_by(Robot.name), select(func.count(Robot.id)).where(where))
    return render("robots.html", page=page, tab="robots", secret=None, **ctx)


@bp.get("/projects/<project_name_or_id>/logs")
@needs("project:read")
def logs(project_name_or_id: str):
    """The project's audit log, newest first."""
    with db().session() as s:
        ctx = project_context()
        where = AuditLog.project_id == ctx["project"].id
        page = page_of(s, select(AuditLog).where(where).order_by(AuditLog.op_time.desc(), AuditLog.id.desc()),
                       select(func.count(AuditLog.id)).where(where))
    return render("logs.html", page=page, tab="logs", **ctx)



@bp.post("/projects")
@needs("identity")
def create_project():
    """A new project; its creator becomes its project admin. Only a system admin sets a quota here."""
    from registry.model.projects import create_project as create
    who = principal()
    limit = gib(form("storage_limit") or "-1", "quota") if who and who.sysadmin else -1
    proj = create(db(), who, form("project_name", 255),
                  {"public": "true" if request.form.get("public") == "true" else "false"}, storage_limit=limit)
    return done("ui.repositories", "project-created", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/members")
@needs("project:members")
def add_member(project_name_or_id: str):
    from registry.model.projects import add_member as add
    proj = guard.project()
    add(db(), proj.id, _role(), username=form("username", 255))
    return done("ui.members", "member-added", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/members/<int:member_id>")
@needs("project:members")
def update_member(project_name_or_id: str, member_id: int):
    from registry.model.projects import update_member as update
    proj = guard.project()
    update(db(), proj.id, member_id, _role())
    return done("ui.members", "member-updated", project_name_or_id=proj.id)


@bp.post("/projects/<project_name_or_id>/members/<int:member_id>/delete")
@needs("project:members")
def remove_member(project_name_or_id: str, member_id: int):
    from registry.model.projects import remove_member as remove
    proj = guard.project()
    remove(db(), proj.id, member_id)
    return done("ui.members", "member-removed", project_name_or_id=proj.id)


def _role() -> int:
    text = form("role", 3)
    return int(text) if text.isdigit() else 0  # 0 is no role: the model refuses it, naming the valid ones


ROBOT_ACTIONS = ("pull", "push", "delete")


@bp.post("/projects/<project_name_or_id>/robots")
@needs("project:members")
def create_robot(project_name_or_id: str):
    """A project robot account with the chosen repository actions; its secret is shown on this one page only."""
    from registry.model.robots import create_robot as create
    ctx = project_context()
    proj = ctx["project"]
    actions = [a for a in ROBOT_ACTIONS if request.form.get(f"action_{a}") == "on"] or ["pull"]
    days = form("days", 9) or "-1"
    if not days.lstrip("-").isdigit():
        raise ApiError(400, "expires in: a number of days, or -1 for never")
    permissions = [{"kind": "project", "namespace": proj.name,
                    "access": [{"resource": "repository", "action": a} for a in actions]}]
    who = principal()
    robot, secret = create(db(), form("name", 128), "project", permissions, int(days),
                           description=form("description"), creator=who.name if who else "")
    with db().session() as s:
        where = Robot.project_id == proj.id
        page = page_of(s, select(Robot).where(where).order_by(Robot.name), select(func.count(Robot.id)).where(where))
    return render("robots.html", page=page, tab="robots", secret=secret, robot_name=robot.name, **ctx)


@bp.post("/projects/<project_name_or_id>/robots/<int:robot_id>/delete")
@needs("project:members")
def delete_robot(project_name_or_id: str, robot_id: int):
    from registry.model.robots import delete_robot as delete
    proj = guard.project()
    with db().session() as s:
        robot = s.get(Robot, robot_id)
        if robot is None or robot.project_id != proj.id:  # only this project's robots are managed from its page
            raise ApiError(404, f"robot account {robot_id} not found in {proj.name}")
    delete(db(), robot_id)
    return done("ui.robots", "robot-deleted", project_name_or_id=proj.id)
