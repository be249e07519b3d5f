"""Local users: bcrypt passwords, the initial admin, the htpasswd import and the users' CRUD."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import sys
from typing import TYPE_CHECKING

import bcrypt
from sqlalchemy import select

from registry.model import roles
from registry.model.access import ROBOT_PREFIX, Principal, changed
from registry.model.errors import ModelError
from registry.model.tables import Member, Project, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.model.db import Database

log = logging.getLogger("registry")

ADMIN = "admin"
ADMIN_PASSWORD_ENV = "DOCKYARD_REGISTRY_ADMIN_PASSWORD"
# Hashes we make are bcrypt over base64(sha256(password)), marked by this prefix: bcrypt reads only 72 bytes, so a
# longer password would otherwise match anything sharing its first 72. Unmarked hashes (htpasswd imports) are
# checked as `htpasswd -B` made them: by the password's first 72 bytes.
_PREHASHED = "sha256$"
_BCRYPT_ROUNDS = 10
_HTPASSWD_MAX = 72
_USERNAME_BAD = re.compile(r'[,"~#%$:/\\\s]')  # Harbor refuses these in user names (and ":" breaks Basic auth)
_DUMMY = bcrypt.hashpw(b"no such user", bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()


def _prehash(password: str) -> bytes:
    return base64.b64encode(hashlib.sha256(password.encode()).digest())


def hash_password(password: str) -> str:
    """The stored form of a password: bcrypt of its SHA-256 (so every byte counts)."""
    return _PREHASHED + bcrypt.hashpw(_prehash(password), bcrypt.gensalt(_BCRYPT_ROUNDS)).decode()


def check_password(password: str, stored: str) -> bool:
    """Whether `password` matches a stored hash (ours, or an imported htpasswd one)."""
    try:
        if stored.startswith(_PREHASHED):
            return bcrypt.checkpw(_prehash(password), stored[len(_PREHASHED):].encode())
        return bcrypt.checkpw(password.encode()[:_HTPASSWD_MAX], stored.encode())
    except ValueError:  # not a bcrypt hash: matches nothing
        return False


def dummy_check(password: str) -> None:
    """Spend a bcrypt check's time on nothing (unknown names cost what known ones do)."""
    check_password(password, _PREHASHED + _DUMMY)


def check_policy(password: str) -> None:
    """Harbor's password rule: 8 to 128 characters with an uppercase and a lowercase letter and a digit."""
    if not (8 <= len(password) <= 128 and re.search("[A-Z]", password) and re.search("[a-z]", password)
            and re.search("[0-9]", password)):
        raise ModelError(400, "the password must be 8 to 128 characters with at least one uppercase letter, "
                            "one lowercase letter and one number")


def check_username(username: str) -> None:
    """Harbor's user name rule (1-255 characters, none of , " ~ # % $ : / \\ or spaces), robots' prefix excluded."""
    if not 1 <= len(username) <= 255 or _USERNAME_BAD.search(username) or username.startswith(ROBOT_PREFIX):
        raise ModelError(400, f"invalid user name {username[:100]!r}")


def get_user(s: Session, user_id: int) -> User:
    """The user with this id; 404 when there is none."""
    user = s.get(User, user_id)
    if user is None:
        raise ModelError(404, f"user {user_id} not found")
    return user


def create_user(db: Database, username: str, password: str, email: str = "", realname: str = "",
                comment: str = "", sysadmin: bool = False) -> User:
    """A new local user; 409 when the name (or the e-mail) is taken."""
    check_username(username)
    check_policy(password)
    return _add(db, User(username=username, password_hash=hash_password(password), email=email[:255],
                         realname=realname[:255], comment=comment[:1024], sysadmin=sysadmin, source="local"))


def _add(db: Database, user: User) -> User:
    with db.session() as s:
        if s.scalars(select(User.id).where(User.username == user.username)).first() is not None:
            raise ModelError(409, f"user {user.username} already exists")
        if user.email and s.scalars(select(User.id).where(User.email == user.email)).first() is not None:
            raise ModelError(409, f"e-mail {user.email} is already used")
        s.add(user)
        s.flush()
        return user


def update_user(db: Database, user_id: int, email: str | None = None, realname: str | None = None,
                comment: str | None = None) -> User:
    """Change a user's profile fields (those given)."""
    with db.session() as s:
        user = get_user(s, user_id)
        if email is not None and email != user.email:
            if email and s.scalars(select(User.id).where(User.email == email)).first() is not None:
                raise ModelError(409, f"e-mail {email} is already used")
            user.email = email[:255]
        if realname is not None:
            user.realname = realname[:255]
        if comment is not None:
            user.comment = comment[:1024]
        return user


def change_password(db: Database, actor: Principal, user_id: int, new_password: str,
                    old_password: str | None = None) -> None:
    """Set a user's password: the old one is required unless a sysadmin resets someone else's (as Harbor)."""
    if actor.user_id != user_id and not actor.sysadmin:
        raise ModelError(403, "only a system admin may change another user's password")
    check_policy(new_password)
    with db.session() as s:
        user = get_user(s, user_id)
        if actor.user_id == user_id and not check_password(old_password or "", user.password_hash):
            raise ModelError(403, "the old password is wrong")
        if old_password is not None and old_password == new_password:
            raise ModelError(400, "the new password is the old one")
        user.password_hash = hash_password(new_password)
        changed(s)


