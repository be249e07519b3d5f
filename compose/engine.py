"""Convergence: bring a project's containers, networks and volumes to what its model says (up), or away (down)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from compose import graph, images, labels, resources
from compose.convert import Target, create_args, image_name
from compose.errors import ComposeError
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from compose.model import Project
    from dockyard.api import Client
    from dockyard.api.containers import Container

Say = Callable[[str, str, str], None]  # (kind, name, status): "Container", "p-web-1", "Started"
_LIVE = ("running", "paused", "restarting")
_ACTS_ON = {"start": ("created", "exited", "dead"), "stop": _LIVE, "kill": ("running", "restarting"),
            "pause": ("running",), "unpause": ("paused",), "restart": ("created", "exited", "dead", *_LIVE)}
POLL = 0.2  # seconds between looks at a container waited on


def _quiet(kind: str, name: str, status: str) -> None:
    """Progress nobody asked to see."""


@dataclass
class UpOptions:
    """`up`'s and `create`'s switches."""

    services: list[str] = field(default_factory=list)  # empty: every enabled service
    build: str = "auto"  # auto: build missing images; always (--build); never (--no-build)
    force_recreate: bool = False
    no_recreate: bool = False
    no_deps: bool = False
    scale: dict[str, int] = field(default_factory=dict)
    start: bool = True  # False for `create`
    wait: bool = False
    wait_timeout: float | None = None
    remove_orphans: bool = False
    timeout: float | None = None  # -t: seconds to stop a container being replaced


@dataclass
class Compose:
    """One project over one client; `say` reports progress (the CLI prints it as docker compose does)."""

    client: Client
    project: Project
    say: Say = _quiet
    _created: list[Container] = field(default_factory=list, init=False)  # this run's new ones (undone on failure)

    # --- finding the project's containers ---

    def containers(self, services: list[str] | None = None, stopped: bool = True,
                   oneoff: bool | None = False) -> list[Container]:
        """The project's containers (of these services), by service order then number; oneoff None: both kinds."""
        found = self.client.containers.list(all=stopped, filters=labels.project_filter(self.project.name))
        order = {name: i for i, name in enumerate([*self.project.services, *self.project.disabled])}
        found = [c for c in found if (not services or c.labels.get(labels.SERVICE) in services)
                 and (oneoff is None or (c.labels.get(labels.ONEOFF) == "True") == oneoff)]
        return sorted(found, key=lambda c: (order.get(c.labels.get(labels.SERVICE, ""), len(order)),
                                            c.labels.get(labels.SERVICE, ""), _number(c), c.name))

    def container(self, service: str, index: int = 1) -> Container:
        """The running container `index` of a service (exec, port)."""
        self.project.service(service)
        for c in self.containers([service], stopped=False):
            if _number(c) == index:
                return c
        raise ComposeError(f"service {service!r} is not running" if index == 1
                           else f"service {service!r} has no container with index {index}")

    def orphans(self) -> list[Container]:
        """Containers of the project whose service it no longer defines."""
        known = {*self.project.services, *self.project.disabled}
        return [c for c in self.containers(oneoff=None) if c.labels.get(labels.SERVICE) not in known]

    def _first_container(self, service: str) -> str:
        found = self.containers([service])
        if not found:
            raise ComposeError(f"service {service!r} has no container to refer to")
        return found[0].name

    # --- up ---

    def up(self, opts: UpOptions) -> list[Container]:
        """Create (and start) the services' containers in dependency order; on failure undo what this run made."""
        services = self._selected(opts.services, with_deps=not opts.no_deps)
        images.ensure(self, services, opts.build)
        made_networks: list[str] = []
        made_volumes: list[str] = []
        self._created = []
        try:
            made_networks, made_volumes = self.ensure_resources(services)
            self._handle_orphans(opts.remove_orphans)
            result = []
            for service in services:
                if opts.start:
                    self._await_dependencies(service)
                result += self._converge(service, opts)
            if opts.wait:
                self.wait_ready(result, opts.wait_timeout)
            return result
        except BaseException:
            for c in self._created:
                try:
                    c.remove(force=True, v=True)
                except DockyardError:
                    continue
            resources.remove_networks(self.client, made_networks)
            resources.remove_volumes(self.client, made_volumes)
            raise

    def ensure_resources(self, services: list[str]) -> tuple[list[str], list[str]]:
        """Create the networks and volumes these services use; the names of those made (for an undo)."""
        made_networks = resources.ensure_networks(self.client, self.project,
                                                  resources.used_networks(self.project, services))
        for name in made_networks:
            self.say("Network", name, "Created")
        try:
            made_volumes = resources.ensure_volumes(self.client, self.project,
                                                    resources.used_volumes(self.project, services))
        except BaseException:
            resources.remove_networks(self.client, made_networks)
            raise
        for name in made_volumes:
            self.say("Volume", name, "Created")
        return made_networks, made_volumes

    def _selected(self, names: list[str], with_deps: bool) -> list[str]:
        """The services to act on in start order (named ones may be profile-disabled, as docker compose allows)."""
        every = {**self.project.disabled, **self.project.services}
        return graph.start_order(every, names or list(self.project.services), with_deps)

    def _handle_orphans(self, remove: bool) -> None:
        orphans = [c for c in self.orphans() if c.labels.get(labels.ONEOFF) != "True"]
        if orphans and remove:
            for c in orphans:
                self._stop_remove(c, None, "Removed")
        elif orphans:
            names = ", ".join(c.name for c in orphans)
            self.say("Warning", "", f"Found orphan containers ([{names}]) for this project. If you removed or "
                     "renamed this service in your compose file, you can run this command with the "
                     "--remove-orphans flag to clean it up.")

    def scale_of(self, service: str, opts: UpOptions) -> int:
        """How many containers the service wants (--scale, else scale, else deploy.replicas, else 1)."""
        spec = self.project.service(service)
        scale = opts.scale.get(service, spec.get("scale", (spec.get("deploy") or {}).get("replicas", 1)))
        if scale > 1 and spec.get("container_name"):
            raise ComposeError(f'services.{service}: container_name "{spec["container_name"]}" is unique, '
                               f"so the service cannot be scaled to {scale}")
        return int(scale)

    def _converge(self, service: str, opts: UpOptions) -> list[Container]:
        """Make the service's containers 1..scale current: keep, recreate (hash or image changed) or create."""
        spec = self.project.service(service)
        digest = labels.config_hash(spec)
        image_id = self.client.images.get(image_name(self.project, service)).id
        scale = self.scale_of(service, opts)
        by_number: dict[int, Container] = {}
        for found in self.containers([service]):
            if _number(found) > scale or _number(found) in by_number:
                self._stop_remove(found, opts.timeout, "Removed")
            else:
                by_number[_number(found)] = found
        out = []
        for n in range(1, scale + 1):
            c = by_number.get(n)
            stale = c is not None and (c.labels.get(labels.CONFIG_HASH) != digest or c.attrs["Image"] != image_id)
            if c is not None and (opts.no_recreate or not (opts.force_recreate or stale)):
                if opts.start and c.status in _LIVE:
                    self.say("Container", c.name, "Running")
                elif opts.start:
                    self._start(c)
                out.append(c)
                continue
            if c is not None:
                self.say("Container", c.name, "Recreate")
                self._stop_remove(c, opts.timeout, None)
            new = self.create_container(service, n, digest, image_id)
            self.say("Container", new.name, "Recreated" if c is not None else "Created")
            if opts.start:
                self._start(new)
            out.append(new)
        return out

    def create_container(self, service: str, number: int, digest: str, image_id: str,
                         oneoff: str = "", overrides: dict[str, Any] | None = None,
                         publish: bool = True) -> Container:
        """Create one container of the service with compose's labels (oneoff: a `run` container's suffix)."""
        spec = self.project.service(service)
        name = (f"{self.project.name}-{service}-run-{oneoff}" if oneoff
                else spec.get("container_name") or f"{self.project.name}-{service}-{number}")
        tags = {labels.PROJECT: self.project.name, labels.SERVICE: service, labels.NUMBER: str(number),
                labels.ONEOFF: "True" if oneoff else "False", labels.CONFIG_HASH: digest,
                labels.WORKING_DIR: self.project.working_dir, labels.CONFIG_FILES: ",".join(self.project.files),
                labels.DEPENDS_ON: labels.depends_on(spec), labels.IMAGE: image_id,
                labels.VERSION: labels.COMPOSE_VERSION}
        target = Target(name=name, labels=tags, container_of=self._first_container,
                        secrets_dir=self.secrets_dir(), publish=publish, overrides=overrides or {})
        args = create_args(self.project, service, target)
        try:
            c = self.client.containers.create(args.pop("image"), args.pop("command", None), **args)
        except DockyardError as e:
            raise ComposeError(f"service {service}: {e}") from None
        self._created.append(c)
        return c

    def secrets_dir(self) -> str:
        """Where this project's secrets and configs given as content or environment are written."""
        return os.path.join(self.client.root, "compose", self.project.name)

    def _start(self, c: Container) -> None:
        self.say("Container", c.name, "Starting")
        try:
            c.start()
        except DockyardError as e:
            raise ComposeError(f"service {c.labels.get(labels.SERVICE)}: container {c.name}: {e}") from None
        self.say("Container", c.name, "Started")

    def _stop_remove(self, c: Container, timeout: float | None, status: str | None, volumes: bool = False) -> None:
        if c.status in _LIVE:
            self.say("Container", c.name, "Stopping")
            c.stop(timeout=timeout)
            self.say("Container", c.name, "Stopped")
        c.remove(force=True, v=volumes)
        if status:
            self.say("Container", c.name, status)

    # --- waiting ---

    def _await_dependencies(self, service: str) -> None:
        """Block until the service's dependencies meet their conditions (healthy, completed successfully)."""
        for dep, spec in sorted((self.project.service(service).get("depends_on") or {}).items()):
            condition = (spec or {}).get("condition", "service_started")
            found = self.containers([dep])
            if not found and (spec or {}).get("required") is False:
                continue
            for c in found:
                if condition == "service_healthy":
                    self._await_healthy(c)
                elif condition == "service_completed_successfully":
                    code = c.wait()["StatusCode"]
                    if code != 0:
                        raise ComposeError(f'service "{dep}" didn\'t complete successfully: exit {code}')
                    self.say("Container", c.name, "Exited")

    def _await_healthy(self, c: Container, deadline: float | None = None) -> None:
        """Poll until the container is healthy; unhealthy, exited or no healthcheck fail naming it."""
        self.say("Container", c.name, "Waiting")
        while True:
            c.reload()
            state, health = c.attrs["State"], c.health
            if health == "healthy":
                self.say("Container", c.name, "Healthy")
                return
            if health == "unhealthy":
                raise ComposeError(f"dependency failed to start: container {c.name} is unhealthy")
            if health == "none" and not _has_healthcheck(c):
                raise ComposeError(f"dependency failed to start: container {c.name} has no healthcheck configured")
            if not state["Running"] and state["Status"] != "restarting":
                raise ComposeError(f"dependency failed to start: container {c.name} exited ({state['ExitCode']})")
            if deadline is not None and time.monotonic() > deadline:
                raise ComposeError(f"timeout waiting for container {c.name} to be healthy")
            time.sleep(POLL)

    def wait_ready(self, containers: list[Container], timeout: float | None) -> None:
        """`--wait`: every container running, and healthy when it has a healthcheck."""
        deadline = time.monotonic() + timeout if timeout else None
        for c in containers:
            if _has_healthcheck(c):
                self._await_healthy(c, deadline)
                continue
            c.reload()
            if not c.attrs["State"]["Running"]:
                raise ComposeError(f"container {c.name} exited ({c.attrs['State']['ExitCode']})")

    # --- down and the lifecycle verbs ---

    def down(self, remove_orphans: bool = False, volumes: bool = False, rmi: str | None = None,
             timeout: float | None = None) -> None:
        """Stop and remove the project's containers and networks (with `volumes` its volumes, `rmi` its images)."""
        orphans = self.orphans()
        every = {**self.project.disabled, **self.project.services}
        for service in graph.stop_order(every, list(every)):
            for c in self.containers([service], oneoff=None):
                self._stop_remove(c, timeout, "Removed", volumes)
        if orphans and remove_orphans:
            for c in orphans:
                self._stop_remove(c, timeout, "Removed", volumes)
        elif orphans:
            self._handle_orphans(False)
        left = {n for c in self.containers(oneoff=None) for n in c.attrs["NetworkSettings"]["Networks"]}
        resources.remove_networks(self.client, [n for n in resources.project_networks(self.client, self.project)
                                                if n not in left], self.say)
        if volumes:
            resources.remove_volumes(self.client, resources.project_volumes(self.client, self.project), self.say)
        if rmi:
            self._remove_images(rmi)
        shutil.rmtree(self.secrets_dir(), ignore_errors=True)

    def _remove_images(self, rmi: str) -> None:
        if rmi not in ("local", "all"):
            raise ComposeError(f'invalid --rmi {rmi!r}: want "local" or "all"')
        every = {**self.project.disabled, **self.project.services}
        names = {image_name(self.project, s) for s, spec in every.items()
                 if rmi == "all" or not spec.get("image")}
        for name in sorted(names):
            try:
                self.client.images.remove(name)
            except NotFound:
                continue
            except DockyardError as e:
                self.say("Warning", "", f"image {name}: {e}")
                continue
            self.say("Image", name, "Removed")

    def act(self, verb: str, services: list[str], **kwargs: Any) -> None:
        """start, stop, restart, kill, pause or unpause the services' containers, in dependency order."""
        for name in services:
            self.project.service(name)
        every = {**self.project.disabled, **self.project.services}
        chosen = services or list(every)
        order = graph.stop_order(every, chosen) if verb in ("stop", "kill", "pause") \
            else graph.start_order(every, chosen, with_deps=False)
        past = {"start": "Started", "stop": "Stopped", "restart": "Restarted", "kill": "Killed",
                "pause": "Paused", "unpause": "Unpaused"}[verb]
        for service in order:
            for c in self.containers([service]):
                if c.status not in _ACTS_ON[verb]:
                    continue
                if verb == "start":
                    self._await_dependencies(service)
                try:
                    getattr(c, verb)(**kwargs)
                except DockyardError as e:
                    raise ComposeError(f"container {c.name}: {e}") from None
                self.say("Container", c.name, past)

    def remove(self, services: list[str], stop: bool = False, volumes: bool = False,
               timeout: float | None = None) -> list[Container]:
        """`rm`: remove the stopped containers (with `stop`, stop running ones first); those removed."""
        removed = []
        for c in self.containers(services or None, oneoff=None):
            if c.status in _LIVE:
                if not stop:
                    continue
                c.stop(timeout=timeout)
            c.remove(force=True, v=volumes)
            self.say("Container", c.name, "Removed")
            removed.append(c)
        return removed


def _number(c: Container) -> int:
    try:
        return int(c.labels.get(labels.NUMBER, "0"))
    except ValueError:
        return 0


def _has_healthcheck(c: Container) -> bool:
    test = (c.attrs["Config"].get("Healthcheck") or {}).get("Test") or []
    return bool(test) and test[0] != "NONE"
