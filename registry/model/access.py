"""Who a caller is (a user or a robot) and what they may do in a project: the one rights decision the v2 API,
the token endpoint, the REST API and the UI all use."""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import delete, select, update
from sqlalchemy import event as sa_event
from sqlalchemy.exc import IntegrityError

from registry.model import roles
from registry.model.db import sentinel_of
from registry.model.tables import LoginFailure, Member, Project, Robot, Setting, User

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from registry.model.db import Database

log = logging.getLogger("registry")
ROBOT_PREFIX = "robot$"
ALL_RIGHTS = frozenset().union(*roles.RIGHTS.values())
# Login throttling: this many failed logins of one (username, address) lock it out until FAILURE_WINDOW seconds
# have passed since the last failure.
FAILURE_LIMIT = 10
FAILURE_WINDOW = 60.0
# How long a verified (name, password) pair skips bcrypt: the row is still read on every request, so a changed
# password, a disabled or expired robot or a deleted user takes effect at once, on every worker and replica.
_VERIFIED_TTL = 300.0
_VERIFIED_MAX = 4096
# The settings row every write to users, robots, projects or members changes (registry.model.db creates it):
# decisions cached in a process stay valid while it holds the value they were made under, so a request reads one
# small row instead of users, robots, projects and members, and every worker and replica sees a change at once.
GENERATION_KEY = "auth.generation"
_GENERATION_QUERY = f"SELECT value FROM settings WHERE key = '{GENERATION_KEY}'"
_DECISIONS_MAX = 8192
# The SQLite sentinel: this many random bytes, rewritten after each committed change of the generation; each
# process also checks every SENTINEL_RECHECK seconds that the file it maps is still the one at the path.
SENTINEL_SIZE = 8
SENTINEL_RECHECK = 1.0


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user (user_id set) or a robot account (robot_id set, its Harbor permissions)."""

    name: str
    user_id: int | None = None
    sysadmin: bool = False
    robot_id: int | None = None
    permissions: tuple = ()  # robots: ((namespace, frozenset of rights), ...); namespace "*" is every project
    expires_at: float = -1  # robots: when they expire (-1: never)

    def expired(self) -> bool:
        return self.expires_at != -1 and self.expires_at <= time.time()


class LoginThrottled(Exception):
    """Too many failed logins for this name from this address; retry after `retry_after` seconds."""

    def __init__(self, retry_after: int):
        super().__init__(f"too many failed logins; retry in {retry_after} seconds")
        self.retry_after = retry_after


class _Decisions:
    """Logins and rights decided under one generation; a new generation drops them all."""

    def __init__(self):
        # (generation, its entries), replaced as one: a lookup without the lock never pairs a generation with
        # another's entries.
        self.current: tuple[str | None, dict] = (None, {})
        self.lock = threading.Lock()

    def get(self, generation: str, key: tuple):
        held, entries = self.current
        return entries.get(key) if generation == held else None

    def put(self, generation: str, key: tuple, value) -> None:
        with self.lock:
            held, entries = self.current
            if generation != held or len(entries) >= _DECISIONS_MAX:
                entries = {}
                self.current = (generation, entries)
            entries[key] = value


_decisions = _Decisions()


def generation(db: Database) -> str:
    """The current auth generation. On SQLite, unchanged while the sentinel's bytes are (a read of this process's
    mapping of it: no system call, no query); else one indexed read on a pooled driver connection, below
    SQLAlchemy's result machinery, as it is on every request."""
    sentinel = db.sentinel
    if sentinel is None:
        return _read_generation(db)
    view = _views.get(sentinel)
    if view is None:
        view = _views.setdefault(sentinel, _SentinelView(sentinel))
    mapped = view.mapping()
    if mapped is None:
        return _read_generation(db)
    seen = mapped[:SENTINEL_SIZE]
    cached = view.cached
    if cached is not None and cached[0] == seen:
        return cached[1]
    value = _read_generation(db)
    view.cached = (seen, value)  # read after the bytes: a change between them is seen again at the next read
    return value


