"""`build --provenance`: an in-toto Statement v1 carrying SLSA provenance v1 for the built image, as BuildKit writes
it: min mode names the Dockerfile, the base images and the builder; max mode adds the build arguments' values."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from dockyard.digest import Digest

STATEMENT = "https://in-toto.io/Statement/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/moby/buildkit/blob/master/docs/attestations/slsa-definitions.md"
BUILDER_ID = "urn:dockyard:builder"  # a TypeURI naming this builder (BuildKit's is its own URL)


@dataclass
class BuildFacts:
    """What the provenance records of one build."""

    subject_name: str  # the image's name as a purl, or its ID
    manifest_digest: Digest
    dockerfile_path: str
    dockerfile_digest: Digest
    build_args: dict[str, str]
    target: str | None
    platform: str
    bases: dict[str, Digest]  # each FROM image reference -> its manifest digest
    invocation_id: str
    started: str
    finished: str
    version: str


def docker_purl(ref: str, platform: str) -> str:
    """`pkg:docker/NAME@TAG?platform=…`, the form BuildKit names images with (a reference it cannot parse, such
    as an image ID, as it is)."""
    from dockyard import reference
    from dockyard.errors import DockyardError

    try:
        r = reference.parse(ref)
    except DockyardError:
        return ref
    version = r.tag or str(r.digest)
    return f"pkg:docker/{r.name}@{quote(version, safe='')}?platform={quote(platform, safe='')}"


def statement(facts: BuildFacts, mode: str, builder_id: str = BUILDER_ID) -> dict[str, Any]:
    """The in-toto statement for `mode` ("min" or "max")."""
    args: dict[str, str] = {}
    if mode == "max":
        args = {f"build-arg:{k}": v for k, v in sorted(facts.build_args.items())}
    if facts.target:
        args["target"] = facts.target
    request: dict[str, Any] = {"frontend": "dockerfile.v0", "args": args}
    external = {
        "configSource": {"path": facts.dockerfile_path,
                         "digest": {facts.dockerfile_digest.algorithm: facts.dockerfile_digest.hex}},
        "request": request,
    }
    deps = [{"uri": docker_purl(ref, facts.platform), "digest": {d.algorithm: d.hex}}
            for ref, d in sorted(facts.bases.items())]
    predicate = {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": external,
            "internalParameters": {"builderPlatform": facts.platform, "buildMode": mode},
            "resolvedDependencies": deps,
        },
        "runDetails": {
            "builder": {"id": builder_id, "version": {"dockyard": facts.version}},
            "metadata": {"invocationId": facts.invocation_id, "startedOn": facts.started,
                         "finishedOn": facts.finished},
        },
    }
    return {"_type": STATEMENT, "predicateType": SLSA_V1,
            "subject": [{"name": facts.subject_name,
                         "digest": {facts.manifest_digest.algorithm: facts.manifest_digest.hex}}],
            "predicate": predicate}
