"""`compose config`'s output: the resolved model as YAML or JSON in docker compose's key order, and the name lists
(`--services`, `--volumes`, `--networks`, `--profiles`, `--images`)."""

from __future__ import annotations

import json
from typing import Any

from compose import schema
from compose.errors import ComposeError, quoted
from compose.model import Project

# Mappings whose keys are the user's names (sorted in the output); every other mapping keeps the canonical order.
_NAMED_MAPS = frozenset({"environment", "labels", "annotations", "sysctls", "depends_on", "networks", "ulimits",
                         "args", "driver_opts", "options", "storage_opt"})
_BYTES = frozenset({"mem_limit", "mem_reservation", "memswap_limit", "shm_size", "memory", "size"})
_SECTION_ORDER = {"networks": schema.NETWORK_ORDER, "volumes": schema.VOLUME_ORDER, "secrets": schema.SECRET_ORDER,
                  "configs": schema.SECRET_ORDER}


def config_text(project: Project, fmt: str) -> str:
    """The whole model, as `docker compose config` prints it."""
    model = document(project)
    if fmt == "json":
        return json.dumps(model, indent=2, ensure_ascii=False) + "\n"
    if fmt != "yaml":
        raise ComposeError(f"unknown format {quoted(fmt)} (want yaml or json)")
    import yaml

    class Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> Any:
            return super().increase_indent(flow, False)  # lists indented under their key, as docker compose

        def choose_scalar_style(self) -> Any:
            style = super().choose_scalar_style()
            return '"' if style == "'" else style  # Go's YAML quotes with double quotes

    def text_scalar(dumper: Dumper, value: str) -> Any:
        # Go's YAML writes a multi-line string as a literal block (`|-`)
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)

    Dumper.add_representer(str, text_scalar)
    text: str = yaml.dump(model, Dumper=Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True,
                          width=1 << 30)
    return text


def document(project: Project) -> dict[str, Any]:
    """The model as one ordered mapping: name, services (sorted, keys sorted), networks, volumes, secrets, configs."""
    out: dict[str, Any] = {"name": project.name}
    out["services"] = {name: {key: _ordered(key, svc[key]) for key in sorted(svc)}
                       for name, svc in sorted(project.services.items())}
    for section in ("networks", "volumes", "secrets", "configs"):
        entries = getattr(project, section)
        if entries:
            out[section] = {key: _ordered("", schema.ordered(spec, _SECTION_ORDER[section]))
                            for key, spec in sorted(entries.items())}
    out.update((key, _sorted(value)) for key, value in sorted(project.extensions.items()))
    return out


def _sorted(value: Any) -> Any:
    """An extension's value as Go prints a map[string]any: every mapping's keys sorted."""
    if isinstance(value, dict):
        return {k: _sorted(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _ordered(key: str, value: Any) -> Any:
    if key.startswith("x-"):
        return _sorted(value)
    if key in _BYTES and isinstance(value, int):
        return str(value)  # compose-go prints byte counts as strings (UnitBytes)
    if key == "extra_hosts":
        return sorted(h.replace(":", "=", 1) for h in value)  # compose-go prints `host=ip`, sorted
    if key in ("secrets", "configs") and isinstance(value, list):
        # compose-go prints a file mode in octal, as a string ("0440"); the model keeps the number
        return [{k: f"0{v:o}" if k == "mode" else v for k, v in entry.items()} for entry in value]
    if isinstance(value, dict):
        items = sorted(value.items()) if key in _NAMED_MAPS else value.items()
        return {k: _ordered(k, v) for k, v in items}
    if isinstance(value, list):
        return [_ordered("", v) for v in value]
    return value


def names(project: Project, what: str) -> list[str]:
    """One listing of `config --services/--volumes/--networks/--profiles/--images`."""
    if what == "services":
        return dependency_order(project.services)
    if what in ("volumes", "networks"):
        return sorted(getattr(project, what))
    if what == "profiles":
        every = {**project.services, **project.disabled}.values()
        return sorted({p for svc in every for p in svc.get("profiles", [])})
    if what == "images":
        return [project.image_name(name) for name in sorted(project.services)]
    raise ComposeError(f"unknown listing {quoted(what)}")


def dependency_order(services: dict[str, dict[str, Any]]) -> list[str]:
    """Service names, each after what it depends on (names in order where the graph leaves a choice)."""
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        if name in seen or name not in services:
            return
        seen.add(name)
        for dep in sorted(services[name].get("depends_on", {})):
            visit(dep)
        order.append(name)

    for name in sorted(services):
        visit(name)
    return order
