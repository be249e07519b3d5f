"""`run`: a one-off container of a service (its dependencies started first), attached or detached."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import images, labels
from compose.convert import image_name
from compose.engine import UpOptions
from compose.errors import ComposeError
from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from compose.engine import Compose
    from dockyard.api.containers import Container


@dataclass
class RunOptions:
    """`run`'s switches."""

    service: str
    command: list[str] = field(default_factory=list)  # empty: the service's command
    name: str | None = None
    entrypoint: str | None = None
    environment: list[str] = field(default_factory=list)  # K=V, added to the service's
    user: str | None = None
    workdir: str | None = None
    publish: list[str] = field(default_factory=list)  # -p specs
    service_ports: bool = False
    no_deps: bool = False
    tty: bool = False
    interactive: bool = True
    remove: bool = False
    detach: bool = False
    build: str = "auto"


def create(compose: Compose, opts: RunOptions) -> Container:
    """Start the service's dependencies (unless no_deps) and create its one-off container."""
    spec = compose.project.service(opts.service)
    deps = [d for d in (spec.get("depends_on") or {}) if d in compose.project.services]
    if deps and not opts.no_deps:
        compose.up(UpOptions(services=deps, build=opts.build))
    images.ensure(compose, [opts.service], opts.build)
    compose.ensure_resources([opts.service])
    overrides: dict[str, Any] = {"tty": opts.tty, "stdin_open": opts.interactive, "restart_policy": None}
    if opts.command:
        overrides["command"] = opts.command
    if opts.entrypoint is not None:
        import shlex

        overrides["entrypoint"] = shlex.split(opts.entrypoint)
    if opts.environment:
        env = {k: v for k, v in (spec.get("environment") or {}).items() if v is not None}
        for item in opts.environment:
            key, eq, value = item.partition("=")
            if eq:
                env[key] = value
            elif key in os.environ:
                env[key] = os.environ[key]
        overrides["environment"] = env
    if opts.user is not None:
        overrides["user"] = opts.user
    if opts.workdir is not None:
        overrides["working_dir"] = opts.workdir
    if opts.name:
        overrides["name"] = opts.name
    if opts.publish:
        overrides["ports"] = _publish(opts.publish)
    suffix = os.urandom(6).hex()
    image_id = compose.client.images.get(image_name(compose.project, opts.service)).id
    c = compose.create_container(opts.service, 1, labels.config_hash(spec), image_id, oneoff=suffix,
                                 overrides=overrides, publish=opts.service_ports)
    return c


def run(compose: Compose, opts: RunOptions) -> tuple[Container, int]:
    """Create and run the one-off container: detached (status 0) or attached until it exits (its status)."""
    c = create(compose, opts)
    try:
        if opts.detach:
            c.start()
            return c, 0
        code = c.start_attached(opts.interactive)
    except DockyardError as e:
        if opts.remove or opts.detach:
            c.remove(force=True)
        raise ComposeError(f"service {opts.service}: {e}") from None
    if opts.remove:
        c.remove(force=True)
    return c, code


def _publish(specs: list[str]) -> dict[str, list[Any]]:
    """-p `[IP:][HOST:]CTR[/PROTO]` specs as docker-py's ports mapping."""
    out: dict[str, list[Any]] = {}
    for spec in specs:
        rest, _, proto = spec.partition("/")
        parts = rest.split(":")
        if len(parts) > 3 or not parts[-1]:
            raise ComposeError(f"invalid port {spec!r}: want [IP:][HOST:]CONTAINER[/PROTO]")
        host: Any = None
        if len(parts) == 2:
            host = parts[0]
        elif len(parts) == 3:
            host = (parts[0], parts[1] or None)
        out.setdefault(f"{parts[-1]}/{proto or 'tcp'}", []).append(host)
    return out
