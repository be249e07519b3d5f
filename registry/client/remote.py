"""Which registry and repository a reference names, and the HTTP transports that reach it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from dockyard import reference
from dockyard.errors import DockyardError
from dockyard.reference import Reference
from registry.client.config import ClientConfig
from registry.client.transport import Transport

DOCKER_HUB = ("docker.io", "index.docker.io", "registry-1.docker.io")
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class Remote:
    """A repository on a registry: `host` as dialled, `repository` as the API names it."""

    host: str
    repository: str

    def scope(self, actions: str = "pull") -> str:
        """The token scope for this repository."""
        return f"repository:{self.repository}:{actions}"


def qualify(ref: Reference) -> Reference:
    """The reference with its registry filled in from the default; a clear error when there is none."""
    if ref.registry:
        return ref
    default = reference.default_registry()
    if not default:
        raise DockyardError(
            f"{ref} names no registry and no default registry is set; use HOST[:PORT]/{ref} "
            f"or set DOCKYARD_DEFAULT_REGISTRY")
    return Reference(default, ref.repository, ref.tag, ref.digest)


def remote_for(ref: Reference) -> Remote:
    """The registry host and API repository of a qualified reference (Docker Hub's `library/` added)."""
    if ref.registry in DOCKER_HUB:
        repo = ref.repository if "/" in ref.repository else f"library/{ref.repository}"
        return Remote(DOCKER_HUB_API, repo)
    return Remote(ref.registry, ref.repository)


class Transports:
    """One pooled transport per registry host for the life of a command."""

    def __init__(self, config: ClientConfig | None = None):
        self.config = config or ClientConfig.load()
        self._by_host: dict[str, Transport] = {}

    def get(self, host: str, scheme: str | None = None) -> Transport:
        key = f"{scheme}://{host}" if scheme else host
        if key not in self._by_host:
            t = Transport(host, self.config)
            if scheme:
                t.base = f"{scheme}://{host}"
            self._by_host[key] = t
        return self._by_host[key]

    def for_pull(self, remote: Remote) -> list[Transport]:
        """Mirrors first (Docker Hub's `registry-mirrors`, as in Docker, and any registry's `mirrors`), then the
        registry itself."""
        mirrors = self.config.mirrors
        if remote.host == DOCKER_HUB_API:
            urls = [*self.config.registry_mirrors, *(m for host in DOCKER_HUB for m in mirrors.get(host, []))]
        else:
            urls = mirrors.get(remote.host, [])
        out = []
        for mirror in urls:
            u = urlsplit(mirror if "://" in mirror else f"https://{mirror}")
            if not u.netloc or u.scheme not in ("http", "https"):
                raise DockyardError(f"{self.config.path}: invalid registry mirror {mirror!r}")
            out.append(self.get(u.netloc, u.scheme))
        return [*out, self.get(remote.host)]

    def close(self) -> None:
        for t in self._by_host.values():
            t.close()
