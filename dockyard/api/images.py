"""Images in docker-py's shape: `client.images.build/pull/push/list/get/remove/prune/load`, and `Image` objects."""

from __future__ import annotations

import builtins  # `builtins.list` where ImageCollection.list would shadow the type
import io
import os
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, BinaryIO

from dockyard import image as core
from dockyard import imagefilters, reference, removal
from dockyard.api.errors import APIError, BuildError, ImageNotFound, engine_errors
from dockyard.api.model import Model
from dockyard.errors import DockyardError, NotFound
from dockyard.store import Conflict, Store

if TYPE_CHECKING:
    from dockyard.api.client import Client

SAVE_CHUNK = 2 << 20  # docker-py's default chunk size for `Image.save()`


@dataclass
class HistoryEntry:
    """One step of an image's history, newest first, with the size of the layer it made (0 for config steps)."""

    created: str  # RFC 3339, as the config records it
    created_by: str
    size: int
    comment: str


def inspect(store: Store, image: core.Image) -> dict[str, Any]:
    """The `docker image inspect` object for an image (what `dockyard inspect` prints, and `Image.attrs`)."""
    tags = store.tags_of(image.top)  # a multi-platform image's tags name its index
    cfg = image.config
    return {
        "Id": str(image.id),
        "RepoTags": tags,
        "RepoDigests": sorted({f"{reference.parse(t).name}@{image.top}" for t in tags}),
        "Parent": "",
        "Comment": (cfg.get("history") or [{}])[-1].get("comment", "") if cfg.get("history") else "",
        "Created": cfg.get("created", ""),
        "Author": cfg.get("author", ""),
        "Config": cfg.get("config") or {},
        "Architecture": cfg.get("architecture", ""),
        "Variant": cfg.get("variant", ""),
        "Os": cfg.get("os", ""),
        "Size": store.unpacked_size(image),  # docker's: the layers unpacked
        "RootFS": {"Type": "layers", "Layers": [str(d) for d in image.diff_ids]},
        "Manifest": {"Digest": str(image.manifest_digest), "MediaType": image.manifest.get("mediaType", "")},
        "Metadata": {"LastTagTime": ""},
    }


def history(image: core.Image) -> list[HistoryEntry]:
    """The image's history steps, newest first, each with the size of the layer it added."""
    layers = iter(image.layers)
    out = []
    for h in image.config.get("history") or []:
        size = 0 if h.get("empty_layer") else getattr(next(layers, None), "size", 0)
        out.append(HistoryEntry(h.get("created", ""), h.get("created_by", ""), size, h.get("comment", "")))
    out.reverse()
    return out


def _resolve(store: Store, name: str) -> core.Image:
    try:
        return store.resolve(name)
    except NotFound as e:
        raise ImageNotFound(str(e)) from None


class Image(Model):
    """A stored image, as docker-py's `Image`: `.id`, `.short_id`, `.tags`, `.labels`, `.attrs`."""

    def __init__(self, collection: ImageCollection, image: core.Image):
        self.collection = collection
        self.image = image
        super().__init__(inspect(collection.store, image))

    def __repr__(self) -> str:
        return f"<Image: {', '.join(repr(t) for t in self.tags) or repr(self.short_id)}>"

    @property
    def short_id(self) -> str:
        """`sha256:` and the first 12 hex digits, as docker-py shortens it."""
        return self.id[:19]

    @property
    def tags(self) -> list[str]:
        """Its names, REPOSITORY:TAG."""
        return list(self.attrs["RepoTags"])

    @property
    def labels(self) -> dict[str, str]:
        """The labels of its config."""
        return dict(self.attrs["Config"].get("Labels") or {})

    @engine_errors()
    def reload(self) -> None:
        """Read the image's names and config again from the store."""
        self.image = self.collection.store.image(self.image.manifest_digest)
        self.attrs = inspect(self.collection.store, self.image)

    @engine_errors()
    def tag(self, repository: str, tag: str | None = None) -> bool:
        """Name the image REPOSITORY[:TAG]; True, as docker-py returns."""
        self.collection.store.tag(self.image, _name(repository, tag, forbid_digest=True))
        self.reload()
        return True

    def history(self) -> list[dict[str, Any]]:
        """The image's history, newest first, as the Engine API gives it (`Created` in Unix seconds)."""
        out = []
        for i, h in enumerate(history(self.image)):
            created = core.parse_time(h.created)
            out.append({"Id": self.id if i == 0 else "<missing>", "Created": int(created.timestamp()) if created else 0,
                        "CreatedBy": h.created_by, "Tags": self.tags if i == 0 else None, "Size": h.size,
                        "Comment": h.comment})
        return out

    @engine_errors()
    def save(self, path: str | None = None, *, named: bool = False, format: str = "docker-archive",
             chunk_size: int = SAVE_CHUNK) -> Iterator[bytes] | None:
        """The image as a tar archive: chunks of bytes (docker-py's shape), or written atomically to `path`.

        With `named` the archive records the image's names (docker-py: a name given as a str is recorded alone).
        """
        from dockyard.archive import save

        names = [named] if isinstance(named, str) else self.tags if named else []
        images = [(self.image, names)]
        if path is not None:
            save(self.collection.store, images, path, format)
            return None
        # The spool outlives this call: _chunks closes it once the caller has read it (or on an error below).
        spool = tempfile.TemporaryFile(dir=self.collection.store.tmp_dir)  # noqa: SIM115
        try:
            save(self.collection.store, images, spool, format)
            spool.seek(0)
        except BaseException:
            spool.close()
            raise
        return _chunks(spool, chunk_size)


