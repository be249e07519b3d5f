"""The v2 API's hooks into the product's model (`--projects`): each is a no-op without it, so the plain
registry's path stays as it was. The model is imported only when it is on (SQLAlchemy is heavy)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from flask import Request, request

from dockyard.digest import Digest
from dockyard.distribution import RegistryError
from registry.auth import generation_of
from registry.context import state
from registry.model import lazy

if TYPE_CHECKING:
    from registry.context import Registry
    from registry.model.artifacts import Manifest
    from registry.model.policy import Actor, Refused


def actor() -> Actor:
    """Who makes this request, for the model's events."""
    environ = request.environ  # once: each use of Flask's request proxy costs a context lookup
    return lazy("policy").Actor(environ.get("registry.user") or "", environ.get("REMOTE_ADDR") or "")


def as_registry_error(e: Refused) -> RegistryError:
    """A policy's refusal as the distribution API's error."""
    return RegistryError(e.code, None, e.status, e.message)


def charge_blob(name: str, digest: Digest, size: int) -> None:
    """Count a blob that just arrived in `name` in its project's quota; over the quota, unlink it and refuse."""
    reg = state()
    if reg.model is None:
        return
    lazy("artifacts").ensure_indexed(reg.model, reg.storage)
    try:
        lazy("quota").charge_blob(reg.model, name, str(digest), size, actor())
    except lazy("policy").Refused as e:
        reg.storage.unlink_blob(name, digest)
        raise as_registry_error(e) from None


@contextmanager
def _policies() -> Iterator[None]:
    """Answer a policy's refusal as the distribution API's error."""
    try:
        yield
    except lazy("policy").Refused as e:
        raise as_registry_error(e) from None


def admit_push(name: str, digest: Digest, data: bytes, media_type: str, tag: str | None) -> Manifest | None:
    """Before a manifest is stored: refuse what the project's policies forbid; the manifest as the index reads it
    (None without the model)."""
    reg = state()
    if reg.model is None:
        return None
    artifacts = lazy("artifacts")
    artifacts.ensure_indexed(reg.model, reg.storage)
    manifest = artifacts.read_manifest(str(digest), data, media_type)
    with _policies():
        artifacts.admit_push(reg.model, reg.storage, name, manifest, tag, actor())
    return manifest


def record_push(name: str, manifest: Manifest | None, tag: str | None) -> None:
    """After a manifest (and its tag) is stored: index it."""
    reg = state()
    if reg.model is None or manifest is None:
        return
    with _policies():
        lazy("artifacts").record_push(reg.model, reg.storage, name, manifest, tag, actor(), request.host)


def check_pull(reg: Registry, req: Request, name: str, digest: Digest) -> None:
    """Before a manifest is served: refuse it when the project's content trust wants a signature it lacks. `reg` and
    `req`: the app's state and the request itself, which the caller holds (each read through Flask's proxies costs a
    context lookup, on the registry's busiest path)."""
    if reg.model is None:
        return
    try:  # not _policies(): a generator's context costs more than the check when content trust is off
        lazy("trust").check_pull(reg.model, name, digest, generation_of(req.environ, reg.model))
    except lazy("policy").Refused as e:
        raise as_registry_error(e) from None


def record_pull(reg: Registry, req: Request, name: str, digest: str, tag: str | None) -> None:
    """After a manifest is served to a GET (not a HEAD): queue the pull's event, time and count (written in batches).
    `reg` and `req` as for check_pull; `digest` as text (the caller made it for its headers)."""
    if reg.model is None:
        return
    environ = req.environ
    lazy("artifacts").record_pull(reg.model, name, digest, tag, environ.get("registry.user") or "",
                                   environ.get("REMOTE_ADDR") or "", req.host)


def delete_tag(name: str, tag: str) -> bool | None:
    """Delete a tag through the model (policies, index, events): whether it existed; None without the model."""
    reg = state()
    if reg.model is None:
        return None
    artifacts = lazy("artifacts")
    artifacts.ensure_indexed(reg.model, reg.storage)
    with _policies():
        return artifacts.delete_tag(reg.model, reg.storage, name, tag, actor(), request.host)


def delete_artifact(name: str, digest: Digest) -> bool | None:
    """Delete a manifest through the model (policies, index, quota, events): whether the repository held it; None
    without the model."""
    reg = state()
    if reg.model is None:
        return None
    artifacts = lazy("artifacts")
    artifacts.ensure_indexed(reg.model, reg.storage)
    with _policies():
        return artifacts.delete_artifact(reg.model, reg.storage, name, str(digest), actor(), request.host)
