"""`ls`: the compose projects that have containers in the store, with their states and config files."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from compose import labels

if TYPE_CHECKING:
    from dockyard.api import Client


@dataclass
class ProjectSummary:
    """One project as `docker compose ls` shows it."""

    name: str
    status: str  # `running(2)`, `exited(1), running(1)`
    config_files: str

    def as_json(self) -> dict[str, str]:
        """The object `ls --format json` prints."""
        return {"Name": self.name, "Status": self.status, "ConfigFiles": self.config_files}


def projects(client: Client, all: bool = False) -> list[ProjectSummary]:
    """Projects with a running container (with `all`, any container), by name."""
    states: dict[str, Counter[str]] = {}
    files: dict[str, str] = {}
    for c in client.containers.list(all=True, filters={"label": [labels.PROJECT]}):
        name = c.labels[labels.PROJECT]
        states.setdefault(name, Counter())[c.status] += 1
        files.setdefault(name, c.labels.get(labels.CONFIG_FILES, ""))
    return [ProjectSummary(name, ", ".join(f"{s}({n})" for s, n in sorted(states[name].items())), files[name])
            for name in sorted(states) if all or states[name]["running"]]
