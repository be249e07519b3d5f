"""The loaded project: the compose model after include, extends, merge, interpolation, profiles and normalization."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class ProjectOptions:
    """How to find and read a project (the global options of `dockyard compose`)."""

    files: list[str] = field(default_factory=list)  # -f, in order; empty: compose.yaml & co. in the working dir
    project_name: str | None = None  # -p
    project_directory: str | None = None  # --project-directory; default: the first file's directory
    env_files: list[str] = field(default_factory=list)  # --env-file; empty: <project dir>/.env if present
    profiles: list[str] = field(default_factory=list)  # --profile, plus COMPOSE_PROFILES
    environ: dict[str, str] | None = None  # the process environment (None: os.environ)


@dataclass
class Project:
    """A resolved project: every mapping here is in the canonical form `docker compose config` prints."""

    name: str
    working_dir: str  # the project directory (absolute)
    files: list[str]  # the compose files read, absolute, in order
    services: dict[str, dict[str, Any]]  # the services enabled by the active profiles
    disabled: dict[str, dict[str, Any]]  # services whose profiles are not active (`run SERVICE` may start one)
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)
    secrets: dict[str, dict[str, Any]] = field(default_factory=dict)
    configs: dict[str, dict[str, Any]] = field(default_factory=dict)
    environment: dict[str, str] = field(default_factory=dict)  # the variables interpolation used (.env + process)

    def service(self, name: str) -> dict[str, Any]:
        """A service by name, enabled or not; ComposeError naming it when the project has none."""
        from compose.errors import ComposeError

        found = self.services.get(name) or self.disabled.get(name)
        if found is None:
            raise ComposeError(f"no such service: {name}")
        return found
