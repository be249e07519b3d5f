"""Image records: descriptors, manifests and configs as the OCI image spec defines them."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from dockyard import mediatypes as mt
from dockyard.digest import Digest, chain_ids
from dockyard.errors import DockyardError
from dockyard.machine import machine
from dockyard.times import now_rfc3339, parse_time

if TYPE_CHECKING:
    from datetime import datetime


class InvalidImage(DockyardError):
    """An image's manifest and config do not describe the same layers."""


@dataclass(frozen=True)
class Descriptor:
    """An OCI content descriptor."""

    media_type: str
    digest: Digest
    size: int
    annotations: dict[str, str] = field(default_factory=dict, compare=False)
    platform: dict[str, Any] | None = field(default=None, compare=False)
    urls: tuple[str, ...] = field(default=(), compare=False)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Descriptor:
        """Parse a descriptor object, validating its digest."""
        urls = obj.get("urls")
        return cls(obj.get("mediaType", ""), Digest.parse(obj["digest"]), int(obj["size"]),
                   dict(obj.get("annotations") or {}), obj.get("platform"),
                   tuple(u for u in urls if isinstance(u, str)) if isinstance(urls, list) else ())

    def to_json(self) -> dict[str, Any]:
        """The descriptor as a JSON object."""
        obj: dict[str, Any] = {"mediaType": self.media_type, "digest": str(self.digest), "size": self.size}
        if self.urls:
            obj["urls"] = list(self.urls)
        if self.platform:
            obj["platform"] = self.platform
        if self.annotations:
            obj["annotations"] = self.annotations
        return obj

    @property
    def external(self) -> bool:
        """A layer a registry need not hold: foreign (non-distributable) or fetched from its own URLs."""
        return bool(self.urls) or self.media_type in mt.NONDISTRIBUTABLE_LAYERS


def canonical_json(obj: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no spaces), so equal content gives equal digests."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass
class Image:
    """An image manifest with its config, as held in a store."""

    manifest_digest: Digest
    manifest: dict[str, Any]
    config: dict[str, Any]
    index: Digest | None = None  # the image index it was picked from, for a multi-platform image

    @property
    def top(self) -> Digest:
        """What a tag of this image points at: its index, or its manifest."""
        return self.index or self.manifest_digest

    @property
    def id(self) -> Digest:
        """Docker's image ID: the config digest."""
        return Digest.parse(self.manifest["config"]["digest"])

    @property
    def layers(self) -> list[Descriptor]:
        """The layer descriptors, base first."""
        return [Descriptor.from_json(d) for d in self.manifest.get("layers") or []]

    @property
    def diff_ids(self) -> list[Digest]:
        """The uncompressed layer digests from the config."""
        return [Digest.parse(d) for d in (self.config.get("rootfs") or {}).get("diff_ids") or []]

    @property
    def chain_ids(self) -> list[Digest]:
        """Chain IDs of the layer stack, base first."""
        return chain_ids(self.diff_ids)

    def layer_stack(self) -> list[tuple[Descriptor, Digest, Digest]]:
        """Each layer's descriptor, diff_id and chain ID, base first; an error unless every layer has one diff_id."""
        layers, diff_ids = self.layers, self.diff_ids
        if len(layers) != len(diff_ids):
            # Pairing them up would silently drop the extra layers (or unpack a layer under the wrong ID).
            raise InvalidImage(f"image {self.id}: its manifest lists {len(layers)} layers but its config "
                               f"{len(diff_ids)} diff_ids")
        return list(zip(layers, diff_ids, chain_ids(diff_ids), strict=True))

    @property
    def size(self) -> int:
        """Bytes of config and layer blobs."""
        # From the JSON directly: listings sum this for every image, and parsing descriptors would double their time.
        return int(self.manifest["config"]["size"]) + sum(int(d["size"]) for d in self.manifest.get("layers") or [])

    @property
    def created(self) -> datetime | None:
        """When the image was created, from its config."""
        return parse_time(self.config.get("created"))


def empty_config(created: str | None = None) -> dict[str, Any]:
    """A fresh linux/amd64 image config with no layers."""
    return {
        "created": created or now_rfc3339(),
        "architecture": "amd64",
        "os": "linux",
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }


