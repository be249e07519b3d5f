"""Client settings from a daemon.json-compatible file: insecure registries, mirrors, transfer limits."""

from __future__ import annotations

import ipaddress
import json
import os
import socket
from dataclasses import dataclass, field
from typing import TypeVar

from dockyard.errors import DockyardError

DEFAULT_PATH = "/etc/dockyard/daemon.json"
DEFAULT_CERTS_D = "/etc/dockyard/certs.d"
# As in Docker: loopback registries need no TLS.
ALWAYS_INSECURE = ("127.0.0.0/8", "::1/128")
_Number = TypeVar("_Number", int, float)


def config_path() -> str:
    """$DOCKYARD_CONFIG, else /etc/dockyard/daemon.json."""
    return os.environ.get("DOCKYARD_CONFIG") or DEFAULT_PATH


def certs_dir() -> str:
    """Root of the per-registry CA directories (`<dir>/<host:port>/ca.crt`)."""
    return os.environ.get("DOCKYARD_CERTS_D") or DEFAULT_CERTS_D


@dataclass
class ClientConfig:
    """The settings the distribution client honours."""

    insecure_registries: list[str] = field(default_factory=list)
    registry_mirrors: list[str] = field(default_factory=list)  # Docker Hub's, as Docker's daemon.json
    # registry host[:port] -> mirrors tried before it (as podman's [[registry.mirror]]); "docker.io" for Docker Hub
    mirrors: dict[str, list[str]] = field(default_factory=dict)
    max_concurrent_uploads: int = 3
    max_concurrent_downloads: int = 3
    max_attempts: int = 5
    # Blobs up to this size go in one PUT; bigger ones in PATCH chunks of this size, resumable.
    upload_chunk_size: int = 64 << 20
    # Seconds a registry may keep a connection silent (mid-answer or before one) before it counts as stalled.
    read_timeout: float = 60.0
    path: str = ""

    @classmethod
    def load(cls, path: str | None = None) -> ClientConfig:
        """Read the config file; a missing file means defaults, a malformed one is an error naming it."""
        path = path or config_path()
        try:
            with open(path, "rb") as f:
                obj = json.load(f)
        except FileNotFoundError:
            return cls(path=path)
        except (OSError, ValueError) as e:
            raise DockyardError(f"cannot read {path}: {e}") from None
        if not isinstance(obj, dict):
            raise DockyardError(f"cannot read {path}: not a JSON object")
        try:
            cfg = cls(
                # Docker accepts (and ignores) a scheme on these entries.
                insecure_registries=[str(x).split("://", 1)[-1].rstrip("/")
                                     for x in obj.get("insecure-registries") or []],
                registry_mirrors=[str(x).rstrip("/") for x in obj.get("registry-mirrors") or []],
                mirrors=_mirrors(obj.get("mirrors") or {}),
                max_concurrent_uploads=_positive(obj, "max-concurrent-uploads", 3),
                max_concurrent_downloads=_positive(obj, "max-concurrent-downloads", 3),
                max_attempts=_positive(obj, "max-download-attempts", 5),
                upload_chunk_size=_positive(obj, "upload-chunk-size", 64 << 20),
                read_timeout=_positive(obj, "read-timeout", 60.0),
                path=path,
            )
        except (TypeError, ValueError) as e:
            raise DockyardError(f"cannot read {path}: {e}") from None
        for entry in cfg.insecure_registries:
            if "/" in entry:
                try:
                    ipaddress.ip_network(entry, strict=False)
                except ValueError:
                    raise DockyardError(f"{path}: invalid CIDR in insecure-registries: {entry!r}") from None
        return cfg

    def is_insecure(self, host: str) -> bool:
        """Whether `host[:port]` may use plain HTTP or unverified TLS: listed by name, or its IP in a CIDR."""
        if host in self.insecure_registries or _hostname(host) in self.insecure_registries:
            return True
        networks = [ipaddress.ip_network(n, strict=False) for n in (*ALWAYS_INSECURE, *self.insecure_registries)
                    if "/" in n]
        return any(ip in net for ip in _addresses(_hostname(host)) for net in networks if ip.version == net.version)


def _mirrors(value: object) -> dict[str, list[str]]:
    """The `mirrors` object: registry host -> list of mirror URLs; a ValueError naming what is wrong."""
    if not isinstance(value, dict) or not all(isinstance(urls, list) and all(isinstance(u, str) for u in urls)
                                              for urls in value.values()):
        raise ValueError("mirrors must map a registry host to a list of mirror URLs")
    return {str(host): [u.rstrip("/") for u in urls] for host, urls in value.items()}


def _positive(obj: dict, key: str, default: _Number) -> _Number:
    """obj[key] (default when absent) as the default's type (int or float); a ValueError unless it is positive."""
    value = type(default)(obj.get(key, default))
    if not value > 0 or value == float("inf"):
        raise ValueError(f"{key} must be positive")
    return value


def _hostname(host: str) -> str:
    """The host part of `host[:port]`, IPv6 brackets removed."""
    if host.startswith("["):
        return host[1:host.index("]")]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _addresses(hostname: str) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IPs a host name stands for (itself when it is an IP); none when it does not resolve."""
    try:
        return [ipaddress.ip_address(hostname)]
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(hostname, None, proto=socket.IPPROTO_TCP)
    except OSError:
        return []
    return [ipaddress.ip_address(str(i[4][0]).split("%")[0]) for i in infos]
