"""Who a caller is (a user or a robot) and what they may do in a project: the one rights decision the v2 API,
the token endpoint, the REST API and the UI all use."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.model.db import Database
    from registry.model.tables import Project


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (user_id set) or a robot account (robot_id set, its Harbor permissions)."""

    name: str
    user_id: int | None = None
    sysadmin: bool = False
    robot_id: int | None = None
    permissions: tuple = ()


def authenticate(db: Database, username: str, password: str) -> Principal | None:
    """The user or robot these credentials name, or None when they are wrong, expired or disabled."""
    raise NotImplementedError  # h-identity


def project_rights(db: Database, principal: Principal | None, project: Project) -> frozenset[str]:
    """The rights (registry.model.roles.RIGHTS' names) `principal` (None: anonymous) holds in `project`."""
    raise NotImplementedError  # h-identity