def delete_user(db: Database, actor: Principal, user_id: int) -> None:
    """Remove a user (their memberships go with them); nobody deletes themselves or the initial admin."""
    with db.session() as s:
        user = get_user(s, user_id)
        if actor.user_id == user_id or user.username == ADMIN:
            raise ModelError(403, f"user {user.username} cannot be deleted")
        s.delete(user)
        changed(s)


def set_sysadmin(db: Database, actor: Principal, user_id: int, sysadmin: bool) -> None:
    """Grant or revoke system admin; nobody changes their own flag (or the initial admin's)."""
    with db.session() as s:
        user = get_user(s, user_id)
        if actor.user_id == user_id or user.username == ADMIN:
            raise ModelError(403, f"the system admin flag of {user.username} cannot be changed")
        user.sysadmin = sysadmin
        changed(s)


def bootstrap(db: Database, admin_password: str | None = None, htpasswd: dict[str, str] | None = None,
              access: dict | None = None, anonymous_pull: bool = False) -> None:
    """First-start setup, under the migration lock so replicas starting at once do it once: the `admin`
    sysadmin (password: $DOCKYARD_REGISTRY_ADMIN_PASSWORD, else `admin_password`, else generated and printed),
    then an htpasswd file's users (user -> bcrypt hash) and the config's `auth.access` mapped onto members."""
    with db.exclusive():
        _create_admin(db, os.environ.get(ADMIN_PASSWORD_ENV) or admin_password)
        _import_htpasswd(db, htpasswd or {})
        _import_access(db, access or {}, anonymous_pull)
        with db.session() as s:
            changed(s)


def _create_admin(db: Database, password: str | None) -> None:
    with db.session() as s:
        if s.scalars(select(User.id).where(User.username == ADMIN)).first() is not None:
            return
    generated = not password
    if not password:
        password = secrets.token_urlsafe(18)
    with db.session() as s:
        s.add(User(username=ADMIN, password_hash=hash_password(password), sysadmin=True, source="local",
                   comment="the initial system admin"))
    if generated:  # the one time it is shown: it is stored only as a hash
        print(f"dockyard registry: initial admin password (shown once): {password}", file=sys.stderr, flush=True)


def _import_htpasswd(db: Database, entries: dict[str, str]) -> None:
    """Each htpasswd user becomes a local user (source "htpasswd") keeping its bcrypt hash; later starts update
    the hashes of those imported users and add new ones, never touching users made here."""
    if not entries:
        return
    with db.session() as s:
        existing = {u.username: u for u in s.scalars(select(User).where(User.username.in_(list(entries))))}
        for name, hashed in entries.items():
            user = existing.get(name)
            if user is None:
                if name.startswith(ROBOT_PREFIX) or _USERNAME_BAD.search(name) or not name:
                    log.warning("htpasswd user %r not imported: not a valid user name", name[:100])
                    continue
                s.add(User(username=name, password_hash=hashed, source="htpasswd"))
            elif user.source == "htpasswd" and user.password_hash != hashed:
                user.password_hash = hashed


# `auth.access` onto the model. A user's entry {pattern: rights} becomes a membership in the project named by the
# pattern's first path component ("team/*" and "team/app" -> project "team", created private if missing) with the
# weakest role holding the rights: pull -> guest, pull+push -> developer, anything with delete -> maintainer (the
# model cannot grant push or delete without pull). Limits: a pattern whose first component has a wildcard ("*",
# "te*/x") names no one project and is skipped with a warning, as are list entries (rights on every repository)
# and the "*" user (every authenticated user): give those users projects' memberships or make projects public.
# `auth.anonymous = ["pull"]` makes the projects created here public. Rights narrower than a project (a pattern
# for one repository) widen to the whole project.
def _import_access(db: Database, rights: dict, anonymous_pull: bool) -> None:
    for username, entry in rights.items():
        if username == "*" or isinstance(entry, list):
            log.warning("auth.access entry %r not mapped: projects' members need one project per pattern",
                        username[:100])
            continue
        for pattern, rights in entry.items():
            project = pattern.split("/", 1)[0]
            if any(ch in project for ch in "*?[") or not rights:
                log.warning("auth.access %r on %r not mapped: no single project", username[:100], pattern[:100])
                continue
            role = roles.MAINTAINER if "delete" in rights else roles.DEVELOPER if "push" in rights else roles.GUEST
            _grant(db, username, project, role, public=anonymous_pull)


def _grant(db: Database, username: str, project_name: str, role: int, public: bool) -> None:
    from registry.model.projects import check_name

    try:
        check_name(project_name)
    except ModelError:
        log.warning("auth.access project %r not mapped: not a valid project name", project_name[:100])
        return
    with db.session() as s:
        user = s.scalars(select(User).where(User.username == username)).first()
        if user is None:
            log.warning("auth.access user %r not mapped: no such user", username[:100])
            return
        project = s.scalars(select(Project).where(Project.name == project_name)).first()
        if project is None:
            project = Project(name=project_name, public=public)
            s.add(project)
            s.flush()
        member = s.scalars(select(Member).where(Member.project_id == project.id,
                                                Member.user_id == user.id)).first()
        if member is None:
            s.add(Member(project_id=project.id, user_id=user.id, role=role))
        elif roles.RIGHTS[role] > roles.RIGHTS[member.role]:  # two patterns of one project: the stronger
            member.role = role
