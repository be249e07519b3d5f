"""`load(options) -> Project`: find the compose files, read the variables, then per file interpolate, include,
canonicalize and extend; merge the files in order; fold env files in, add the implicit defaults, apply profiles and
check every reference, as docker compose (compose-go) does."""

from __future__ import annotations

import copy
import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

from compose import canonical, dotenv, schema
from compose.errors import ComposeError, quoted
from compose.hostfiles import MAX_BYTES, read_regular
from compose.interpolate import Interpolator
from compose.merge import drop, merge_service, merge_values
from compose.model import Project, ProjectOptions
from compose.yamlfile import Path, YamlFile, read

DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml")
OVERRIDE_FILES = ("compose.override.yml", "compose.override.yaml", "docker-compose.override.yml",
                  "docker-compose.override.yaml")
SECTIONS = ("services", "networks", "volumes", "secrets", "configs")
_NAMESPACES = ("network_mode", "ipc", "pid", "uts", "cgroup")  # `service:<name>` in these adds a dependency


def load(options: ProjectOptions) -> Project:
    """The project the options name (ComposeError, one line, on any bad input)."""
    environ = dict(os.environ if options.environ is None else options.environ)
    cwd = os.getcwd()
    environ.setdefault("PWD", cwd)  # docker compose sets it for interpolation when the shell did not
    explicit_dir = os.path.abspath(options.project_directory) if options.project_directory else None
    named = list(options.files)
    env_dir = explicit_dir or _first_dir(named) or cwd
    env = _environment(environ, [os.path.abspath(f) for f in options.env_files], env_dir)
    if not named and env.get("COMPOSE_FILE"):
        named = [f for f in env["COMPOSE_FILE"].split(env.get("COMPOSE_PATH_SEPARATOR") or os.pathsep) if f]
    if not named:
        named = _discover(explicit_dir or cwd, cwd)
    working_dir = explicit_dir or _first_dir(named) or cwd
    if not options.env_files and working_dir != env_dir:
        env = _environment(env, [], working_dir)  # found in a parent: its .env fills what is still unset
    files = [_read_file(name) for name in named]
    if not any(f.data for f in files):
        raise ComposeError(f"empty compose file: {', '.join(f.name for f in files)}")
    warned: set[str] = set()
    name = _project_name(options.project_name, Interpolator(env.get, warned), files, working_dir)
    env["COMPOSE_PROJECT_NAME"] = name
    reader = _Reader(env, warned, env.get("HOME"))
    model: dict[str, dict[str, Any]] | None = None
    for yaml_file in files:
        path = os.path.abspath(yaml_file.name) if yaml_file.name != "<stdin>" else os.path.join(working_dir, "-")
        current = reader.file_model(yaml_file, working_dir, [path])
        model = current if model is None else _merge_models(model, current, yaml_file)
    assert model is not None
    profiles = options.profiles or [p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip()]
    return _finish(model, name, working_dir, [os.path.abspath(f) if f != "-" else "-" for f in named], env,
                   profiles, options.services)


# -- finding and reading the files ----------------------------------------------------------------------------------

def _first_dir(files: list[str]) -> str | None:
    return next((os.path.dirname(os.path.abspath(f)) for f in files if f != "-"), None)


def _discover(start: str, cwd: str) -> list[str]:
    """compose.yaml & co. in `start` or the nearest parent that has one, with its override file."""
    directory = start
    while True:
        found = [n for n in DEFAULT_FILES if os.path.isfile(os.path.join(directory, n))]
        if found:
            if len(found) > 1:
                print(f"WARN: Found multiple config files with supported names: {', '.join(found)}\n"
                      f"WARN: Using {found[0]}", file=sys.stderr)
            names = [found[0], *[n for n in OVERRIDE_FILES if os.path.isfile(os.path.join(directory, n))][:1]]
            return [_shown(os.path.join(directory, n), cwd) for n in names]
        parent = os.path.dirname(directory)
        if parent == directory:
            raise ComposeError("no configuration file provided: not found")
        directory = parent


def _shown(path: str, cwd: str) -> str:
    """A found file as messages name it: relative when it is under the working directory, else absolute."""
    relative = os.path.relpath(path, cwd)
    return path if relative.startswith("..") else relative


def _read_file(name: str) -> YamlFile:
    if name == "-":
        data = sys.stdin.buffer.read(MAX_BYTES + 1)
        return read(data, "<stdin>")
    return read(read_regular(name, "compose file"), name)


