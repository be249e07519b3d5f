"""The audit log: who did what to which resource, from which address; recorded, queried and exported."""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy import Connection, Select

    from registry.model.db import Database
    from registry.model.tables import AuditLog

EXPORT_BATCH = 500  # rows read per query while exporting, so an export never holds the whole log


@dataclass(frozen=True)
class AuditQuery:
    """Which entries: each set field narrows the query (resource and username are exact, or fuzzy: contained)."""

    operation: tuple[str, ...] = ()
    resource: str | None = None
    resource_fuzzy: bool = False
    resource_type: str | None = None
    username: str | None = None
    username_fuzzy: bool = False
    since: float | None = None
    until: float | None = None
    project_ids: tuple[int, ...] | None = None  # None: every project (and entries of none)


# row()'s order: the columns every entry is written with.
COLUMNS = ("op_time", "username", "operation", "resource_type", "resource", "project_id", "remote_addr")
# Rows per INSERT on SQLite (each row binds len(COLUMNS) variables, far below SQLite's limit of 32766).
_SQLITE_ROWS = 256


def row(operation: str, resource_type: str, resource: str, username: str, remote_addr: str,
        project_id: int | None, when: float) -> tuple:
    """One entry's column values in COLUMNS' order, cut to the columns' sizes (written in bulk by write())."""
    return (when, username[:255], operation[:32], resource_type[:32], resource[:1024], project_id, remote_addr[:64])


def write(conn: Connection, rows: list[tuple], alike: Sequence[tuple[tuple, list[float]]] = ()) -> None:
    """Insert entries on the session's connection: `rows` (row()'s tuples), and `alike`: groups of entries that share
    all but their time (row()'s tuple without its time, and their times), as a batch's pulls of one artifact by one
    client. A pull is an entry, so on SQLite they go to the driver directly, as multi-row INSERTs: SQLAlchemy's
    parameter processing per row costs more than the insert, and the driver's executemany lets go of the GIL around
    each row, which in a busy gevent worker (the flusher writes on a thread) hands the GIL to the requests' loop and
    back once per row. A group's shared columns are bound once per statement, not once per entry: binding a string
    copies it, which cost about as much as inserting the row. Other drivers get SQLAlchemy's insert, batched into
    multi-row statements (one round trip for many rows)."""
    if conn.dialect.paramstyle == "qmark":
        for start in range(0, len(rows), _SQLITE_ROWS):
            chunk = rows[start:start + _SQLITE_ROWS]
            conn.exec_driver_sql(_qmark_insert(len(chunk)), tuple(itertools.chain.from_iterable(chunk)))
        for shared, times in alike:
            for start in range(0, len(times), _SQLITE_ROWS):
                some = times[start:start + _SQLITE_ROWS]
                conn.exec_driver_sql(_qmark_insert_alike(len(some)), (*shared, *some))
    else:
        from sqlalchemy import insert

        from registry.model.tables import AuditLog
        every = [*rows, *((when, *shared) for shared, times in alike for when in times)]
        conn.execute(insert(AuditLog), [dict(zip(COLUMNS, r, strict=True)) for r in every])


@functools.cache
def _qmark_insert(rows: int) -> str:
    """SQLite's INSERT of this many entries."""
    values = f"({', '.join('?' * len(COLUMNS))})"
    return f"INSERT INTO audit_logs ({', '.join(COLUMNS)}) VALUES {', '.join([values] * rows)}"


@functools.cache
def _qmark_insert_alike(rows: int) -> str:
    """SQLite's INSERT of this many entries alike but for their times: the shared columns' parameters (COLUMNS but
    the first) come first, then the times (the VALUES list's column1)."""
    shared = ", ".join("?" * (len(COLUMNS) - 1))
    return (f"INSERT INTO audit_logs ({', '.join(COLUMNS)}) SELECT column1, {shared} "
            f"FROM (VALUES {', '.join(['(?)'] * rows)})")


def _select(q: AuditQuery) -> Select:
    from sqlalchemy import select

    from registry.model.tables import AuditLog
    stmt = select(AuditLog)
    if q.operation:
        stmt = stmt.where(AuditLog.operation.in_(q.operation))
    for column, value, fuzzy in ((AuditLog.resource, q.resource, q.resource_fuzzy),
                                 (AuditLog.username, q.username, q.username_fuzzy)):
        if value is not None:
            stmt = stmt.where(column.contains(value, autoescape=True) if fuzzy else column == value)
    if q.resource_type is not None:
        stmt = stmt.where(AuditLog.resource_type == q.resource_type)
    if q.since is not None:
        stmt = stmt.where(AuditLog.op_time >= q.since)
    if q.until is not None:
        stmt = stmt.where(AuditLog.op_time <= q.until)
    if q.project_ids is not None:
        stmt = stmt.where(AuditLog.project_id.in_(q.project_ids))
    return stmt


def query(db: Database, q: AuditQuery, offset: int = 0, limit: int = 10) -> tuple[list[AuditLog], int]:
    """One page of matching entries, newest first, and how many match in all."""
    from sqlalchemy import func, select

    from registry.model.tables import AuditLog
    stmt = _select(q)
    with db.session() as s:
        total = s.scalar(select(func.count()).select_from(stmt.subquery())) or 0
        rows = s.scalars(stmt.order_by(AuditLog.op_time.desc(), AuditLog.id.desc()).offset(offset)
                         .limit(limit)).all()
    return list(rows), total


def entry(row: AuditLog) -> dict:
    """An entry as Harbor's AuditLog (plus our remote_addr and project_id)."""
    from registry.api.common import rfc3339
    return {"id": row.id, "username": row.username, "resource": row.resource, "resource_type": row.resource_type,
            "operation": row.operation, "op_time": rfc3339(row.op_time), "remote_addr": row.remote_addr,
            "project_id": row.project_id}


def export_jsonl(db: Database, q: AuditQuery) -> Iterator[str]:
    """Every matching entry, oldest first, as JSON lines; read in batches (keyset on time then id: pulls are written
    in batches after the fact, so ids alone are not in time order), each batch its own session."""
    from sqlalchemy import and_, or_

    from registry.model.tables import AuditLog
    after: tuple[float, int] | None = None
    while True:
        stmt = _select(q)
        if after is not None:
            stmt = stmt.where(or_(AuditLog.op_time > after[0], and_(AuditLog.op_time == after[0],
                                                                    AuditLog.id > after[1])))
        with db.session() as s:
            rows = s.scalars(stmt.order_by(AuditLog.op_time, AuditLog.id).limit(EXPORT_BATCH)).all()
            lines = [json.dumps(entry(r), separators=(",", ":")) + "\n" for r in rows]
        if not rows:
            return
        after = (rows[-1].op_time, rows[-1].id)
        yield from lines

