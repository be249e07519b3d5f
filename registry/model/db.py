"""The metadata database: an engine for `database.url` (SQLite in the registry root by default) and sessions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine
from sqlalchemy.orm import Session, sessionmaker

from registry.model.tables import Base


def default_url(root: str) -> str:
    """SQLite in the registry's root directory."""
    return "sqlite:///" + os.path.join(os.path.abspath(root), "registry.db")


class Database:
    """One engine and its session factory; `session()` is a unit of work committed on success."""

    def __init__(self, url: str):
        self.url = url
        self.engine = create_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest version."""
        Base.metadata.create_all(self.engine)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session committed when the block ends normally, rolled back when it raises."""
        with self._sessions() as s, s.begin():
            yield s