def _chunks(f: BinaryIO, size: int) -> Iterator[bytes]:
    with f:
        while chunk := f.read(size):
            yield chunk


def _name(repository: str, tag: str | None, forbid_digest: bool = False) -> reference.Reference:
    """REPOSITORY plus an optional separate TAG, as docker-py takes names."""
    text = f"{repository}:{tag}" if tag else repository
    ref = reference.parse(text)
    if forbid_digest and ref.digest:
        raise APIError(f"refusing to create a tag with a digest reference: {text}")
    return ref


class ImageCollection:
    """The store's images (docker-py's `client.images`)."""

    def __init__(self, client: Client):
        self.client = client

    @cached_property
    def store(self) -> Store:
        """The client's store."""
        return Store(self.client.root)

    def _model(self, image: core.Image) -> Image:
        return Image(self, image)

    @engine_errors()
    def get(self, name: str) -> Image:
        """An image by name, ID or digest; ImageNotFound when there is none."""
        return self._model(_resolve(self.store, name))

    @engine_errors()
    def list(self, name: str | None = None, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[Image]:
        """Images, newest first: those named REPOSITORY[:TAG] when `name` is given; filters `dangling`, `reference`.

        `all` is accepted for docker-py's sake: dockyard has no intermediate images to hide.
        """
        terms = imagefilters.from_mapping(filters)
        found = [image for image, names in self.store.images()
                 if (any(imagefilters.listed(n, name, terms) for n in names) if names
                     else imagefilters.listed(None, name, terms))]
        found.sort(key=lambda i: -(i.created.timestamp() if i.created else 0))
        return [self._model(i) for i in found]

    @engine_errors()
    def pull(self, repository: str, tag: str | None = None, *, platform: str | None = None,
             all_tags: bool = False) -> Image | builtins.list[Image]:
        """Pull REPOSITORY[:TAG] (default `latest`) from its registry; with all_tags every tag, as a list."""
        from registry.client.transfer import pull

        pulled = pull(self.store, str(_name(repository, tag)) if tag else repository, platform=platform,
                      all_tags=all_tags)
        images = [self._model(p.image) for p in pulled]
        return images if all_tags else images[0]

    @engine_errors()
    def push(self, repository: str, tag: str | None = None) -> str:
        """Push the local REPOSITORY[:TAG] (default `latest`) to its registry; returns the manifest's digest."""
        from registry.client.transfer import push

        name = f"{repository}:{tag}" if tag else repository
        _resolve(self.store, name)  # a missing local image is ImageNotFound, as docker-py raises
        return str(push(self.store, name)[-1].digest)

    @engine_errors()
    def remove(self, image: str | Image, force: bool = False, noprune: bool = False) -> None:
        """Remove an image as `dockyard rmi` does (an extra tag is only untagged; force for one in use).

        `noprune` is accepted for docker-py's sake: dockyard images have no untagged parent images to keep.
        """
        name = image.id if isinstance(image, Image) else image
        try:
            removal.remove_image(self.store, name, force)
        except NotFound as e:
            raise ImageNotFound(str(e)) from None
        except Conflict as e:
            raise APIError(str(e)) from None
        self.store.gc()

    @engine_errors()
    def prune(self, filters: Mapping[str, Any] | None = None, *, keep_unpacked: bool = False) -> dict[str, Any]:
        """Remove images no container uses: untagged ones, or all with `{"dangling": False}`; `label` filters too.

        Then the unpacked layers no container mounts go too (they are unpacked again when used), unless
        `keep_unpacked`. SpaceReclaimed counts the bytes as du would.
        """
        pruned = removal.prune_images(self.store, imagefilters.from_mapping(filters), not keep_unpacked)
        deleted: list[dict[str, str]] = []
        for image, names in pruned.images:
            deleted += [{"Untagged": n} for n in names] + [{"Deleted": str(image.id)}]
        return {"ImagesDeleted": deleted or None, "SpaceReclaimed": pruned.reclaimed}

    @engine_errors()
    def prune_builds(self, *, keep_unpacked: bool = False) -> dict[str, Any]:
        """Remove the build cache (every step's entry and cache mount) as `dockyard builder prune` does, and the
        unpacked layers no container mounts unless `keep_unpacked`: {"CachesDeleted": count, "SpaceReclaimed"}."""
        from builder.cache import BuildCache

        count, freed = BuildCache(self.store).prune(not keep_unpacked)
        return {"CachesDeleted": count, "SpaceReclaimed": freed}

    @engine_errors()
    def load(self, data: bytes | BinaryIO | str | os.PathLike) -> builtins.list[Image]:
        """Load a docker-archive or oci-archive (bytes, a binary file, or a path); returns the images in it."""
        from dockyard.archive import load

        if isinstance(data, (bytes, bytearray)):
            loaded = load(self.store, io.BytesIO(data), "archive")
        elif isinstance(data, (str, os.PathLike)):
            with open(data, "rb") as f:
                loaded = load(self.store, f, os.fspath(data))
        else:
            loaded = load(self.store, data, "archive")
        return [self._model(item.image) for item in loaded]

    @engine_errors()
    def import_(self, source: bytes | BinaryIO | str | os.PathLike, repository: str | None = None,
                tag: str | None = None, *, changes: builtins.list[str] | None = None, message: str = "",
                compression: str = "gzip", platform: str | None = None) -> Image:
        """Import a root filesystem tarball (bytes, a binary file, or a path) as a one-layer image of `platform`
        (os/arch[/variant], default linux/amd64)."""
        from dockyard.image import Platform
        from dockyard.importer import import_rootfs

        names = [_name(repository, tag)] if repository else []
        args = (names, changes or [], message, compression, Platform.parse(platform) if platform else None)
        if isinstance(source, (str, os.PathLike)):
            with open(source, "rb") as f:
                image = import_rootfs(self.store, f, os.fspath(source), *args)
        else:
            stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
            image = import_rootfs(self.store, stream, "tarball", *args)
        return self._model(image)

    @engine_errors()
    def build(self, path: str | None = None, *, tag: str | None = None, dockerfile: str | None = None,
              buildargs: Mapping[str, str] | None = None, target: str | None = None, nocache: bool = False,
              network_mode: str | None = None, platform: str | None = None, labels: Mapping[str, str] | None = None,
              pull: bool = False, quiet: bool = True, secrets: Mapping[str, str] | None = None,
              extra_hosts: Mapping[str, str] | None = None, shmsize: int | None = None,
              cache_from: builtins.list[str] | None = None, cache_to: builtins.list[str] | None = None,
              rm: bool = True, forcerm: bool = False) -> tuple[Image, Iterator[dict[str, str]]]:
        """Build the Dockerfile in the context directory `path`; returns the image and the build's log lines.

        As docker-py, `dockerfile` is a path within the context (or an absolute one anywhere) and the log is
        `{"stream": line}` items; quiet keeps only the output of a step that fails. `secrets` (id -> host file)
        are BuildKit's `--secret id=,src=`; `extra_hosts` (host -> IP), `shmsize` (bytes) and `cache_from`
        (images) as docker-py's, `cache_from` and `cache_to` also as buildx's `--cache-from`/`--cache-to`
        (`type=registry,ref=…`); `rm`/`forcerm` are accepted (no intermediate container outlives its step).
        A failed build raises BuildError naming the failing step.
        """
        from builder.build import Builder, BuildOptions, build_platform, secret_files
        from builder.flags import RunSettings, parse_cache
        from builder.output import Progress

        if path is None:
            raise APIError("build needs a context directory: path=...")
        log = io.StringIO()
        options = BuildOptions(
            context=path, dockerfile=os.path.join(path, dockerfile) if dockerfile else None,
            tags=[tag] if tag else [], build_args=dict(buildargs or {}), target=target, no_cache=nocache, pull=pull,
            network=network_mode or "default", secrets=secret_files(dict(secrets or {})), labels=dict(labels or {}),
            platform=platform or build_platform(),
            cache_from=[parse_cache(c, "--cache-from") for c in cache_from or []],
            cache_to=[parse_cache(c, "--cache-to") for c in cache_to or []],
            run=RunSettings(extra_hosts=list((extra_hosts or {}).items()), shm_size=shmsize))
        builder = Builder(options, self.store, Progress("quiet" if quiet else "plain", log))

        def lines() -> builtins.list[dict[str, str]]:
            return [{"stream": line + "\n"} for line in log.getvalue().splitlines()]
        try:
            image = builder.build()
        except DockyardError as e:
            raise BuildError(str(e), lines()) from e
        return self._model(image), iter(lines())