def _environment(environ: dict[str, str], env_files: list[str], directory: str) -> dict[str, str]:
    """The interpolation variables: the env files' (later files win), under the process environment."""
    if not env_files:
        default = os.path.join(directory, ".env")
        env_files = [default] if os.path.isfile(default) else []
    from_files: dict[str, str] = {}
    for path in env_files:
        from_files.update(dotenv.read_file(path, lambda k: environ.get(k, from_files.get(k))))
    return {**from_files, **environ}


_VALID_NAME = re.compile(r"[a-z0-9][a-z0-9_-]*")


def normalize_project_name(name: str) -> str:
    """Lowercase, only [a-z0-9_-], leading `_`/`-` dropped (compose-go's NormalizeProjectName)."""
    return re.sub(r"[^a-z0-9_-]", "", name.lower()).lstrip("_-")


def _project_name(explicit: str | None, variables: Interpolator, files: list[YamlFile], working_dir: str) -> str:
    """-p, else $COMPOSE_PROJECT_NAME (both must be valid), else the files' `name:`, else the directory's name."""
    for given in (explicit, variables.lookup("COMPOSE_PROJECT_NAME")):
        if given:
            if not _VALID_NAME.fullmatch(given):
                raise ComposeError(f"invalid project name {quoted(given)}: must consist only of lowercase alphanumeric "
                                   "characters, hyphens, and underscores as well as start with a letter or number")
            return given
    name = ""
    for f in files:
        raw = f.data.get("name")
        if raw not in (None, ""):
            try:
                name = normalize_project_name(variables.text(str(raw)))
            except ComposeError as e:
                raise ComposeError(f"{f.where(('name',))}: {e}") from None
    name = name or normalize_project_name(os.path.basename(working_dir))
    if not name:
        raise ComposeError("project name must not be empty (use -p NAME)")
    return name


# -- one file -------------------------------------------------------------------------------------------------------

