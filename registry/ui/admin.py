"""System admins' pages: users, the whole audit log, and the system (statistics, garbage collection)."""

from __future__ import annotations

from flask import request
from sqlalchemy import func, select

from registry.api.common import ApiError, needs
from registry.model.tables import Artifact, AuditLog, Project, ProjectBlob, Repository, User
from registry.ui.common import bp, db, done, form, page_of, principal, registry, render


@bp.get("/users")
@needs("sysadmin")
def users():
    q = request.args.get("q", "")[:255]
    where = [User.username.contains(q, autoescape=True)] if q else []
    with db().session() as s:
        page = page_of(s, select(User).where(*where).order_by(User.username),
                       select(func.count(User.id)).where(*where))
    return render("users.html", page=page, q=q)


@bp.post("/users")
@needs("sysadmin")
def create_user():
    from registry.model.users import create_user as create
    create(db(), form("username", 255), request.form.get("password", "")[:1024], email=form("email", 255),
           realname=form("realname", 255), sysadmin=request.form.get("sysadmin") == "on")
    return done("ui.users", "user-created")


@bp.post("/users/<int:user_id>/sysadmin")
@needs("sysadmin")
def set_sysadmin(user_id: int):
    from registry.model.users import set_sysadmin as update
    who = principal()
    assert who is not None  # the need "sysadmin" let only a signed-in admin through
    update(db(), who, user_id, request.form.get("sysadmin") == "true")
    return done("ui.users", "user-updated")


@bp.post("/users/<int:user_id>/delete")
@needs("sysadmin")
def delete_user(user_id: int):
    from registry.model.users import delete_user as delete
    who = principal()
    assert who is not None
    delete(db(), who, user_id)
    return done("ui.users", "user-deleted")


@bp.get("/logs")
@needs("sysadmin")
def all_logs():
    """Every project's audit log entries (and the system's), newest first."""
    with db().session() as s:
        page = page_of(s, select(AuditLog).order_by(AuditLog.op_time.desc(), AuditLog.id.desc()),
                       select(func.count(AuditLog.id)))
    return render("logs.html", page=page, project=None)


def _statistics() -> dict:
    with db().session() as s:
        return {"projects": s.scalar(select(func.count(Project.id))),
                "public projects": s.scalar(select(func.count(Project.id)).where(Project.public.is_(True))),
                "repositories": s.scalar(select(func.count(Repository.id))),
                "artifacts": s.scalar(select(func.count(Artifact.id))),
                "users": s.scalar(select(func.count(User.id))),
                "storage used": s.scalar(select(func.sum(ProjectBlob.size))) or 0}


@bp.get("/system")
@needs("sysadmin")
def system():
    return render("system.html", stats=_statistics(), report=None, config=registry().config)


@bp.post("/system/gc")
@needs("sysadmin")
def run_gc():
    """Collect unreferenced blobs now (or list them in a dry run); the page shows what went."""
    from registry.gc import collect
    config = registry().config
    if config.read_only:
        raise ApiError(409, "the registry is read-only: garbage collection would delete")
    dry_run = request.form.get("dry_run") == "on"
    report = collect(registry().storage, dry_run=dry_run, grace=config.gc_grace, upload_max_age=config.upload_max_age)
    return render("system.html", stats=_statistics(), report=report.summary(dry_run), config=config)
