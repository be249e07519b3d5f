"""Registry configuration: a dataclass filled from a TOML or YAML file, then overridden by command-line flags.

Example (TOML; the same keys work in YAML when PyYAML is installed):

    root = "/srv/registry"
    addr = "0.0.0.0:5000"
    workers = 4
    connections = 1000
    delete_enabled = true
    [timeouts]
    header = 30
    body = 60
    [tls]
    cert = "/etc/registry/cert.pem"
    key = "/etc/registry/key.pem"
    [auth]
    htpasswd = "/etc/registry/htpasswd"
    anonymous = ["pull"]
    metrics = ["prometheus"]  # users who may read /metrics (with Basic credentials); none when not set
    [auth.access]
    alice = ["pull", "push", "delete"]
    "*" = ["pull"]
    [auth.access.ci]
    "team/*" = ["pull", "push"]
    [auth.token]
    enabled = true
    [gc]
    grace = 3600
    [uploads]
    max = 1000
    [storage.filesystem]        # the storage driver, as distribution's `storage` section; one driver
    rootdirectory = "/srv/registry"   # the same setting as `root`

or, instead of [storage.filesystem], S3 (`root` then keeps only local state: the token key, the S3 driver's locks):

    [storage.s3]
    bucket = "registry"
    region = "us-east-1"
    regionendpoint = "http://127.0.0.1:7480"   # not AWS: an S3-compatible server (Ceph radosgw, MinIO)
    accesskey = "..."                           # both unset: the usual AWS credential chain
    secretkey = "..."
    rootdirectory = "/registry"                 # a key prefix
    forcepathstyle = true
    chunksize = 10485760                        # bytes per multipart part, at least 5 MiB

A pull-through cache of one upstream registry (distribution's `proxy` section; pushes and deletes are refused):

    [proxy]
    remoteurl = "https://registry-1.docker.io"
    username = "..."            # upstream credentials (Basic, or a Bearer token fetched with them); config only
    password = "..."
    ttl = "168h"                # revalidate a cached tag with the upstream after this long ("0": on every pull)
    timeout = 60                # seconds the upstream may stay silent (Dockyard's own key)
Several replicas on one storage (behind a load balancer; examples/deploy/) share their locks in Redis, with
distribution's keys, and must share the token signing key (`auth.token.key`, required then):

    [redis]
    addr = "10.0.0.7:6379"
    password = "..."
    db = 0
    lease = 15                                  # seconds a dead replica's locks outlive it
"""

from __future__ import annotations

import fnmatch
import os
import re
import tomllib
from dataclasses import dataclass, field, fields

from dockyard.errors import DockyardError
from registry.storage.driver import DRIVERS, driver_class
from registry.storage.locks import RedisSettings

ACTIONS = ("pull", "push", "delete")


class ConfigError(DockyardError):
    """The registry configuration file is unreadable or has a bad value."""