@dataclass
class _Reader:
    """Reads files into canonical models with one set of variables (and one set of warnings, so each unset variable
    is warned about once)."""

    env: dict[str, str]
    warned: set[str]
    home: str | None
    extends_cache: dict[str, tuple[YamlFile, dict[str, dict[str, Any]]]] = field(default_factory=dict)

    @property
    def interpolator(self) -> Interpolator:
        return Interpolator(self.env.get, self.warned)

    def file_model(self, yaml_file: YamlFile, base_dir: str, chain: list[str]) -> dict[str, dict[str, Any]]:
        """One file's model: {section: {key: canonical}}, includes imported and extends resolved."""
        ctx = canonical.Context(yaml_file, base_dir, self.home)
        data = self.interpolator.tree(yaml_file.data, yaml_file.where)
        canonical.check_keys(data, schema.TOP_LEVEL, (), ctx)
        model = self._sections(data, ctx)
        for i, item in enumerate(_as_list(data.get("include"), ("include",), ctx)):
            included = self._include(item, ("include", i), ctx, chain)
            for section in SECTIONS:
                for key, value in included[section].items():
                    mine = model[section].get(key)
                    model[section][key] = value if mine is None else (
                        merge_service(value, mine) if section == "services" else merge_values(value, mine))
        self._extends_all(model["services"], ctx, chain[-1])
        return model

    def _sections(self, data: dict[str, Any], ctx: canonical.Context) -> dict[str, dict[str, Any]]:
        model: dict[str, dict[str, Any]] = {section: {} for section in SECTIONS}
        for section in SECTIONS:
            entries = data.get(section)
            if entries is None:
                continue
            if not isinstance(entries, dict):
                raise ctx.error((section,), "must be a mapping")
            for key, raw in entries.items():
                if key.startswith("x-") and section != "services":
                    continue
                if section == "services":
                    model[section][key] = canonical.service(key, raw, ctx)
                elif section == "networks":
                    model[section][key] = canonical.network(key, raw, ctx)
                elif section == "volumes":
                    model[section][key] = canonical.volume(key, raw, ctx)
                else:
                    model[section][key] = canonical.mounted_file(section, key, raw, ctx)
        model["extensions"] = {k: v for k, v in data.items() if k.startswith("x-")}
        return model

    def _include(self, item: Any, path: Path, ctx: canonical.Context, chain: list[str]) -> dict[str, dict[str, Any]]:
        """An included project: its files read relative to its own directory, its own .env under ours."""
        spec = {"path": item} if isinstance(item, str) else canonical.check_keys(item, schema.INCLUDE, path, ctx)
        paths = [ctx.host_path(p, path) for p in _as_list(spec.get("path"), (*path, "path"), ctx, strings=True)]
        if not paths:
            raise ctx.error(path, "is missing its path")
        project_dir = (ctx.host_path(spec["project_directory"], path) if spec.get("project_directory")
                       else os.path.dirname(paths[0]))
        env_files = [ctx.host_path(p, path) for p in _as_list(spec.get("env_file"), (*path, "env_file"), ctx,
                                                        strings=True)]
        reader = _Reader(_environment(self.env, env_files, project_dir), self.warned, self.home, self.extends_cache)
        model: dict[str, dict[str, Any]] | None = None
        for file_path in paths:
            if file_path in chain:
                raise ctx.error(path, "include cycle: " + " -> ".join([*chain, file_path]))
            yaml_file = read(read_regular(file_path, "included file"), file_path)
            current = reader.file_model(yaml_file, project_dir, [*chain, file_path])
            model = current if model is None else _merge_models(model, current, yaml_file)
        assert model is not None
        return model

    def _extends_all(self, services: dict[str, dict[str, Any]], ctx: canonical.Context, file_id: str) -> None:
        for name in list(services):
            self._extend(name, services, ctx, file_id, [])

    def _extend(self, name: str, services: dict[str, dict[str, Any]], ctx: canonical.Context, file_id: str,
                stack: list[tuple[str, str]]) -> dict[str, Any]:
        """Service `name` with its `extends` chain merged in (the result replaces it in `services`)."""
        service = services[name]
        spec = service.get("extends")
        if spec is None:
            return service
        if (file_id, name) in stack:
            cycle = " -> ".join(f"{s}" for _, s in [*stack, (file_id, name)])
            raise ComposeError(f"{ctx.file.where(('services', name, 'extends'))}: extends cycle: {cycle}")
        stack = [*stack, (file_id, name)]
        if "file" in spec:
            other_file, other = self._extends_file(spec["file"], ctx, ("services", name, "extends", "file"))
            if spec["service"] not in other:
                raise ComposeError(f"{ctx.file.where(('services', name, 'extends'))}: cannot extend service "
                                   f"{quoted(name)}: service {quoted(spec['service'])} not found in {spec['file']}")
            other_ctx = canonical.Context(other_file, os.path.dirname(spec["file"]), self.home)
            base = self._extend(spec["service"], other, other_ctx, spec["file"], stack)
        else:
            if spec["service"] not in services:
                raise ComposeError(f"{ctx.file.where(('services', name, 'extends'))}: cannot extend service "
                                   f"{quoted(name)}: service {quoted(spec['service'])} not found")
            base = self._extend(spec["service"], services, ctx, file_id, stack)
        base = copy.deepcopy(base)
        prefix = ("services", name)
        for tagged in (*ctx.file.resets, *ctx.file.overrides):
            if tagged[:2] == prefix and len(tagged) > 2:
                drop(base, tagged[2:])
        local = {k: v for k, v in service.items() if k != "extends"}
        services[name] = merge_service(base, local)
        return services[name]

    def _extends_file(self, path: str, ctx: canonical.Context,
                      where: Path) -> tuple[YamlFile, dict[str, dict[str, Any]]]:
        """The services of a file named by `extends.file`, canonical, relative paths against its directory."""
        if path not in self.extends_cache:
            yaml_file = read(read_regular(path, "extended file"), path)
            data = self.interpolator.tree(yaml_file.data, yaml_file.where)
            other_ctx = canonical.Context(yaml_file, os.path.dirname(path), self.home)
            services = data.get("services")
            if not isinstance(services, dict):
                raise ctx.error(where, f"{path} has no services")
            self.extends_cache[path] = (yaml_file, {n: canonical.service(n, s, other_ctx) for n, s in services.items()})
        return self.extends_cache[path]


def _first(*values: str | None) -> str | None:
    return next((v for v in values if v is not None), None)


def _as_list(value: Any, path: Path, ctx: canonical.Context, strings: bool = False) -> list[Any]:
    if value is None:
        return []
    if strings and isinstance(value, str):
        return [value]
    if not isinstance(value, list):
        raise ctx.error(path, "must be a list")
    if strings and not all(isinstance(v, str) for v in value):
        raise ctx.error(path, "must be a list of strings")
    return value


