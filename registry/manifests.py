"""Parsing and checking pushed manifests: structure, media type, and what they reference."""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, TypeVar, overload

from dockyard import mediatypes as mt
from dockyard.digest import Digest, InvalidDigest
from dockyard.distribution import RegistryError
from dockyard.image import Descriptor

if TYPE_CHECKING:
    from registry.storage.layout import Layout

T = TypeVar("T")


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


# Deeper JSON is refused: real manifests nest about five levels, and a bound keeps parsing and checking linear.
MAX_DEPTH = 64
SIZE_MAX = 2 ** 63 - 1  # the spec's int64 sizes
# RFC 6838 type/subtype, as the OCI schema's mediaType pattern.
_MEDIA_TYPE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}")
_URI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:[^\s]+")  # absolute URI: scheme, colon, no whitespace
_PLATFORM_STRINGS = ("architecture", "os", "os.version", "variant")


def _invalid(where: str, reason: str) -> RegistryError:
    where = where[:200]
    return RegistryError("MANIFEST_INVALID", {"field": where, "reason": reason},
                         message=f"manifest invalid: {where}: {reason}" if where else f"manifest invalid: {reason}")


def load_json(data: bytes) -> object:
    """Parse a request's JSON body, refusing (MANIFEST_INVALID) bad JSON and nesting deeper than MAX_DEPTH."""
    try:
        doc = json.loads(data)
    except RecursionError:  # the C parser gives up cleanly around a thousand levels
        raise _invalid("", f"nested deeper than {MAX_DEPTH} levels") from None
    except (ValueError, UnicodeDecodeError):
        raise _invalid("", "not valid JSON") from None
    pending = [(doc, 1)]
    while pending:
        value, depth = pending.pop()
        children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_DEPTH:
                    raise _invalid("", f"nested deeper than {MAX_DEPTH} levels")
                pending.append((child, depth + 1))
    return doc


@overload
def _string(doc: dict, key: str, where: str, required: Literal[True]) -> str: ...
@overload
def _string(doc: dict, key: str, where: str, required: bool = False) -> str | None: ...
def _string(doc: dict, key: str, where: str, required: bool = False) -> str | None:
    value = doc.get(key)
    if value is None and key not in doc and not required:
        return None
    if not isinstance(value, str):
        raise _invalid(f"{where}{key}", "required" if key not in doc else "must be a string")
    return value


@overload
def _media_type(doc: dict, key: str, where: str, required: Literal[True]) -> str: ...
@overload
def _media_type(doc: dict, key: str, where: str, required: bool = False) -> str | None: ...
def _media_type(doc: dict, key: str, where: str, required: bool = False) -> str | None:
    value = _string(doc, key, where, required)
    if value is not None and not _MEDIA_TYPE_RE.fullmatch(value):
        raise _invalid(f"{where}{key}", f"{value[:100]!r} is not a media type (type/subtype)")
    return value


def _string_list(doc: dict, key: str, where: str) -> list[str]:
    value = doc.get(key, [])
    if not isinstance(value, list):
        raise _invalid(f"{where}{key}", "must be an array of strings")
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise _invalid(f"{where}{key}[{i}]", "must be a string")
    return value


def _annotations(doc: dict, where: str) -> dict[str, str]:
    value = doc.get("annotations", {})
    if not isinstance(value, dict):
        raise _invalid(f"{where}annotations", "must be an object of strings")
    for key, item in value.items():
        if not isinstance(item, str):
            raise _invalid(f"{where}annotations", f"value of {key[:100]!r} must be a string")
    return value


