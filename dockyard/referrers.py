"""OCI referrers (manifests whose `subject` is another manifest: SBOMs, provenance) and the store's record of them.

The store keeps a referrer untagged: it is not in index.json, and lives as long as its subject does. Its record is
one file, referrers/<subject hex>/<referrer hex>, holding the descriptor the distribution spec's referrers API
lists (mediaType, digest, size, artifactType, annotations).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass, field
from typing import Any

from dockyard import mediatypes as mt
from dockyard.digest import Digest
from dockyard.errors import DockyardError
from dockyard.fsutil import atomic_write
from dockyard.image import Descriptor, canonical_json

SPDX_JSON = "application/spdx+json"
IN_TOTO_JSON = "application/vnd.in-toto+json"
EMPTY_JSON = b"{}"  # the content of the OCI empty descriptor
TITLE = "org.opencontainers.image.title"  # the file name `oras pull` saves a layer as
RECORD_LIMIT = 64 << 10  # a record is one descriptor: anything bigger is not ours


class InvalidReferrer(DockyardError):
    """A manifest cannot be recorded as a referrer."""


@dataclass(frozen=True)
class Referrer:
    """One manifest referring to a subject, as the referrers API lists it."""

    digest: Digest
    size: int
    artifact_type: str
    annotations: dict[str, str] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"mediaType": mt.OCI_MANIFEST, "digest": str(self.digest), "size": self.size,
                               "artifactType": self.artifact_type}
        if self.annotations:
            obj["annotations"] = self.annotations
        return obj

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Referrer:
        annotations = obj.get("annotations") or {}
        if not isinstance(annotations, dict):
            raise ValueError("annotations is not an object")
        return cls(Digest.parse(obj["digest"]), int(obj["size"]), str(obj.get("artifactType") or ""),
                   {str(k): str(v) for k, v in annotations.items()})


def empty_descriptor() -> Descriptor:
    """The OCI empty descriptor: the config of an artifact manifest that has none."""
    return Descriptor(mt.OCI_EMPTY, Digest.of_bytes(EMPTY_JSON), len(EMPTY_JSON))


def artifact_manifest(subject: Descriptor, artifact_type: str, blob: Descriptor,
                      annotations: dict[str, str] | None = None) -> bytes:
    """An OCI image manifest 1.1 carrying one blob as an artifact that refers to `subject`."""
    config = empty_descriptor().to_json()
    config["data"] = "e30="  # the two bytes inline, as the image spec suggests for the empty descriptor
    manifest: dict[str, Any] = {
        "schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "artifactType": artifact_type, "config": config,
        "layers": [blob.to_json()],
        "subject": {"mediaType": subject.media_type, "digest": str(subject.digest), "size": subject.size},
    }
    if annotations:
        manifest["annotations"] = annotations
    return canonical_json(manifest)


def referrer_of(digest: Digest, manifest: bytes) -> tuple[Digest, Referrer]:
    """(subject digest, referrer record) of an artifact manifest's bytes; InvalidReferrer when it is not one."""
    try:
        obj = json.loads(manifest)
        subject = Digest.parse(obj["subject"]["digest"])
        annotations = obj.get("annotations") or {}
        artifact_type = obj.get("artifactType") or obj["config"]["mediaType"]
        if not isinstance(annotations, dict) or not isinstance(artifact_type, str):
            raise TypeError("malformed artifactType or annotations")
    except (ValueError, KeyError, TypeError, RecursionError) as e:
        raise InvalidReferrer(f"manifest {digest} is not an artifact with a subject ({e})") from None
    return subject, Referrer(digest, len(manifest), artifact_type, {str(k): str(v) for k, v in annotations.items()})


class Records:
    """The referrer records under one directory (the store's referrers/)."""

    def __init__(self, root: str):
        self.root = root

    def _dir(self, subject: Digest) -> str:
        return os.path.join(self.root, subject.hex)

    def add(self, subject: Digest, referrer: Referrer) -> None:
        os.makedirs(self._dir(subject), exist_ok=True)
        atomic_write(os.path.join(self._dir(subject), referrer.digest.hex), canonical_json(referrer.to_json()))

    def remove(self, subject: Digest, digest: Digest) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(self._dir(subject), digest.hex))

    def of(self, subject: Digest) -> list[Referrer]:
        """The subject's referrers, by digest order (a record that cannot be read is skipped: it is ours only)."""
        try:
            names = sorted(os.listdir(self._dir(subject)))
        except (FileNotFoundError, NotADirectoryError):
            return []
        out = []
        for name in names:
            with (contextlib.suppress(OSError, ValueError, KeyError, TypeError, RecursionError),
                  open(os.path.join(self._dir(subject), name), "rb") as f):
                out.append(Referrer.from_json(json.loads(f.read(RECORD_LIMIT))))
        return out

    def subjects(self) -> list[str]:
        """The hex digests of every subject with records."""
        return os.listdir(self.root) if os.path.isdir(self.root) else []

    def forget(self, subject_hex: str) -> None:
        """Drop every record of a subject (gone from the store)."""
        import shutil

        shutil.rmtree(os.path.join(self.root, subject_hex), ignore_errors=True)
