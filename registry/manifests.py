"""Parsing and checking pushed manifests: structure, media type, and what they reference."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from dockyard import mediatypes as mt
from dockyard.digest import Digest, InvalidDigest
from registry.errors import RegistryError

_FOREIGN = {mt.DOCKER_LAYER_FOREIGN, "application/vnd.oci.image.layer.nondistributable.v1.tar",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
            "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd"}


@dataclass
class Descriptor:
    """The parts of an OCI descriptor the registry checks."""

    media_type: str
    digest: Digest
    size: int
    external: bool = False  # foreign / URL layers need not be in the registry
    platform: dict | None = None


@dataclass
class ParsedManifest:
    """A pushed manifest, checked for shape; `blobs` and `manifests` are what must already be in the repo."""

    media_type: str
    document: dict
    blobs: list[Descriptor] = field(default_factory=list)
    manifests: list[Descriptor] = field(default_factory=list)
    subject: Descriptor | None = None

    def referrer_descriptor(self, digest: Digest, size: int) -> dict:
        """The descriptor the referrers API lists for this manifest."""
        desc: dict = {"mediaType": self.media_type, "digest": str(digest), "size": size}
        artifact = self.document.get("artifactType")
        if not artifact and self.media_type in mt.IMAGE_MANIFESTS:
            artifact = self.document["config"]["mediaType"]
        if artifact:
            desc["artifactType"] = artifact
        if isinstance(self.document.get("annotations"), dict):
            desc["annotations"] = self.document["annotations"]
        return desc


def _invalid(detail: str) -> RegistryError:
    return RegistryError("MANIFEST_INVALID", detail)


def _descriptor(value: object, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where}: not a descriptor object")
    media_type, digest, size = value.get("mediaType"), value.get("digest"), value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}: missing mediaType")
    if not isinstance(digest, str):
        raise _invalid(f"{where}: missing digest")
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest:
        raise _invalid(f"{where}: invalid digest {digest[:150]!r}") from None
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}: size must be a non-negative integer")
    urls = value.get("urls")
    platform = value.get("platform") if isinstance(value.get("platform"), dict) else None
    return Descriptor(media_type, parsed, size, bool(urls) or media_type in _FOREIGN, platform)


def parse(data: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and check a manifest body; raise MANIFEST_INVALID with the reason."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise _invalid("manifest is not valid JSON") from None
    if not isinstance(doc, dict):
        raise _invalid("manifest is not a JSON object")
    declared = doc.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType must be a string")
    if declared and content_type and declared != content_type:
        raise _invalid(f"mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = declared or content_type
    if media_type not in mt.MANIFESTS:
        raise _invalid(f"unsupported manifest media type {str(media_type)[:150]!r}")
    if doc.get("schemaVersion") != 2 or isinstance(doc.get("schemaVersion"), bool):
        raise _invalid("schemaVersion must be 2")
    parsed = ParsedManifest(media_type, doc)
    if media_type in mt.IMAGE_MANIFESTS:
        parsed.blobs.append(_descriptor(doc.get("config"), "config"))
        layers = doc.get("layers")
        if not isinstance(layers, list):
            raise _invalid("layers must be a list")
        parsed.blobs.extend(_descriptor(layer, f"layers[{i}]") for i, layer in enumerate(layers))
    else:
        children = doc.get("manifests")
        if not isinstance(children, list):
            raise _invalid("manifests must be a list")
        parsed.manifests.extend(_descriptor(m, f"manifests[{i}]") for i, m in enumerate(children))
    if "subject" in doc:
        parsed.subject = _descriptor(doc["subject"], "subject")
    if "artifactType" in doc and not isinstance(doc["artifactType"], str):
        raise _invalid("artifactType must be a string")
    return parsed


def references(data: bytes) -> tuple[list[Digest], list[Digest], Digest | None]:
    """(blob digests, child manifest digests, subject) of a stored manifest; empty when unparsable (for GC)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return [], [], None
    if not isinstance(doc, dict):
        return [], [], None

    def digests(items: object) -> list[Digest]:
        out = []
        for item in items if isinstance(items, list) else []:
            try:
                out.append(Digest.parse(item["digest"]))
            except (TypeError, KeyError, InvalidDigest):
                continue
        return out

    blobs = digests([doc.get("config")] + (doc.get("layers") if isinstance(doc.get("layers"), list) else []))
    subject = digests([doc.get("subject")])
    return blobs, digests(doc.get("manifests")), subject[0] if subject else None
