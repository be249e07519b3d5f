"""What happened in the registry (push, pull, delete, quota exceeded, ...): one Event, fanned out to the audit log
and to the projects' webhooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from registry.model.db import Database


@dataclass(frozen=True)
class Event:
    """One thing that happened: `type` is Harbor's event type (PUSH_ARTIFACT, PULL_ARTIFACT, DELETE_ARTIFACT,
    QUOTA_EXCEED, TAG_RETENTION, ...); `resources` are Harbor's event_data.resources entries."""

    type: str
    project: str
    repository: str = ""
    operator: str = ""
    remote_addr: str = ""
    resources: tuple[dict, ...] = ()
    extra: dict = field(default_factory=dict)  # e.g. {"message": ...} for QUOTA_EXCEED, retention results
    time: float = 0.0


def emit(db: Database, event: Event) -> None:
    """Record `event` in the audit log and queue it for the project's webhooks."""
