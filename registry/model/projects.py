"""Projects (the first path component of their repositories), their metadata and their members."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from sqlalchemy import func, select

from registry.model import roles
from registry.model.access import changed
from registry.model.errors import ModelError
from registry.model.tables import Member, Project, Repository, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.model.access import Principal
    from registry.model.db import Database

# Harbor's project name rule.
_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
# Harbor's project metadata keys (string values "true"/"false") -> our columns; auto_delete_untagged is ours.
METADATA = {"public": "public", "enable_content_trust": "content_trust", "auto_delete_untagged": "auto_delete_untagged"}


def check_name(name: str) -> None:
    """Harbor's rule: 1-255 characters, lowercase letters and digits separated by single '.', '_' or '-'."""
    if not 1 <= len(name) <= 255 or not _NAME.fullmatch(name):
        raise ModelError(400, f"invalid project name {name[:100]!r}: lowercase letters, digits and single "
                            "'.', '_' or '-' between them, at most 255 characters")


def project_of(repository: str) -> str:
    """The project a repository belongs to: its first path component."""
    return repository.split("/", 1)[0]


def find(s: Session, name_or_id: str | int, is_name: bool | None = None) -> Project | None:
    """A project by name or id: Harbor's X-Is-Resource-Name header (is_name) says which; absent, digits are an id."""
    if isinstance(name_or_id, int) or (is_name is not True and str(name_or_id).isdigit()):
        return s.get(Project, int(name_or_id))
    return s.scalars(select(Project).where(Project.name == name_or_id)).first()


def get(s: Session, name_or_id: str | int, is_name: bool | None = None) -> Project:
    """find(), or 404 as Harbor answers."""
    project = find(s, name_or_id, is_name)
    if project is None:
        raise ModelError(404, f"project {str(name_or_id)[:255]} not found")
    return project


def metadata(project: Project) -> dict[str, str]:
    """Harbor's metadata map of a project: strings "true"/"false"."""
    return {key: "true" if getattr(project, column) else "false" for key, column in METADATA.items()}


def _apply_metadata(project: Project, values: dict | None) -> None:
    for key, value in (values or {}).items():
        column = METADATA.get(key)
        if column is None:
            continue  # Harbor's other keys (auto_scan, severity, ...) describe features we do not have
        if isinstance(value, bool):
            flag = value
        elif isinstance(value, str) and value.lower() in ("true", "false"):
            flag = value.lower() == "true"
        else:
            raise ModelError(400, f"metadata.{key}: use \"true\" or \"false\"")
        setattr(project, column, flag)


def _check_quota(quota: object) -> int:
    if not isinstance(quota, int) or isinstance(quota, bool) or (quota < 0 and quota != -1):
        raise ModelError(400, "storage_limit: bytes, or -1 for no limit")
    return quota


def create_project(db: Database, creator: Principal | None, name: str, values: dict | None = None,
                   storage_limit: int = -1) -> Project:
    """A new project; its creator (a user) becomes its project admin, as in Harbor. 409 when the name is taken."""
    check_name(name)
    with db.session() as s:
        if find(s, name, True) is not None:
            raise ModelError(409, f"project {name} already exists")
        project = Project(name=name, owner_id=creator.user_id if creator else None,
                          quota_bytes=_check_quota(storage_limit))
        _apply_metadata(project, values)
        s.add(project)
        s.flush()
        if creator is not None and creator.user_id is not None:
            s.add(Member(project_id=project.id, user_id=creator.user_id, role=roles.PROJECT_ADMIN))
        changed(s)
        return project


def update_project(db: Database, project_id: int, values: dict | None = None,
                   storage_limit: int | None = None) -> Project:
    """Change a project's metadata (Harbor's string map) and, when given, its storage quota in bytes (-1: none)."""
    with db.session() as s:
        project = get(s, project_id)
        _apply_metadata(project, values)
        if storage_limit is not None:
            project.quota_bytes = _check_quota(storage_limit)
        changed(s)
        return project


def delete_project(db: Database, project_id: int) -> None:
    """Remove an empty project; 412 while it has repositories (as Harbor)."""
    with db.session() as s:
        project = get(s, project_id)
        count = s.scalar(select(func.count()).select_from(Repository).where(Repository.project_id == project.id))
        if count:
            raise ModelError(412, f"project {project.name} contains repositories and cannot be deleted")
        s.delete(project)
        changed(s)


def _check_role(role: object) -> int:
    if role not in roles.RIGHTS:
        raise ModelError(400, f"role_id: one of {', '.join(f'{k} ({v})' for k, v in roles.NAMES.items())}")
    return role


def add_member(db: Database, project_id: int, role: int, user_id: int | None = None,
               username: str | None = None) -> Member:
    """Make a user (by id or name) a member with a role; 409 when they already are one, 404 without the user."""
    _check_role(role)
    with db.session() as s:
        project = get(s, project_id)
        if user_id is not None:
            user = s.get(User, user_id)
        else:
            user = s.scalars(select(User).where(User.username == (username or ""))).first()
        if user is None:
            raise ModelError(404, f"user {user_id if user_id is not None else username} not found")
        if s.scalars(select(Member.id).where(Member.project_id == project.id,
                                             Member.user_id == user.id)).first() is not None:
            raise ModelError(409, f"user {user.username} is already a member of {project.name}")
        member = Member(project_id=project.id, user_id=user.id, role=role)
        s.add(member)
        s.flush()
        changed(s)
        return member


def _member(s: Session, project_id: int, member_id: int) -> Member:
    member = s.get(Member, member_id)
    if member is None or member.project_id != project_id:
        raise ModelError(404, f"member {member_id} not found")
    return member


def update_member(db: Database, project_id: int, member_id: int, role: int) -> None:
    """Change a member's role."""
    _check_role(role)
    with db.session() as s:
        _member(s, project_id, member_id).role = role
        changed(s)


def remove_member(db: Database, project_id: int, member_id: int) -> None:
    """Remove a member from a project."""
    with db.session() as s:
        s.delete(_member(s, project_id, member_id))
        changed(s)
