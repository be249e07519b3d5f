"""Helpers for the compose tests: projects in the shape the loader returns."""

from __future__ import annotations

from compose.model import Project


def make_project(tmp_path, services: dict, name: str = "proj", networks: dict | None = None,
                 volumes: dict | None = None, **more) -> Project:
    """A Project as the loader returns it: every service on `default` unless it says otherwise."""
    for svc in services.values():
        if "network_mode" not in svc:
            svc.setdefault("networks", {"default": None})
    nets = dict(networks or {})
    if any("default" in (s.get("networks") or {}) for s in services.values()):
        nets.setdefault("default", {"name": f"{name}_default"})
    return Project(name=name, working_dir=str(tmp_path), files=[str(tmp_path / "compose.yaml")],
                   services=services, disabled={}, networks=nets, volumes=dict(volumes or {}), **more)
