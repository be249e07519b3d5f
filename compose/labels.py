"""The com.docker.compose.* labels that tie containers, networks and volumes to a project, and the config hash."""

from __future__ import annotations

import hashlib
import json
from typing import Any

PROJECT = "com.docker.compose.project"
SERVICE = "com.docker.compose.service"
NUMBER = "com.docker.compose.container-number"
ONEOFF = "com.docker.compose.oneoff"
CONFIG_HASH = "com.docker.compose.config-hash"
WORKING_DIR = "com.docker.compose.project.working_dir"
CONFIG_FILES = "com.docker.compose.project.config_files"
DEPENDS_ON = "com.docker.compose.depends_on"
IMAGE = "com.docker.compose.image"
VERSION = "com.docker.compose.version"
NETWORK = "com.docker.compose.network"
VOLUME = "com.docker.compose.volume"
COMPOSE_VERSION = "2.29.0"  # the docker compose release whose behaviour this package follows

# Keys that do not change a running container, so changing them must not recreate it (compose v2's ServiceHash).
_UNHASHED = ("build", "pull_policy", "scale", "depends_on", "profiles")


def config_hash(service: dict[str, Any]) -> str:
    """The sha256 of the service's canonical JSON, less the keys that do not shape its container."""
    shaped = {k: v for k, v in service.items() if k not in _UNHASHED}
    if "deploy" in shaped:
        shaped["deploy"] = {k: v for k, v in shaped["deploy"].items() if k != "replicas"}
    text = json.dumps(shaped, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def depends_on(service: dict[str, Any]) -> str:
    """The depends_on label: `svc:condition:restart` items joined by commas, as docker compose writes it."""
    return ",".join(f"{name}:{dep.get('condition', 'service_started')}:{str(bool(dep.get('restart'))).lower()}"
                    for name, dep in sorted((service.get("depends_on") or {}).items()))


def project_filter(project: str, *more: str) -> dict[str, str | list[str]]:
    """A `label` filter for containers.list: this project's objects (and the extra `key=value` terms)."""
    return {"label": [f"{PROJECT}={project}", *more]}
