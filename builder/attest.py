"""Build attestations: the `--sbom`, `--provenance` and `--attest` flags as docker buildx reads them, and the SBOM and
provenance documents attached to the built image in the store as OCI referrers (artifact manifests whose subject is
the image manifest), which `push` sends after the image."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace

from builder.provenance import BUILDER_ID, SLSA_V1, BuildFacts, statement
from dockyard import __version__
from dockyard import mediatypes as mt
from dockyard.digest import Digest
from dockyard.errors import DockyardError
from dockyard.image import Descriptor, Image, canonical_json
from dockyard.referrers import EMPTY_JSON, IN_TOTO_JSON, SPDX_JSON, TITLE, Referrer, artifact_manifest
from dockyard.store import Store

PREDICATE_TYPE = "in-toto.io/predicate-type"  # BuildKit's annotation on an in-toto layer
_TRUE = ("1", "t", "T", "TRUE", "true", "True")  # Go's strconv.ParseBool, which buildx uses
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


class AttestError(DockyardError):
    """An --sbom, --provenance or --attest value that cannot be honoured."""


@dataclass(frozen=True)
class Attestations:
    """Which attestations a build attaches."""

    sbom: bool = False
    provenance: str | None = None  # "min" or "max"; None: none
    builder_id: str = BUILDER_ID

    @property
    def wanted(self) -> bool:
        return self.sbom or self.provenance is not None


def is_value(word: str) -> bool:
    """Whether a word after `--sbom`/`--provenance` is their value (a boolean or KEY=VALUE), not the next argument."""
    return "=" in word or word in _TRUE + _FALSE


def canonical(kind: str, value: str) -> str:
    """buildx's CanonicalizeAttest: `--sbom VALUE` / `--provenance VALUE` as an `--attest` value."""
    if value in _TRUE or value in _FALSE:
        return f"type={kind},disabled={'false' if value in _TRUE else 'true'}"
    return f"type={kind},{value}"


def parse(values: list[tuple[str, str]]) -> Attestations:
    """The attestations asked for by (flag as written, `--attest` value) pairs; later values win, as in buildx."""
    out = Attestations()
    for written, text in values:
        fields: dict[str, str] = {}
        for part in text.split(","):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise AttestError(f"{written}: expected KEY=VALUE fields, not {part!r}")
            fields[key.strip().lower()] = value.strip()
        kind = fields.pop("type", None)
        disabled = fields.pop("disabled", "false")
        if disabled not in _TRUE + _FALSE:
            raise AttestError(f"{written}: disabled={disabled!r} is not a boolean")
        on = disabled in _FALSE
        if kind == "sbom":
            if fields:
                raise AttestError(f"{written}: {sorted(fields)[0]} is not supported for type=sbom (the built-in "
                                  "scanner reads the final image's dpkg and apk databases)")
            out = replace(out, sbom=on)
        elif kind == "provenance":
            mode = fields.pop("mode", "min")
            if mode not in ("min", "max"):
                raise AttestError(f"{written}: mode={mode!r}: expected min or max")
            version = fields.pop("version", "v1")
            if version != "v1":
                raise AttestError(f"{written}: version={version!r}: only SLSA provenance v1 is written")
            builder_id = fields.pop("builder-id", BUILDER_ID)
            if fields:
                raise AttestError(f"{written}: {sorted(fields)[0]} is not supported for type=provenance")
            out = replace(out, provenance=mode if on else None, builder_id=builder_id)
        else:
            raise AttestError(f"{written}: expected type=sbom or type=provenance")
    return out


def parse_flags(sbom_value: str | None, provenance_value: str | None, attests: list[str]) -> Attestations:
    """`--attest`, `--sbom` and `--provenance` together, as buildx merges them."""
    values = [(f"--attest {a}", a) for a in attests]
    for kind, value in (("sbom", sbom_value), ("provenance", provenance_value)):
        if value is not None:
            values.append((f"--{kind} {value}", canonical(kind, value)))
    return parse(values)


@dataclass
class Subject:
    """The built image the attestations are about, and what the provenance says of its build."""

    image: Image
    name: str  # its first tag, else its ID
    created: str  # SOURCE_DATE_EPOCH's time, else now (RFC 3339)
    facts: BuildFacts


def attach(store: Store, spec: Attestations, subject: Subject, lowerdirs: list[str], scratch: str,
           added: set[Digest], warn: Callable[[str], None]) -> list[Referrer]:
    """Make the asked-for documents and store each as a referrer of the image (replacing those of an earlier
    build of the same image)."""
    image = subject.image
    size = os.path.getsize(store.blob_path(image.manifest_digest))
    desc = Descriptor(image.manifest.get("mediaType") or mt.OCI_MANIFEST, image.manifest_digest, size)
    store.write_blob_bytes(EMPTY_JSON, added=added)
    out = []
    if spec.sbom:
        from builder import sbom, views  # the scanners and overlay views: only for a build attaching an SBOM

        with views.merged(lowerdirs, scratch) as root:
            found = sbom.scan(root, warn)
        doc = sbom.spdx_document(found, subject.name, str(image.id), subject.created, f"dockyard-{__version__}")
        out.append(_attach(store, desc, SPDX_JSON, canonical_json(doc), {TITLE: "sbom.spdx.json"}, added))
    if spec.provenance:
        document = statement(subject.facts, spec.provenance, spec.builder_id)
        out.append(_attach(store, desc, IN_TOTO_JSON, canonical_json(document),
                           {TITLE: "provenance.json", PREDICATE_TYPE: SLSA_V1}, added))
    return out


def _attach(store: Store, subject: Descriptor, artifact_type: str, data: bytes, annotations: dict[str, str],
            added: set[Digest]) -> Referrer:
    digest = store.write_blob_bytes(data, added=added)
    blob = Descriptor(artifact_type, digest, len(data), annotations)
    return store.add_referrer(artifact_manifest(subject, artifact_type, blob), added, replace=True)
