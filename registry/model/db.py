"""The metadata database: an engine for `database.url` (SQLite in the registry root by default), sessions and
schema migrations (Alembic, registry.model.migrations)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, event, insert, select, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from dockyard.errors import DockyardError

# pg_advisory_lock's key for schema migrations and first-start setup: any constant shared by every replica.
_PG_LOCK_KEY = 0x646F636B  # "dock"
_MIGRATIONS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "migrations")


def default_url(root: str) -> str:
    """SQLite in the registry's root directory."""
    return "sqlite:///" + os.path.join(os.path.abspath(root), "registry.db")


class Database:
    """One engine and its session factory; `session()` is a unit of work committed on success."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url, pool_pre_ping=not url.startswith("sqlite"))
        if self.engine.dialect.name == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # For a SQLite file: a file whose bytes are rewritten after every committed change of the auth generation,
        # so readers in every process on this host compare their mapping of it instead of querying (see
        # registry.model.access.generation); None for other databases. Kept, not derived on each read: every request
        # reads it.
        self.sentinel: str | None = sentinel_of(self.engine)
        # gunicorn's master builds the app (and this engine) once, then forks its workers: a pooled connection
        # used by two processes corrupts both, so a child drops the parent's pool without closing its sockets.
        ref = weakref.ref(self)
        os.register_at_fork(after_in_child=lambda: _dispose_in_child(ref))

    def migrate(self) -> None:
        """Bring the schema to the newest version, one process at a time (replicas and workers may start at once)."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", _MIGRATIONS)
        with self.exclusive() as conn:
            config.attributes["connection"] = conn  # migrations/env.py runs on it (Alembic's shared-connection way)
            command.upgrade(config, "head")
            from registry.model.access import GENERATION_KEY, SENTINEL_SIZE, bump_sentinel
            from registry.model.tables import Setting
            if conn.execute(select(Setting.key).where(Setting.key == GENERATION_KEY)).first() is None:
                conn.execute(insert(Setting).values(key=GENERATION_KEY, value="0"))  # we hold the lock: no race
            conn.commit()
            if self.sentinel is not None and _size(self.sentinel) < SENTINEL_SIZE:  # none yet, or an older kind
                bump_sentinel(self.sentinel)

    @contextmanager
    def exclusive(self) -> Iterator[Connection]:
        """A connection held while no other process (worker or replica) is inside its own `exclusive()` block."""
        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as conn:
                conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
                try:
                    yield conn
                finally:
                    conn.rollback()
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                    conn.commit()
            return
        from dockyard.fsutil import locked

        path = self.engine.url.database
        lock = (path + ".lock") if path and path != ":memory:" else None
        if lock is None:
            with self.engine.connect() as conn:
                yield conn
            return
        with locked(lock), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends normally, rolled back when it raises."""
        with self._sessions() as s, s.begin():
            yield s


def sentinel_of(bind: Engine | Connection) -> str | None:
    """The generation sentinel's path for this engine's (or connection's) database (see Database.sentinel)."""
    path = bind.engine.url.database
    if bind.dialect.name != "sqlite" or not path or path == ":memory:":
        return None
    return path + ".generation"


def _size(path: str) -> int:
    """The file's size, -1 when there is none."""
    try:
        return os.stat(path).st_size
    except OSError:
        return -1


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    """WAL so readers never wait for a writer, a busy timeout so writers queue rather than fail, and foreign keys
    (SQLite ignores them unless told, and the tables' cascades depend on them)."""
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _dispose_in_child(ref: weakref.ref) -> None:
    db = ref()
    if db is not None:
        engine: Engine = db.engine
        engine.dispose(close=False)


class DatabaseError(DockyardError):
    """The metadata database cannot be used: its URL names no supported database, or its server refuses."""


def open_database(url: str) -> Database:
    """The database at `url`, migrated; DatabaseError in one line (password hidden) when that fails."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

    try:
        shown = make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        raise DatabaseError("database.url: not a URL such as postgresql+psycopg://user@host/db") from None
    if make_url(url).get_backend_name() not in ("sqlite", "postgresql"):
        raise DatabaseError(f"database.url {shown}: only sqlite and postgresql are supported")
    try:
        db = Database(url)
        db.migrate()
    except (NoSuchModuleError, ImportError) as e:
        raise DatabaseError(f"database.url {shown}: no driver for it ({e})") from None
    except SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise DatabaseError(f"database {shown}: {reason}") from None
    return db
