"""The loaded project: the compose model after include, extends, merge, interpolation, profiles and normalization.

Every service dict is in the canonical form `docker compose config` prints (the contract in MODEL.md; absent key =
not set):
- `image` str; `build` {context: absolute path or URL, dockerfile (relative to context, default "Dockerfile") or
  dockerfile_inline, args {k: str}, target, secrets [{source}], labels {}}.
- `command`, `entrypoint`: list[str] (strings split shell-style; `entrypoint: []` resets).
- `environment` {k: str | None} with env_file already folded in (environment wins; None = unset variable).
- `ports` [{mode: "ingress", host_ip?, target: int, published?: str, protocol: "tcp"|"udp"|"sctp"}], one entry per
  container port (ranges expanded; a host range for one container port stays one entry, published "a-b").
- `expose`, `tmpfs`, `cap_add`, `cap_drop`, `dns`, `extra_hosts` ("host:ip"), `profiles`, `links`,
  `security_opt`, `volumes_from`: list[str].
- `volumes` [{type: bind|volume|tmpfs, source? (bind: absolute host path; volume: the top-level key, absent when
  anonymous), target, read_only?: true, bind?: {create_host_path: true, selinux, propagation},
  volume?: {nocopy}, tmpfs?: {size: bytes, mode}}].
- `networks` {key: None | {aliases, ipv4_address, priority, ...}}, {"default": None} when neither networks nor
  `network_mode` is set; `network_mode` "host"|"none"|"bridge"|"service:<svc>"|"container:<name>".
- `depends_on` {svc: {condition, required: bool, restart?: bool}} (links, `service:` namespaces and volumes_from add
  service_started entries).
- `healthcheck` {test: list[str] (a string -> ["CMD-SHELL", s]), interval, timeout, start_period, start_interval:
  Go durations, retries: int, disable: bool}; `stop_grace_period` a Go duration.
- `labels` {k: str}; `scale` int (deploy.replicas folded in); `deploy.resources.{limits,reservations}` {cpus: float,
  memory: bytes, pids: int}; `mem_limit`/`memswap_limit`/`mem_reservation`/`shm_size` bytes, `cpus` float.
- `secrets` / `configs` [{source, target (default /run/secrets/<source>, /<source>), uid, gid, mode: int}].
Top level: `networks`/`volumes` {key: {name (default "<project>_<key>", the key when external), external, driver,
driver_opts, labels, ...}}; `secrets`/`configs` {key: {name, file: absolute path | environment | content |
external}}.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    services: list[str] = field(default_factory=list)  # services named on the command line: enabled whatever
    # their profiles (docker compose enables a named service's profiles too)


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
    extensions: dict[str, Any] = field(default_factory=dict)  # the top-level `x-` keys (config prints them)

    def image_name(self, service: str) -> str:
        """The service's image: its `image`, else `<project>-<service>` for one that builds (docker compose v2)."""
        return self.service(service).get("image") or f"{self.name}-{service}"

    def selected(self, names: list[str]) -> Project:
        """This project with only the named services and what they depend on (docker compose's `SERVICE...`);
        ComposeError for a name the project does not have."""
        every = {**self.disabled, **self.services}
        wanted: list[str] = []
        pending = list(names)
        while pending:
            name = pending.pop(0)
            if name in wanted:
                continue
            self.service(name)
            wanted.append(name)
            pending.extend(dep for dep, spec in every[name].get("depends_on", {}).items()
                           if dep in every or spec.get("required", True))
        services = {}
        for name in sorted(wanted):
            service = dict(every[name])
            if "depends_on" in service:  # what is not selected is not waited for (compose-go drops it too)
                service["depends_on"] = {d: s for d, s in service["depends_on"].items() if d in wanted}
            services[name] = service
        return replace(self, services=services,
                       disabled={n: s for n, s in every.items() if n not in wanted}).without_unused_resources()

    def without_unused_resources(self) -> Project:
        """This project with only the networks, volumes, secrets and configs its enabled services use (docker
        compose loads every project so)."""
        used: dict[str, set[str]] = {"networks": set(), "volumes": set(), "secrets": set(), "configs": set()}
        for service in self.services.values():
            used["networks"].update(service.get("networks", {}))
            used["volumes"].update(v["source"] for v in service.get("volumes", [])
                                   if v["type"] == "volume" and v.get("source"))
            used["secrets"].update(s["source"] for s in service.get("secrets", []))
            used["secrets"].update(s["source"] for s in service.get("build", {}).get("secrets", []))
            used["configs"].update(c["source"] for c in service.get("configs", []))
        def keep(section: str) -> dict[str, dict[str, Any]]:
            return {k: v for k, v in getattr(self, section).items() if k in used[section]}

        return replace(self, networks=keep("networks"), volumes=keep("volumes"), secrets=keep("secrets"),
                       configs=keep("configs"))

    def service(self, name: str) -> dict[str, Any]:
        """A service by name, enabled or not; ComposeError naming it when the project has none."""
        from compose.errors import ComposeError

        found = self.services.get(name) or self.disabled.get(name)
        if found is None:
            raise ComposeError(f"no such service: {name}")
        return found
