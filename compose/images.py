"""Services' images: build those with `build:`, pull the others, push; a failure names the service."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any

from compose import labels
from compose.convert import image_name
from compose.errors import ComposeError
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from compose.engine import Compose


def exists(compose: Compose, service: str) -> bool:
    """Whether the service's image is in the store."""
    try:
        compose.client.images.get(image_name(compose.project, service))
    except NotFound:
        return False
    return True


def ensure(compose: Compose, services: list[str], policy: str) -> None:
    """Make every service's image present: build (missing ones, all with policy "always"), else pull."""
    for service in services:
        spec = compose.project.service(service)
        if "build" in spec and policy == "always":
            build(compose, [service])
        elif exists(compose, service):
            continue
        elif "build" in spec and policy != "never":
            build(compose, [service])
        elif "build" in spec:
            raise ComposeError(f"service {service}: image {image_name(compose.project, service)} is missing "
                               "and --no-build forbids building it")
        else:
            pull(compose, [service])


def build(compose: Compose, services: list[str], no_cache: bool = False, pull: bool = False) -> None:
    """Build the services that have a `build:` section, in order (others are skipped, as docker compose does)."""
    for service in services:
        spec = compose.project.service(service)
        if "build" not in spec:
            continue
        name = image_name(compose.project, service)
        compose.say("Service", service, "Building")
        with tempfile.TemporaryDirectory(prefix="dockyard-compose-") as scratch:
            try:
                _build_one(compose, service, spec["build"], name, scratch, no_cache, pull)
            except DockyardError as e:
                raise ComposeError(f"service {service}: build failed: {e}") from None
        compose.say("Service", service, "Built")


def _build_one(compose: Compose, service: str, b: dict, name: str, scratch: str, no_cache: bool,
               pull: bool) -> None:
    context = b.get("context", ".")
    if "://" in context or context.startswith("git@"):
        raise ComposeError(f"services.{service}.build.context: remote contexts are not supported: {context}")
    if not os.path.isdir(context):
        raise ComposeError(f"services.{service}.build.context: no such directory: {context}")
    if "dockerfile_inline" in b:
        dockerfile = os.path.join(scratch, "Dockerfile")
        with open(dockerfile, "w") as f:
            f.write(b["dockerfile_inline"])
    else:
        dockerfile = os.path.join(context, b.get("dockerfile") or "Dockerfile")
    secrets = {}
    for ref in b.get("secrets") or []:
        spec = compose.project.secrets.get(ref["source"]) or {}
        if not spec.get("file"):
            raise ComposeError(f"services.{service}.build.secrets: secret {ref['source']!r} needs a file")
        secrets[ref["source"]] = spec["file"]
    kwargs: dict[str, Any] = {"secrets": secrets} if secrets else {}
    args = {k: v for k, v in (b.get("args") or {}).items() if v is not None}
    compose.client.images.build(
        path=context, tag=name, dockerfile=dockerfile, buildargs=args, target=b.get("target"),
        nocache=no_cache, pull=pull, labels={**(b.get("labels") or {}), labels.PROJECT: compose.project.name,
                                             labels.SERVICE: service},
        **kwargs)


def pull(compose: Compose, services: list[str], ignore_failures: bool = False) -> None:
    """Pull the services' images (those that only build are skipped)."""
    for service in services:
        spec = compose.project.service(service)
        if not spec.get("image"):
            continue
        compose.say("Image", spec["image"], "Pulling")
        try:
            compose.client.images.pull(spec["image"])
        except DockyardError as e:
            if ignore_failures:
                compose.say("Warning", "", f"service {service}: pull of {spec['image']} failed: {e}")
                continue
            raise ComposeError(f"service {service}: pull of image {spec['image']} failed: {e}") from None
        compose.say("Image", spec["image"], "Pulled")


def push(compose: Compose, services: list[str]) -> None:
    """Push the images of the services that build one (docker compose pushes only those)."""
    for service in services:
        spec = compose.project.service(service)
        if "build" not in spec:
            continue
        name = image_name(compose.project, service)
        compose.say("Image", name, "Pushing")
        try:
            compose.client.images.push(name)
        except DockyardError as e:
            raise ComposeError(f"service {service}: push of {name} failed: {e}") from None
        compose.say("Image", name, "Pushed")