def _platform(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise _invalid(where, "must be an object with architecture and os")
    for key in _PLATFORM_STRINGS:
        _string(value, key, f"{where}.", required=key in ("architecture", "os"))
    _string_list(value, "os.features", f"{where}.")
    return value


def _descriptor(value: object, where: str, index_child: bool = False) -> Descriptor:
    """Check an OCI content descriptor (content-descriptor.json; with platform for an index's children)."""
    if not isinstance(value, dict):
        raise _invalid(where, "must be a descriptor object")
    prefix = f"{where}."
    media_type = _media_type(value, "mediaType", prefix, required=True)
    digest = _string(value, "digest", prefix, required=True)
    try:
        parsed = Digest.parse(digest)
    except InvalidDigest:
        raise _invalid(f"{prefix}digest", f"{digest[:150]!r} is not a sha256 or sha512 digest") from None
    size = value.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or not 0 <= size <= SIZE_MAX:
        raise _invalid(f"{prefix}size", "required, an integer from 0 to 2^63-1")
    urls = _string_list(value, "urls", prefix)
    for i, url in enumerate(urls):
        if not _URI_RE.fullmatch(url):
            raise _invalid(f"{prefix}urls[{i}]", "must be an absolute URI")
    data = _string(value, "data", prefix)
    if data is not None:
        try:
            base64.b64decode(data, validate=True)
        except binascii.Error:
            raise _invalid(f"{prefix}data", "must be base64") from None
    _media_type(value, "artifactType", prefix)
    annotations = _annotations(value, prefix)
    platform = _platform(value["platform"], f"{prefix}platform") if index_child and "platform" in value else None
    return Descriptor(media_type, parsed, size, annotations, platform, tuple(urls))


def _descriptors(doc: dict, key: str, index_child: bool = False) -> list[Descriptor]:
    value = doc.get(key)
    if not isinstance(value, list):
        raise _invalid(key, "required, an array of descriptors")
    return [_descriptor(item, f"{key}[{i}]", index_child) for i, item in enumerate(value)]


def parse(data: bytes, content_type: str | None) -> ParsedManifest:
    """Parse and check a manifest body against the OCI image-manifest or image-index schema (Docker schema2
    manifests and lists have the same shape); raise MANIFEST_INVALID naming the bad field."""
    doc = load_json(data)
    if not isinstance(doc, dict):
        raise _invalid("", "not a JSON object")
    declared = _media_type(doc, "mediaType", "")
    if declared and content_type and declared != content_type:
        raise _invalid("mediaType", f"{declared!r} does not match Content-Type {content_type[:100]!r}")
    media_type = declared or content_type
    if media_type not in mt.MANIFESTS:
        raise _invalid("mediaType", f"unsupported manifest media type {str(media_type)[:150]!r}")
    version = doc.get("schemaVersion")
    if not isinstance(version, int) or isinstance(version, bool) or version != 2:
        raise _invalid("schemaVersion", "required, the integer 2")
    _media_type(doc, "artifactType", "")
    _annotations(doc, "")
    parsed = ParsedManifest(media_type, doc)
    if media_type in mt.IMAGE_MANIFESTS:
        # The schema's minItems 1 for layers is not enforced: the spec's text says only SHOULD, and images
        # with no layers (FROM scratch, artifacts) are pushed by real clients.
        parsed.blobs.append(_descriptor(doc.get("config"), "config"))
        parsed.blobs.extend(_descriptors(doc, "layers"))
    else:
        parsed.manifests.extend(_descriptors(doc, "manifests", index_child=True))
    if "subject" in doc:
        parsed.subject = _descriptor(doc["subject"], "subject")
    return parsed


def references(data: bytes) -> tuple[list[Digest], list[Digest], Digest | None]:
    """(blob digests, child manifest digests, subject) of a stored manifest; empty when unparsable (for GC)."""
    try:
        doc = load_json(data)
    except RegistryError:
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

    layers = doc.get("layers")
    blobs = digests([doc.get("config"), *(layers if isinstance(layers, list) else [])])
    subject = digests([doc.get("subject")])
    return blobs, digests(doc.get("manifests")), subject[0] if subject else None


@dataclass
class Stored:
    """A manifest stored by `store`: its digest and the subject it refers to (if any)."""

    digest: Digest
    subject: Digest | None


def store(storage: Layout, name: str, reference: str, data: bytes, content_type: str | None,
          admit: Callable[[Digest, str, str | None], T], record: Callable[[T, str | None], None]) -> Stored:
    """Validate and store a pushed manifest (by tag or digest), tag it, index it as a referrer if it has a subject:
    the v2 API's PUT and replication's writes share this. `admit` may refuse the push before anything is stored
    (the product's policies) and returns what `record` gets once it is."""
    from registry.names import is_tag, parse_digest
    by_digest = ":" in reference
    expected = parse_digest(reference) if by_digest else None
    if not by_digest and not is_tag(reference):
        raise RegistryError("MANIFEST_INVALID", {"tag": reference[:200]}, message="invalid tag")
    parsed = parse(data, content_type)
    digest = Digest.of_bytes(data, expected.algorithm if expected else "sha256")
    if expected is not None and expected != digest:
        raise RegistryError("DIGEST_INVALID", {"expected": str(expected), "actual": str(digest)})
    for desc in parsed.blobs:
        if desc.external:
            continue
        info = storage.blob_linked(name, desc.digest)
        # link_blob refreshes the blob's use time, so GC cannot take it while this manifest is being stored.
        if info is None or not storage.link_blob(name, desc.digest, linked=True):
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digest": str(desc.digest)})
        if info.size != desc.size:
            raise RegistryError("MANIFEST_INVALID", {"digest": str(desc.digest), "size": desc.size,
                                                     "stored": info.size}, message="blob size mismatch")
    for desc in parsed.manifests:
        if storage.manifest_media_type(name, desc.digest) is None or not storage.link_blob(name, desc.digest):
            raise RegistryError("MANIFEST_BLOB_UNKNOWN", {"digest": str(desc.digest)})
    tag = None if by_digest else reference
    admitted = admit(digest, parsed.media_type, tag)
    storage.put_manifest(name, digest, data, parsed.media_type)
    if parsed.subject is not None:
        storage.add_referrer(name, parsed.subject.digest, parsed.referrer_descriptor(digest, len(data)))
    if tag is not None:
        storage.set_tag(name, tag, digest)
    record(admitted, tag)
    return Stored(digest, parsed.subject.digest if parsed.subject is not None else None)
