"""Scheduled policies (retention, replication): which runs are due, each claimed by one process."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from sqlalchemy import update

from registry.model.cron import Cron, CronError

if TYPE_CHECKING:
    from registry.model.db import Database


def claim_due(db: Database, table: Any, scheduled: Iterable[tuple[int, str, float]], now: float) -> list[int]:
    """The ids of the `scheduled` policies (id, cron, last run) of `table` whose time has come and that this
    process claimed: of several schedulers (workers, replicas) only one moves `last_run` from what it read."""
    claimed = []
    for policy_id, schedule, last_run in scheduled:
        try:
            upcoming = Cron.parse(schedule).next_after(last_run)
        except CronError:
            continue
        if upcoming is None or upcoming > now:
            continue
        with db.session() as s:
            rows = s.execute(update(table).where(table.id == policy_id, table.last_run == last_run)
                             .values(last_run=now)).rowcount  # type: ignore[attr-defined]
        if rows == 1:
            claimed.append(policy_id)
    return claimed