def manifest_for(config_desc: Descriptor, layers: list[Descriptor],
                 annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI image manifest for a config and layers."""
    m: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": mt.OCI_MANIFEST,
        "config": config_desc.to_json(),
        "layers": [d.to_json() for d in layers],
    }
    if annotations:
        m["annotations"] = annotations
    return m


# Docker schema2 media types and their OCI equivalents, for converting on load.
_TO_OCI = {
    mt.DOCKER_MANIFEST: mt.OCI_MANIFEST,
    mt.DOCKER_CONFIG: mt.OCI_CONFIG,
    mt.DOCKER_LAYER_GZIP: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LAYER_ZSTD: mt.OCI_LAYER_ZSTD,
    mt.DOCKER_LAYER_FOREIGN: mt.OCI_LAYER_GZIP,
    mt.DOCKER_LIST: mt.OCI_INDEX,
}


def to_oci_manifest(manifest: dict[str, Any]) -> dict[str, Any]:
    """Convert a Docker schema2 manifest to an OCI manifest; an OCI one is returned unchanged."""
    if manifest.get("mediaType") != mt.DOCKER_MANIFEST:
        return manifest
    out = dict(manifest)
    out["mediaType"] = mt.OCI_MANIFEST
    out["config"] = dict(manifest["config"], mediaType=mt.OCI_CONFIG)
    out["layers"] = [dict(layer, mediaType=_TO_OCI.get(layer.get("mediaType"), layer.get("mediaType")))
                     for layer in manifest.get("layers") or []]
    out.pop("urls", None)
    return out


def select_platform(index: dict[str, Any], os_: str = "linux", arch: str = "amd64",
                    variant: str | None = None) -> dict[str, Any] | None:
    """The descriptor in an index or manifest list that matches the platform, or None."""
    wanted = Platform(os_, arch, variant)
    for d in index.get("manifests") or []:
        if wanted.matches(d.get("platform") or {}):
            return d
    return None


class InvalidPlatform(DockyardError):
    """A platform string is not os/arch[/variant]."""


_PLATFORM_PART = re.compile(r"[a-z0-9][a-z0-9_]{0,31}")
# containerd's normalization: architecture aliases, and the variant a bare name means.
_ARCH_ALIASES = {"x86_64": ("amd64", None), "x86-64": ("amd64", None), "aarch64": ("arm64", None),
                 "armhf": ("arm", "v7"), "armel": ("arm", "v6"), "i386": ("386", None), "i686": ("386", None)}
_DEFAULT_VARIANT = {"arm": "v7"}
_DROPPED_VARIANT = {("arm64", "v8"), ("amd64", "v1")}


@dataclass(frozen=True)
class Platform:
    """An os/arch[/variant], normalized as containerd does (aarch64 is arm64, arm means arm/v7)."""

    os: str = "linux"
    architecture: str = "amd64"
    variant: str | None = None

    def __post_init__(self) -> None:
        arch, variant = _ARCH_ALIASES.get(self.architecture, (self.architecture, None))
        variant = self.variant or variant or _DEFAULT_VARIANT.get(arch)
        object.__setattr__(self, "architecture", arch)
        object.__setattr__(self, "variant", None if (arch, variant) in _DROPPED_VARIANT else variant)

    @classmethod
    def parse(cls, text: str | None) -> Platform:
        """`os/arch[/variant]`; None means the host's platform."""
        if text is None:
            return cls.host()
        parts = text.strip().lower().split("/")
        if len(parts) not in (2, 3) or not all(_PLATFORM_PART.fullmatch(p) for p in parts):
            shown = text if len(text) <= 80 else text[:79] + "…"
            raise InvalidPlatform(f"invalid platform {shown!r}: expected os/arch[/variant], e.g. linux/arm64")
        return cls(parts[0], parts[1], parts[2] if len(parts) == 3 else None)

    @classmethod
    def parse_list(cls, text: str) -> list[Platform]:
        """A comma-separated `--platform` list, each once, in the order given."""
        out: list[Platform] = []
        for item in text.split(","):
            p = cls.parse(item)
            if p not in out:
                out.append(p)
        return out

    @classmethod
    def host(cls) -> Platform:
        """The platform this machine runs natively: this interpreter's (machine())."""
        return cls("linux", machine())

    @classmethod
    def of(cls, obj: dict[str, Any]) -> Platform | None:
        """The platform a descriptor's `platform` or an image config names, None when it names none."""
        os_, arch, variant = obj.get("os"), obj.get("architecture"), obj.get("variant")
        if not isinstance(os_, str) or not isinstance(arch, str) or not os_ or not arch:
            return None
        return cls(os_, arch, variant if isinstance(variant, str) and variant else None)

    def matches(self, obj: dict[str, Any]) -> bool:
        """Whether a descriptor's platform (or a config) is this one; a variant left out here matches any."""
        other = Platform.of(obj)
        return other is not None and (other.os, other.architecture) == (self.os, self.architecture) and \
            (self.variant is None or other.variant == self.variant)

    def to_json(self) -> dict[str, str]:
        """The platform object of an OCI descriptor."""
        out = {"architecture": self.architecture, "os": self.os}
        if self.variant:
            out["variant"] = self.variant
        return out

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def index_for(children: list[tuple[Descriptor, Platform]],
              annotations: dict[str, str] | None = None) -> dict[str, Any]:
    """An OCI image index of platform-specific manifests."""
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                             "manifests": [Descriptor(d.media_type, d.digest, d.size, platform=p.to_json()).to_json()
                                           for d, p in children]}
    if annotations:
        index["annotations"] = annotations
    return index
