"""What image listings show of each image, read without the store's imports: index.json's entries (manifest digest
and tags) and the summaries cache, `<root>/summaries.json`: [image ID, created, unpacked size, compressed size,
platforms] by manifest digest. Content-addressed, so a cached row is never stale; only an image new to the cache
needs the store (its manifest, config and layer sizes)."""

from __future__ import annotations

import contextlib
import json
import os
import re
from typing import TypeGuard

from dockyard import mediatypes as mt
from dockyard.errors import DockyardError
from dockyard.fsutil import atomic_write, locked

# [config digest, created (RFC 3339) or None, unpacked size, compressed size, an index's platforms ("a,b" or "")]
Row = list
_ID_PREFIX = re.compile(r"^(?:sha256:)?[a-f0-9]{1,64}$")  # what Store.resolve takes for an image ID (prefix)


class InvalidIndex(DockyardError):
    """index.json holds something that is not an image entry."""


def index_path(root: str) -> str:
    """The store's OCI layout index."""
    return os.path.join(root, "images", "index.json")


def index_lock(root: str) -> str:
    """The lock index.json is read (shared) and written (exclusive) under."""
    return os.path.join(root, ".index.lock")


def index_names(root: str) -> dict[str, list[str]]:
    """Each manifest digest in index.json, as written there, with its tags in index order (a Descriptor of each
    entry would cost listings more than the rest of their work)."""
    path = index_path(root)
    try:
        with locked(index_lock(root), shared=True), open(path, "rb") as f:
            index = json.load(f)
    except FileNotFoundError:  # no store yet: made here, as any other command's first use makes it
        from dockyard.store import Store

        Store(root)
        return {}
    manifests = index.get("manifests") if isinstance(index, dict) else None
    by_digest: dict[str, list[str]] = {}
    for d in manifests if isinstance(manifests, list) else []:
        digest = d.get("digest") if isinstance(d, dict) else None
        if not isinstance(digest, str):
            raise InvalidIndex(f"{path}: an entry without a digest: {json.dumps(d)[:100]}")
        names = by_digest.setdefault(digest, [])
        annotations = d.get("annotations")
        name = annotations.get(mt.REF_NAME) if isinstance(annotations, dict) else None
        if name and isinstance(name, str):
            names.append(name)
    return by_digest


def _valid(row: object) -> TypeGuard[Row]:
    return (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str)
            and isinstance(row[1], (str, type(None))) and type(row[2]) is int and type(row[3]) is int
            and isinstance(row[4], str))


def read(root: str) -> list[tuple[str, Row, list[str]]]:
    """Every image's manifest digest, summary row and tags, in index order; rows new to the cache are computed by the
    store and the cache rewritten (racing writers each write a correct one)."""
    path = os.path.join(root, "summaries.json")
    try:
        with open(path, "rb") as f:
            cached = json.load(f)
    except (OSError, ValueError, RecursionError):  # missing or damaged: rebuilt
        cached = {}
    if not isinstance(cached, dict):
        cached = {}
    kept: dict[str, Row] = {}
    out: list[tuple[str, Row, list[str]]] = []
    store = None
    for digest, names in index_names(root).items():
        row = cached.get(digest)
        if not _valid(row):
            if store is None:
                from dockyard.store import Store  # only for images new to the cache

                store = Store(root)
            row = store.summary_row(digest)
        kept[digest] = row
        out.append((digest, row, names))
    if kept != cached:  # new images, or removed ones to forget
        with contextlib.suppress(OSError, DockyardError):  # a reader without write access still lists
            atomic_write(path, json.dumps(kept).encode(), durable=False)
    return out


def may_name_image(root: str, text: str) -> bool:
    """False when `Store.resolve(text)` must fail: a name without a digest that no index entry is tagged with (as
    given, or with the default tag) and that is no image ID prefix. Lets `inspect` pass a container's name on
    without the store's imports."""
    if "@" in text or _ID_PREFIX.match(text):
        return True
    tagged = {name for names in index_names(root).values() for name in names}
    return text in tagged or f"{text}:latest" in tagged
