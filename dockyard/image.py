"""Image records: descriptors, manifests and configs as the OCI image spec defines them."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dockyard import mediatypes as mt
from dockyard.digest import Digest, chain_ids
from dockyard.errors import DockyardError
from dockyard.times import now_rfc3339, parse_time


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
    for d in index.get("manifests") or []:
        p = d.get("platform") or {}
        if p.get("os") == os_ and p.get("architecture") == arch and (variant is None or p.get("variant") == variant):
            return d
    return None
