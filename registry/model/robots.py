"""Robot accounts: `robot$<project>+<name>` (project level) and `robot$<name>` (system level), with Harbor's
permission lists, expiry, disable and a secret shown once (only its bcrypt hash is stored)."""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import TYPE_CHECKING

from sqlalchemy import select

from registry.model import projects
from registry.model.access import ROBOT_PREFIX, changed
from registry.model.errors import ModelError
from registry.model.tables import Project, Robot
from registry.model.users import check_policy, hash_password

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.model.db import Database

_NAME = re.compile(r"[a-z0-9]+(?:[._-][a-z0-9]+)*")
# Harbor's (resource, action) pairs that carry a right on the v2 API; the others are stored as given.
_RIGHTS = {("repository", "pull"): "pull", ("repository", "push"): "push", ("repository", "delete"): "delete",
           ("artifact", "delete"): "delete"}


def rights_of(s: Session, robot: Robot) -> tuple:
    """((namespace, rights), ...) of a robot's permissions; a project robot's namespace is always its project."""
    own = s.get(Project, robot.project_id).name if robot.project_id is not None else None  # type: ignore[union-attr]
    out = []
    for perm in robot.permissions or []:
        if perm.get("kind") != "project":
            continue
        namespace = own or perm.get("namespace") or ""
        rights = frozenset(_RIGHTS[key] for a in perm.get("access") or []
                           if (key := (a.get("resource"), a.get("action"))) in _RIGHTS)
        if rights:
            out.append((namespace, rights))
    return tuple(out)


def _check_permissions(s: Session, level: str, permissions: object, project: Project | None) -> list:
    """Harbor's permission list, validated: [{"kind": "project", "namespace": ..., "access": [{resource, action}]}]."""
    if not isinstance(permissions, list) or not permissions:
        raise ModelError(400, "permissions: a list of {kind, namespace, access}")
    out = []
    for i, perm in enumerate(permissions):
        if not isinstance(perm, dict) or perm.get("kind") != "project" or not isinstance(perm.get("access"), list):
            raise ModelError(400, f"permissions[{i}]: kind \"project\", a namespace and an access list")
        namespace = perm.get("namespace")
        if level == "project":
            if project is None or namespace != project.name:
                raise ModelError(400, f"permissions[{i}].namespace: a project robot's permissions name its project")
        elif namespace != "*" and projects.find(s, str(namespace), True) is None:
            raise ModelError(404, f"permissions[{i}].namespace: project {str(namespace)[:255]} not found")
        access = []
        for j, a in enumerate(perm["access"]):
            if not isinstance(a, dict) or not isinstance(a.get("resource"), str) or \
                    not isinstance(a.get("action"), str):
                raise ModelError(400, f"permissions[{i}].access[{j}]: {{\"resource\": ..., \"action\": ...}}")
            access.append({"resource": a["resource"][:64], "action": a["action"][:64],
                           **({"effect": a["effect"]} if isinstance(a.get("effect"), str) else {})})
        out.append({"kind": "project", "namespace": namespace, "access": access})
    return out


def _expiry(duration: object) -> float:
    if not isinstance(duration, int) or isinstance(duration, bool) or (duration < 1 and duration != -1):
        raise ModelError(400, "duration: days, or -1 for never")
    return -1 if duration == -1 else time.time() + duration * 86400


def new_secret() -> str:
    """A random secret meeting Harbor's password rule."""
    alphabet = string.ascii_letters + string.digits
    while True:
        secret = "".join(secrets.choice(alphabet) for _ in range(32))
        if any(c.isupper() for c in secret) and any(c.islower() for c in secret) and \
                any(c.isdigit() for c in secret):
            return secret


def create_robot(db: Database, name: str, level: str, permissions: object, duration: object = -1,
                 description: str = "", creator: str = "", disable: bool = False) -> tuple[Robot, str]:
    """A new robot and its secret (returned once, stored hashed); 409 when the full name is taken."""
    if level not in ("project", "system"):
        raise ModelError(400, "level: \"project\" or \"system\"")
    if not isinstance(name, str) or not 1 <= len(name) <= 128 or not _NAME.fullmatch(name):
        raise ModelError(400, f"invalid robot name {str(name)[:100]!r}: lowercase letters, digits, '.', '_', '-'")
    secret = new_secret()
    with db.session() as s:
        project = None
        if level == "project":
            first = permissions[0] if isinstance(permissions, list) and permissions else {}
            namespace = first.get("namespace") if isinstance(first, dict) else None
            project = projects.get(s, str(namespace or ""), True)
        perms = _check_permissions(s, level, permissions, project)
        full = f"{ROBOT_PREFIX}{project.name}+{name}" if project else f"{ROBOT_PREFIX}{name}"
        if s.scalars(select(Robot.id).where(Robot.name == full)).first() is not None:
            raise ModelError(409, f"robot account {full} already exists")
        robot = Robot(name=full, description=str(description)[:1024], secret_hash=hash_password(secret),
                      project_id=project.id if project else None, permissions=perms, expires_at=_expiry(duration),
                      disabled=bool(disable), creator=creator[:255])
        s.add(robot)
        s.flush()
        return robot, secret


def get_robot(s: Session, robot_id: int) -> Robot:
    """The robot with this id; 404 when there is none."""
    robot = s.get(Robot, robot_id)
    if robot is None:
        raise ModelError(404, f"robot {robot_id} not found")
    return robot


def update_robot(db: Database, robot_id: int, description: str | None = None, disable: bool | None = None,
                 duration: object = None, permissions: object = None) -> Robot:
    """Change a robot's description, disabled flag, expiry (days from now) or permissions (those given)."""
    with db.session() as s:
        robot = get_robot(s, robot_id)
        if description is not None:
            robot.description = str(description)[:1024]
        if disable is not None:
            robot.disabled = bool(disable)
        if duration is not None:
            robot.expires_at = _expiry(duration)
        if permissions is not None:
            project = s.get(Project, robot.project_id) if robot.project_id is not None else None
            robot.permissions = _check_permissions(s, "project" if project else "system", permissions, project)
        changed(s)
        return robot


def refresh_secret(db: Database, robot_id: int, secret: str | None = None) -> str:
    """Replace a robot's secret: the one given (Harbor's password rule) or a new random one, returned once."""
    if secret:
        check_policy(secret)
    value = secret or new_secret()
    with db.session() as s:
        get_robot(s, robot_id).secret_hash = hash_password(value)
        changed(s)
    return value


def delete_robot(db: Database, robot_id: int) -> None:
    """Remove a robot account."""
    with db.session() as s:
        s.delete(get_robot(s, robot_id))
        changed(s)