@dataclass
class Config:
    """Everything `dockyard registry serve` can be told, by flag or by config file."""

    root: str = "/var/lib/dockyard/registry"
    addr: str = "127.0.0.1:5000"
    workers: int = 2
    threads: int = 8  # per worker, for disk syncs, so a slow disk does not stall the worker's other requests
    connections: int = 1000  # open connections per worker, idle ones included; more wait in the listen backlog
    # Seconds a connection may take to send a request's line and headers (or sit idle between requests).
    header_timeout: int = 30
    # Seconds a request body read or a response write may wait for the client; an upload cut off by it can resume.
    body_timeout: int = 60
    read_only: bool = False
    delete_enabled: bool = False
    access_log: str = "-"  # a path, "-" for stderr, "" for none
    tls_cert: str | None = None
    tls_key: str | None = None
    htpasswd: str | None = None
    # Rights of users without credentials, e.g. ["pull"]; empty means anonymous access is refused when auth is on.
    anonymous: list[str] = field(default_factory=list)
    # user -> rights, or user -> {repository glob -> rights}; user "*" is every authenticated user not listed.
    # Empty: every authenticated user may pull, push and delete.
    access: dict[str, list[str] | dict[str, list[str]]] = field(default_factory=dict)
    # Users who may read /metrics when auth is on; empty: nobody (without auth, /metrics is open).
    metrics_users: list[str] = field(default_factory=list)
    token: bool = False
    token_key: str | None = None  # PEM private key (EC P-256 or RSA); default <root>/token/key.pem, created
    token_issuer: str = "dockyard-registry"
    token_service: str = "dockyard-registry"
    token_ttl: int = 300
    token_realm: str | None = None  # default: this server's /token
    gc_grace: int = 3600
    upload_max_age: int = 86400
    manifest_max: int = 4 << 20
    max_uploads: int = 0  # open upload sessions allowed at once (0: no limit); beyond it POST gets 429
    # The storage driver (registry.storage.driver.DRIVERS) and its parameters; the filesystem driver's root
    # directory is `root`, which also holds the registry's local state (metrics, the token key) with any driver.
    storage_driver: str = "filesystem"
    storage_params: dict = field(default_factory=dict)
    # The registry product (Harbor's model): users, projects, roles, robots, policies, webhooks, the API and UI.
    projects: bool = False
    database_url: str | None = None  # SQLAlchemy URL; default SQLite in `root` (registry.model.db.default_url)
    admin_password: str | None = None  # the initial admin's; else $DOCKYARD_REGISTRY_ADMIN_PASSWORD, else generated
    # Pull-through cache (distribution's `proxy` section): the one upstream this registry mirrors.
    proxy_remote_url: str | None = None
    proxy_username: str | None = None
    proxy_password: str | None = None
    proxy_ttl: str = "168h"  # a duration ("24h", "15m", "90s", "0"), as distribution's
    proxy_timeout: int = 60

    @property
    def proxy_ttl_seconds(self) -> float:
        """How long a cached tag is believed without asking the upstream."""
        return parse_duration(self.proxy_ttl)
    # Redis (HOST:PORT) for the storage's locks, shared by every replica; none: flocks on this host.
    redis_addr: str | None = None
    redis_password: str | None = None
    redis_db: int = 0
    redis_lease: int = 15  # seconds a lock outlives a holder that stopped renewing it (killed, cut off)

    @property
    def auth_enabled(self) -> bool:
        """Whether requests need credentials (beyond the anonymous rights)."""
        return bool(self.htpasswd) or self.token or self.projects

    def rights(self, user: str | None, repo: str | None = None) -> frozenset[str]:
        """What `user` (None: anonymous) may do on `repo` (None: on some repository)."""
        if user is None:
            return frozenset(self.anonymous) if self.auth_enabled else frozenset(ACTIONS)
        if not self.access:
            return frozenset(ACTIONS)
        entry = self.access.get(user, self.access.get("*", []))
        if isinstance(entry, list):
            return frozenset(entry)
        return frozenset(a for pattern, actions in entry.items()
                         if repo is None or fnmatch.fnmatchcase(repo, pattern) for a in actions)

    def storage(self) -> tuple[str, dict]:
        """The storage driver's name and its parameters."""
        params = dict(self.storage_params)
        if self.storage_driver == "filesystem":
            params["rootdirectory"] = self.root
        elif self.storage_driver == "s3":  # its locks are local files without Redis (see registry.storage.s3)
            params.setdefault("lockdirectory", os.path.join(self.root, "s3-locks"))
        if self.redis_addr:
            params["redis"] = RedisSettings(self.redis_addr, self.redis_password, self.redis_db, self.redis_lease)
        return self.storage_driver, params

    def validate(self) -> Config:
        """Check cross-field rules; raise ConfigError naming the bad setting."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("TLS needs both a certificate and a key (--tls-cert and --tls-key)")
        for path_field in ("tls_cert", "tls_key", "htpasswd"):
            value = getattr(self, path_field)
            if value and not os.path.isfile(value):
                raise ConfigError(f"{path_field.replace('_', '-')} file not found: {value}")
        if self.token and not self.htpasswd and not self.anonymous and not self.projects:
            raise ConfigError("token auth needs --htpasswd (users) or anonymous rights")
        entries = [("anonymous", self.anonymous)]
        for user, entry in self.access.items():
            entries += [(f"{user} on {p}", a) for p, a in entry.items()] if isinstance(entry, dict) else [(user, entry)]
        for who, rights in entries:
            if not isinstance(rights, list) or set(rights) - set(ACTIONS):
                raise ConfigError(f"bad rights {rights!r} for {who}; use a list of pull, push, delete")
        if not all(isinstance(user, str) for user in self.metrics_users):
            raise ConfigError(f"bad auth.metrics {self.metrics_users!r}; use a list of user names")
        if not _is_host_port(self.addr):
            raise ConfigError(f"invalid listen address {self.addr!r}; use HOST:PORT, e.g. 127.0.0.1:5000")
        if self.max_uploads < 0:
            raise ConfigError("max_uploads must be 0 (no limit) or more")
        for name in ("workers", "threads", "connections", "header_timeout", "body_timeout"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1")
        self._validate_storage()
        self._validate_proxy()
        self._validate_redis()
        return self

    def _validate_proxy(self) -> None:
        from urllib.parse import urlsplit

        url = self.proxy_remote_url
        if url is None:
            if self.proxy_username or self.proxy_password:
                raise ConfigError("proxy.username and proxy.password need proxy.remoteurl")
            return
        try:
            parts = urlsplit(url)
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            parts, port_ok = None, False
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname or not port_ok \
                or parts.path.strip("/") or parts.query or parts.fragment or parts.username is not None:
            if parts is not None and parts.username is not None:  # never echo a password
                raise ConfigError("proxy.remoteurl: credentials go in proxy.username and proxy.password, "
                                  "not in the URL")
            raise ConfigError(f"proxy.remoteurl: not an http(s) URL {_quoted(url)}")
        if bool(self.proxy_username) != bool(self.proxy_password):
            raise ConfigError("proxy.username and proxy.password go together")
        try:
            parse_duration(self.proxy_ttl)
        except ValueError:
            raise ConfigError(f"proxy.ttl: not a duration {_quoted(self.proxy_ttl)}; use e.g. 168h, 15m or 0") from None
        if self.proxy_timeout < 1:
            raise ConfigError("proxy.timeout must be at least 1")
        if self.projects:
            raise ConfigError("proxy.remoteurl (a pull-through cache) cannot be combined with projects")

    def _validate_redis(self) -> None:
        if self.redis_addr is None:
            return
        if not _is_host_port(self.redis_addr):
            raise ConfigError(f'redis.addr: not HOST:PORT "{self.redis_addr}"')
        if self.redis_db < 0:
            raise ConfigError(f"redis.db: not a database number: {self.redis_db}")
        if self.redis_lease < 1:
            raise ConfigError(f"redis.lease: at least 1 second, got {self.redis_lease}")
        if self.token and not self.token_key:
            # Each replica would make its own key in its own root, and refuse the tokens the others issue.
            raise ConfigError("auth.token.key must be set with [redis]: every replica signs tokens with that key")

    def _validate_storage(self) -> None:
        if self.storage_driver not in DRIVERS:
            raise ConfigError(f"unknown storage driver {self.storage_driver!r}; use one of {', '.join(DRIVERS)}")
        accepted = driver_class(self.storage_driver).params
        for key in self.storage_params:
            if key not in accepted:
                raise ConfigError(f"unknown setting 'storage.{self.storage_driver}.{key}'")


def _is_host_port(value: str) -> bool:
    """Whether `value` is HOST:PORT with a port number that can be."""
    host, sep, port = value.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)


# Nested config-file keys -> Config fields.
_NESTED = {
    ("tls", "cert"): "tls_cert", ("tls", "key"): "tls_key",
    ("auth", "htpasswd"): "htpasswd", ("auth", "anonymous"): "anonymous", ("auth", "access"): "access",
    ("auth", "metrics"): "metrics_users",
    ("auth", "token", "enabled"): "token", ("auth", "token", "key"): "token_key",
    ("auth", "token", "issuer"): "token_issuer", ("auth", "token", "service"): "token_service",
    ("auth", "token", "ttl"): "token_ttl", ("auth", "token", "realm"): "token_realm",
    ("gc", "grace"): "gc_grace", ("gc", "upload_max_age"): "upload_max_age",
    ("uploads", "max"): "max_uploads",
    ("database", "url"): "database_url", ("admin", "password"): "admin_password",
    ("timeouts", "header"): "header_timeout", ("timeouts", "body"): "body_timeout",
    ("proxy", "remoteurl"): "proxy_remote_url", ("proxy", "username"): "proxy_username",
    ("proxy", "password"): "proxy_password", ("proxy", "ttl"): "proxy_ttl", ("proxy", "timeout"): "proxy_timeout",
    ("redis", "addr"): "redis_addr", ("redis", "password"): "redis_password", ("redis", "db"): "redis_db",
    ("redis", "lease"): "redis_lease",
}

_DURATION_RE = re.compile(r"(?:[0-9]+(?:\.[0-9]*)?(?:h|m|s|ms))+|0")
_DURATION_PART_RE = re.compile(r"([0-9]+(?:\.[0-9]*)?)(h|ms|m|s)")
_UNIT_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str) -> float:
    """Seconds in a Go-style duration ("168h", "1h30m", "15m", "0"); ValueError when it is not one."""
    if not isinstance(text, str) or not _DURATION_RE.fullmatch(text):
        raise ValueError(f"not a duration: {text!r}")
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _DURATION_PART_RE.findall(text))


def _quoted(text: str) -> str:
    """A config value for a one-line error: quoted, cut short, no control characters."""
    shown = "".join(c if c.isprintable() else "?" for c in str(text)[:200])
    return '"' + shown.replace('"', '\\"') + '"'



def read_file(path: str) -> dict:
    """Parse a TOML file, or a YAML file when PyYAML is installed, into flat Config field values."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from None
    if path.endswith((".yml", ".yaml")):
        try:
            import yaml
        except ImportError:
            raise ConfigError(f"{path}: YAML config needs PyYAML installed; use TOML instead") from None
        try:
            data = yaml.safe_load(raw) or {}
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: invalid YAML: {str(e).splitlines()[0]}") from None
    else:
        try:
            data = tomllib.loads(raw.decode("utf-8", "replace"))
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{path}: invalid TOML: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table of settings")
    return _flatten(data, (), path)