class _SentinelView:
    """This process's shared, read-only mapping of a sentinel file, and the generation read under its bytes. A
    writer rewrites the bytes in place, which every mapping of the file shows at once; a file replaced or removed
    behind the writers' back (a restore) is found by a `stat` every SENTINEL_RECHECK seconds, and mapped again."""

    def __init__(self, path: str):
        self.path = path
        self.ident: tuple[int, int] | None = None  # (device, inode) of the file mapped
        self.map: mmap.mmap | None = None
        self.checked = float("-inf")  # monotonic time of the last stat
        self.cached: tuple[bytes, str] | None = None  # (the bytes, the generation read under them), set as one

    def mapping(self) -> mmap.mmap | None:
        """The current mapping, None when there is no usable file (then every read queries)."""
        now = time.monotonic()
        if now - self.checked >= SENTINEL_RECHECK:
            self.checked = now
            self._remap()
        return self.map

    def _remap(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError:
            self.map, self.ident, self.cached = None, None, None
            return
        if (st.st_dev, st.st_ino) == self.ident and self.map is not None:
            return
        self.map, self.ident, self.cached = None, None, None
        if st.st_size < SENTINEL_SIZE:
            return
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except OSError:
            return
        try:
            st = os.fstat(fd)
            # An old mapping is left to the collector, not closed: another thread may be reading it.
            self.map = mmap.mmap(fd, SENTINEL_SIZE, prot=mmap.PROT_READ)
            self.ident = (st.st_dev, st.st_ino)
        except (OSError, ValueError):
            pass
        finally:
            os.close(fd)


def _read_generation(db: Database) -> str:
    conn = db.engine.raw_connection()
    try:
        cursor = conn.cursor()
        cursor.execute(_GENERATION_QUERY)
        row = cursor.fetchone()
        cursor.close()
    finally:
        conn.close()  # back to the pool
    return str(row[0]) if row and row[0] else ""


def changed(s: Session) -> None:
    """Record, in the writer's transaction, that who may do what has changed (see GENERATION_KEY); once it commits,
    rewrite the sentinel so every process looks again."""
    s.execute(update(Setting).where(Setting.key == GENERATION_KEY).values(value=uuid.uuid4().hex))
    sentinel = sentinel_of(s.get_bind())
    if sentinel is not None and not sa_event.contains(s, "after_commit", _bump_sentinel):
        sa_event.listen(s, "after_commit", _bump_sentinel, once=True)


def _bump_sentinel(s: Session) -> None:
    """After the commit (a reader that saw the new bytes before it would cache the old generation)."""
    bump_sentinel(sentinel_of(s.get_bind()))


def bump_sentinel(path: str | None) -> None:
    """Write new bytes over the sentinel (made when missing), in place: every process's mapping shows them."""
    if path is None:
        return
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.pwrite(fd, os.urandom(SENTINEL_SIZE), 0)
        finally:
            os.close(fd)
    except OSError as e:  # readers then keep the generation they hold: say so loudly
        log.error("cannot write %s: %s; changes of rights are not seen by other processes", path, e.strerror)


# sentinel path -> this process's view of it
_views: dict[str, _SentinelView] = {}


# sha256(kind NUL name NUL password) -> (the stored hash it matched, when): only pairs that passed bcrypt.
_verified: dict[bytes, tuple[str, float]] = {}
_verified_lock = threading.Lock()


def _check_secret(name: str, password: str, stored: str | None) -> bool:
    """Whether `password` matches the stored hash; a recent success for the same hash skips bcrypt."""
    from registry.model.users import check_password, dummy_check

    if stored is None:
        dummy_check(password)  # as slow as a real check, so timing does not tell which names exist
        return False
    key = hashlib.sha256(name.encode() + b"\0" + password.encode() + b"\0" + stored.encode()).digest()
    now = time.monotonic()
    with _verified_lock:
        hit = _verified.get(key)
    if hit is not None and hit[0] == stored and now - hit[1] < _VERIFIED_TTL:
        return True
    if not check_password(password, stored):
        return False
    with _verified_lock:
        if len(_verified) >= _VERIFIED_MAX:
            _verified.clear()
        _verified[key] = (stored, now)
    return True


def authenticate(db: Database, username: str, password: str) -> Principal | None:
    """The user or robot these credentials name, or None when they are wrong, expired or disabled."""
    if not username or not password:
        return None
    with db.session() as s:
        if username.startswith(ROBOT_PREFIX):
            robot = s.scalars(select(Robot).where(Robot.name == username)).first()
            if not _check_secret(username, password, robot.secret_hash if robot else None) or robot is None:
                return None
            if robot.disabled or (robot.expires_at != -1 and robot.expires_at <= time.time()):
                return None
            return robot_principal(s, robot)
        user = s.scalars(select(User).where(User.username == username)).first()
        if not _check_secret(username, password, user.password_hash if user else None) or user is None:
            return None
        return Principal(user.username, user_id=user.id, sysadmin=user.sysadmin)


def robot_principal(s, robot: Robot) -> Principal:
    """A robot's Principal: its Harbor permission list reduced to rights per project name."""
    from registry.model.robots import rights_of

    return Principal(robot.name, robot_id=robot.id, permissions=rights_of(s, robot),
                     expires_at=robot.expires_at)


def principal_by_name(db: Database, name: str, gen: str | None = None) -> Principal | None:
    """The current Principal of a user or robot by name (a token's subject), None if gone, disabled or expired
    (cached per generation; a robot's expiry checked at each call)."""
    gen = gen if gen is not None else generation(db)
    key = ("principal", name)
    hit = _decisions.get(gen, key)
    if hit is None:
        with db.session() as s:
            if name.startswith(ROBOT_PREFIX):
                robot = s.scalars(select(Robot).where(Robot.name == name)).first()
                found = None if robot is None or robot.disabled else robot_principal(s, robot)
            else:
                user = s.scalars(select(User).where(User.username == name)).first()
                found = Principal(user.username, user_id=user.id, sysadmin=user.sysadmin) if user else None
        hit = (found,)
        _decisions.put(gen, key, hit)
    return None if hit[0] is None or hit[0].expired() else hit[0]


# decided(gen, key): what remember() kept for `key` under this generation, None when nothing. The method itself, not a
# function calling it: that would be one more Python call on every request with a bearer token.
decided = _decisions.get


def remember(gen: str, key: tuple, value) -> None:
    """Keep a decision made under this generation (dropped with it)."""
    _decisions.put(gen, key, value)


def login(db: Database, username: str, password: str, remote_addr: str, gen: str | None = None) -> Principal | None:
    """authenticate() with throttling per (username, remote address); raises LoginThrottled when locked out.

    Credentials that succeeded under the current generation are accepted again without reading the database
    (robots' expiry is still checked): only wrong passwords can be guesses, and each of those is counted."""
    gen = gen if gen is not None else generation(db)
    key = ("login", hashlib.sha256(username.encode() + b"\0" + password.encode()).digest())
    hit = _decisions.get(gen, key)
    if hit is not None and not hit[0].expired():
        return hit[0]
    addr = (remote_addr or "")[:64]
    name = username[:255]
    with db.session() as s:
        row = s.get(LoginFailure, (name, addr))
        if row is not None and row.count >= FAILURE_LIMIT:
            left = row.last_at + FAILURE_WINDOW - time.time()
            if left > 0:
                raise LoginThrottled(int(left) + 1)
    principal = authenticate(db, username, password)
    if principal is not None:
        if row is not None:
            with db.session() as s:
                s.execute(delete(LoginFailure).where(LoginFailure.username == name, LoginFailure.remote_addr == addr))
        _decisions.put(gen, key, (principal,))
        return principal
    _record_failure(db, name, addr)
    return None


def rights_in(db: Database, principal: Principal | None, project_name: str,
              gen: str | None = None) -> frozenset[str] | None:
    """project_rights() in the project of this name, None when there is no such project (cached per generation)."""
    from registry.model.projects import find

    gen = gen if gen is not None else generation(db)
    key = ("rights", principal, project_name)
    hit = _decisions.get(gen, key)
    if hit is not None:
        return hit[0]
    with db.session() as s:
        project = find(s, project_name, True)
    rights = None if project is None else project_rights(db, principal, project)
    _decisions.put(gen, key, (rights,))
    return rights


def content_trust(db: Database, project_name: str, gen: str | None = None) -> bool:
    """Whether the project wants a signature on every pull (cached per generation: metadata writes change it)."""
    gen = gen if gen is not None else generation(db)
    key = ("trust", project_name)
    hit = _decisions.get(gen, key)
    if hit is None:
        with db.session() as s:
            hit = (bool(s.scalar(select(Project.content_trust).where(Project.name == project_name))),)
        _decisions.put(gen, key, hit)
    return hit[0]


def _record_failure(db: Database, name: str, addr: str) -> None:
    now = time.time()
    try:
        with db.session() as s:
            row = s.get(LoginFailure, (name, addr), with_for_update=True)
            if row is None:
                s.add(LoginFailure(username=name, remote_addr=addr, count=1, last_at=now))
            else:
                row.count = 1 if now - row.last_at > FAILURE_WINDOW else row.count + 1
                row.last_at = now
    except IntegrityError:  # another worker inserted the first failure at the same moment: count one more
        with db.session() as s:
            row = s.get(LoginFailure, (name, addr), with_for_update=True)
            if row is not None:
                row.count += 1
                row.last_at = now


def project_rights(db: Database, principal: Principal | None, project: Project) -> frozenset[str]:
    """The rights (registry.model.roles.RIGHTS' names) `principal` (None: anonymous) holds in `project`."""
    public = frozenset({"pull"}) if project.public else frozenset()
    if principal is None:
        return public
    if principal.sysadmin:
        return ALL_RIGHTS
    if principal.robot_id is not None:
        granted: frozenset[str] = frozenset()
        for namespace, rights in principal.permissions:
            if namespace in (project.name, "*"):
                granted |= rights
        return granted | public
    if principal.user_id is None:
        return public
    with db.session() as s:
        role = s.scalars(select(Member.role).where(Member.project_id == project.id,
                                                   Member.user_id == principal.user_id)).first()
    return roles.RIGHTS.get(role, frozenset()) | public if role is not None else public