def _merge_models(base: dict[str, dict[str, Any]], over: dict[str, dict[str, Any]],
                  over_file: YamlFile) -> dict[str, dict[str, Any]]:
    """A later file merged onto the earlier ones: its `!reset`/`!override` paths first drop what they had."""
    base = copy.deepcopy(base)
    for tagged in (*over_file.resets, *over_file.overrides):
        drop(base, tagged)
    for section in (*SECTIONS, "extensions"):
        for key, value in over[section].items():
            mine = base[section].get(key)
            if mine is None:
                base[section][key] = value
            elif section == "services":
                base[section][key] = merge_service(mine, value)
            else:
                base[section][key] = merge_values(mine, value)
    return base


# -- the whole project ----------------------------------------------------------------------------------------------

def _finish(model: dict[str, dict[str, Any]], name: str, working_dir: str, files: list[str], env: dict[str, str],
            profiles: list[str], explicit: list[str]) -> Project:
    """The merged model as a Project: environments folded, implicit defaults added, resources named, profiles
    applied, references and the dependency graph checked."""
    services = model["services"]
    uses_default = False
    for svc_name, svc in services.items():
        _fold_environment(svc, env)
        _implicit_dependencies(svc)
        if "network_mode" in svc:
            if svc.get("networks"):
                raise ComposeError(f"service {quoted(svc_name)} declares mutually exclusive `network_mode` and "
                                   "`networks`")
        elif not svc.get("networks"):
            svc["networks"] = {"default": None}
        uses_default = uses_default or "default" in svc.get("networks", {})
        _check_resources(svc_name, svc)
    networks = model["networks"]
    if uses_default and "default" not in networks:
        networks["default"] = {}
    for section in ("networks", "volumes", "secrets", "configs"):
        for key, spec in model[section].items():
            spec.setdefault("name", key if spec.get("external") else f"{name}_{key}")
    active = set(profiles)
    for svc_name in explicit:
        active.update(services[svc_name].get("profiles", []) if svc_name in services else [])
    enabled = {n: s for n, s in services.items()
               if not s.get("profiles") or "*" in active or active & set(s["profiles"]) or n in explicit}
    disabled = {n: s for n, s in services.items() if n not in enabled}
    project = Project(name=name, working_dir=working_dir, files=files, services=enabled, disabled=disabled,
                      networks=networks, volumes=model["volumes"], secrets=model["secrets"],
                      configs=model["configs"], environment=env, extensions=model["extensions"])
    _check_references(project)
    _check_cycles(project.services)
    return project.without_unused_resources()


# A service-level key and the deploy key it duplicates: both may be written, but not with different values.
_DUPLICATED = (("scale", ("replicas",)), ("cpus", ("resources", "limits", "cpus")),
               ("mem_limit", ("resources", "limits", "memory")), ("pids_limit", ("resources", "limits", "pids")),
               ("mem_reservation", ("resources", "reservations", "memory")))


def _check_resources(name: str, svc: dict[str, Any]) -> None:
    """deploy.replicas folded into scale; the duplicated limits agree; a fixed container name means one replica;
    no two mounts share a target."""
    for key, deploy_path in _DUPLICATED:
        value: Any = svc.get("deploy", {})
        for part in deploy_path:
            value = value.get(part) if isinstance(value, dict) else None
        if value is not None and key in svc and svc[key] != value:
            raise ComposeError(f"services.{name}: can't set distinct values on '{key}' and "
                               f"'deploy.{'.'.join(deploy_path)}'")
    replicas = svc.get("deploy", {}).get("replicas")
    if replicas is not None:
        svc.setdefault("scale", replicas)
    if svc.get("scale", 1) < 0:
        raise ComposeError(f"services.{name}.scale: must be greater than or equal to 0")
    if svc.get("scale", 1) > 1 and "container_name" in svc:
        raise ComposeError(f"services.{name}: can't set container_name and scale > 1 (container names are unique)")
    targets: dict[str, str] = {}
    mounts = [(f"tmpfs[{i}]", t.split(":")[0]) for i, t in enumerate(svc.get("tmpfs", []))]
    mounts += [(f"volumes[{i}]", v["target"]) for i, v in enumerate(svc.get("volumes", []))]
    for where, target in mounts:
        if target in targets:
            raise ComposeError(f"services.{name}.{where}: target {target} already mounted as "
                               f"services.{name}.{targets[target]}")
        targets[target] = where