def _flatten(data: dict, prefix: tuple[str, ...], path: str) -> dict:
    names = {f.name for f in fields(Config)}
    out: dict = {}
    for key, value in data.items():
        key_path = (*prefix, str(key))
        if key_path == ("storage",):
            out.update(_storage(value, path))
            continue
        target = _NESTED.get(key_path)
        if target is None and not prefix and key in names:
            target = key
        if target is not None:
            out[target] = value
        elif isinstance(value, dict):
            out.update(_flatten(value, key_path, path))
        else:
            raise ConfigError(f"{path}: unknown setting {'.'.join(key_path)!r}")
    return out


def _storage(section: object, path: str) -> dict:
    """Config fields from a `storage` section naming one driver: {"filesystem": {"rootdirectory": ...}}."""
    if not isinstance(section, dict) or len(section) != 1:
        raise ConfigError(f"{path}: 'storage' must name one driver, e.g. storage.filesystem")
    (name, params), = section.items()
    if params is None:  # YAML's `filesystem:` with nothing under it
        params = {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: 'storage.{name}' must be a table of driver settings")
    params = dict(params)
    out: dict = {"storage_driver": str(name)}
    if name == "filesystem" and "rootdirectory" in params:
        out["root"] = params.pop("rootdirectory")
    out["storage_params"] = params
    return out


def build(file: str | None = None, base: dict | None = None, **overrides) -> Config:
    """A Config from defaults, then `base`, then the file, then every override that is not None."""
    values = {**(base or {}), **(read_file(file) if file else {})}
    values.update({k: v for k, v in overrides.items() if v is not None})
    types = {f.name: f.type for f in fields(Config)}
    for key, value in values.items():
        if value is None and "None" in types[key]:
            continue
        expected = _TYPES.get(types[key].split("[")[0].split(" |")[0])
        if expected and (not isinstance(value, expected) or (expected is int and isinstance(value, bool))):
            raise ConfigError(f"setting {key!r} must be {_TYPE_NAMES[expected]}, got {value!r}")
    return Config(**values).validate()


_TYPES = {"int": int, "bool": bool, "str": str, "list": list, "dict": dict}
_TYPE_NAMES = {int: "an integer", bool: "true or false", str: "a string", list: "a list", dict: "a table"}