def _fold_environment(svc: dict[str, Any], env: dict[str, str]) -> None:
    """env_file contents under `environment`; a value-less variable taken from the project's variables."""
    from_files: dict[str, str] = {}
    for spec in svc.pop("env_file", []):
        if not os.path.lexists(spec["path"]):
            if spec["required"]:
                raise ComposeError(f"env file {spec['path']} not found")
            continue
        from_files.update(dotenv.read_file(spec["path"], lambda k: _first(env.get(k), from_files.get(k))))
    environment: dict[str, str | None] = dict(from_files)
    for key, written in svc.get("environment", {}).items():
        value = written if written is not None else env.get(key)
        if value is not None or key not in environment:
            environment[key] = value
    if environment or "environment" in svc:
        svc["environment"] = environment
    build = svc.get("build")
    if build and "args" in build:
        build["args"] = {k: v if v is not None else env.get(k) for k, v in build["args"].items()
                         if v is not None or k in env}


def _implicit_dependencies(svc: dict[str, Any]) -> None:
    """links, `service:` namespaces and volumes_from make their service a dependency (compose-go's rule)."""
    depends = svc.get("depends_on", {})
    for link in svc.get("links", []):
        depends.setdefault(link.split(":")[0], {"condition": "service_started", "restart": True, "required": True})
    for key in _NAMESPACES:
        ref = svc.get(key, "")
        if ref.startswith("service:"):
            depends.setdefault(ref[8:], {"condition": "service_started", "restart": True, "required": True})
    for source in svc.get("volumes_from", []):
        if not source.startswith("container:"):
            depends.setdefault(source.split(":")[0], {"condition": "service_started", "required": True})
    if depends:
        svc["depends_on"] = depends


def _check_references(project: Project) -> None:
    """Every enabled service names an image or a build, and only services and resources that exist."""
    for name, svc in sorted(project.services.items()):
        if not svc.get("image") and "build" not in svc and "provider" not in svc:
            raise ComposeError(f"service {quoted(name)} has neither an image nor a build context specified")
        if "dockerfile_inline" in svc.get("build", {}) and "dockerfile" in svc.get("build", {}):
            raise ComposeError(f"service {quoted(name)} declares mutually exclusive dockerfile and dockerfile_inline")
        for dep, spec in svc.get("depends_on", {}).items():
            if dep in project.disabled:
                if spec.get("required", True):
                    wanted = ", ".join(project.disabled[dep].get("profiles", []))
                    raise ComposeError(f"service {quoted(name)} depends on service {quoted(dep)}, which is disabled "
                                       f"(enable its profile: {wanted})")
            elif dep not in project.services:
                raise ComposeError(f"service {quoted(name)} depends on undefined service {quoted(dep)}")
        for network in svc.get("networks", {}):
            if network not in project.networks:
                raise ComposeError(f"service {quoted(name)} refers to undefined network {network}")
        for mount in svc.get("volumes", []):
            if mount["type"] == "volume" and mount.get("source") and mount["source"] not in project.volumes:
                raise ComposeError(f"service {quoted(name)} refers to undefined volume {mount['source']}")
        for kind, defined in (("secret", project.secrets), ("config", project.configs)):
            for mount in svc.get(kind + "s", []):
                if mount["source"] not in defined:
                    raise ComposeError(f"service {quoted(name)} refers to undefined {kind} {mount['source']}")
        for mount in svc.get("build", {}).get("secrets", []):
            if mount["source"] not in project.secrets:
                raise ComposeError(f"service {quoted(name)} refers to undefined build secret {mount['source']}")


def _check_cycles(services: dict[str, dict[str, Any]]) -> None:
    """`dependency cycle detected: a -> b -> a` for the first cycle found walking the names in order."""
    done: set[str] = set()

    def walk(path: list[str]) -> None:
        for dep in sorted(services[path[-1]].get("depends_on", {})):
            if dep in path:
                cycle = [*path[path.index(dep):], dep]
                raise ComposeError(f"dependency cycle detected: {' -> '.join(cycle)}")
            if dep in services and dep not in done:
                walk([*path, dep])
        done.add(path[-1])

    for name in sorted(services):
        if name not in done:
            walk([name])
