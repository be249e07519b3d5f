"""Pull and push whole images by reference: the orchestration the CLI, the builder and the Python API share."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

from dockyard import reference
from dockyard.digest import Digest
from dockyard.errors import DockyardError
from dockyard.fsutil import reuse_freed_buffers
from dockyard.image import Image
from dockyard.reference import Reference
from dockyard.store import Store
from registry.client.progress import Progress
from registry.client.pull import Platform, pull_image
from registry.client.referrers import Listing, pull_referrers, update_tag_schema
from registry.client.remote import Transports, qualify, remote_for
from registry.client.search import list_tags


@dataclass
class Pulled:
    """One pulled image: the name the store keeps it under, its manifest digest, and whether anything new arrived."""

    reference: Reference
    digest: Digest
    image: Image
    downloaded: bool


@dataclass
class Pushed:
    """One pushed image: the remote reference as `dockyard push -q` prints it, and the manifest's digest and size."""

    reference: str
    digest: Digest
    size: int


def pull(store: Store, name: str, *, platform: str | None = None, all_tags: bool = False, parallel: int | None = None,
         progress: Progress | None = None, on_pulled: Callable[[Pulled], None] | None = None) -> list[Pulled]:
    """Pull NAME[:TAG|@DIGEST] (its default tag `latest`; every tag with all_tags) into the store.

    `progress` receives docker's status lines and per-layer events; `on_pulled` hears of each image as it lands
    (a multi-tag pull reports each before the next begins).
    """
    progress = progress or Progress()
    given = reference.parse(name, default_tag=False)
    if all_tags and (given.tag or given.digest):
        raise DockyardError(f"tag can't be used with --all-tags/-a: {name}")
    reuse_freed_buffers()  # the layers stream through ~1 MiB buffers on several threads
    wanted = Platform.parse(platform)
    target = qualify(given)
    remote = remote_for(target)
    transports = Transports()
    pulled: list[Pulled] = []
    try:
        candidates = transports.for_pull(remote)
        if all_tags:
            refs = [target.with_tag(tag) for tag in list_tags(candidates[-1], remote)]
            if not refs:
                raise DockyardError(f"{target.name} has no tags")
        else:
            if not given.tag and not given.digest:
                progress.message("Using default tag: latest")
            refs = [target if (target.tag or target.digest) else target.with_tag("latest")]
        parallel = parallel or transports.config.max_concurrent_downloads
        for ref in refs:
            # The store keeps the name as the user wrote it (an unqualified name means the default registry).
            local = ref if given.registry else dataclasses.replace(ref, registry="")
            progress.message(f"{ref.tag or ref.digest}: Pulling from {remote.repository}")
            listing = Listing(candidates, remote)  # the image's referrers, listed while its layers download
            result = pull_image(store, candidates, remote, ref, [local], wanted, progress, parallel, listing)
            pull_referrers(store, remote, result.digest, listing, progress)
            progress.close()
            progress.message(f"Digest: {result.digest}")
            status = "Downloaded newer image" if result.downloaded else "Image is up to date"
            progress.message(f"Status: {status} for {local}")
            pulled.append(Pulled(local, result.digest, result.image, result.downloaded))
            if on_pulled:
                on_pulled(pulled[-1])
    finally:
        progress.close()
        transports.close()
    return pulled


def push(store: Store, source: str, destination: str | None = None, *, all_tags: bool = False,
         parallel: int | None = None, progress: Progress | None = None,
         on_pushed: Callable[[Pushed], None] | None = None) -> list[Pushed]:
    """Push the local image SOURCE to DESTINATION (default: SOURCE's own name; its tag defaults to `latest`).

    With all_tags SOURCE is a repository and each of its local tags goes; `progress` receives docker's status
    lines and per-layer events, `on_pushed` hears of each image as its manifest lands.
    """
    from registry.client.push import MountSources, push_image, push_index  # ~5 ms to import: not on a pull

    progress = progress or Progress()
    src = reference.parse(source, default_tag=not all_tags)
    ref = reference.parse(destination, default_tag=not all_tags) if destination else src
    if all_tags and (src.tag or src.digest or ref.tag or ref.digest):
        raise DockyardError(f"tag can't be used with --all-tags/-a: {destination or source}")
    if all_tags:
        named = [(image, reference.parse(n)) for image, names in store.images() for n in names]
        jobs = [(image, r.tag) for image, r in named if r.name == src.name and r.tag]
        if not jobs:
            raise DockyardError(f"An image does not exist locally with the tag: {src.name}")
    else:
        jobs = [(store.resolve(source), ref.tag or str(ref.digest))]
    target = qualify(ref)
    remote = remote_for(target)
    transports = Transports()
    t = transports.get(remote.host)
    pushed: list[Pushed] = []
    try:
        sources = MountSources(store, remote)
        parallel = parallel or transports.config.max_concurrent_uploads
        progress.message(f"The push refers to repository [{target.name}]")
        for image, tag in jobs:
            if image.index is not None:
                result = push_index(store, t, remote, image.index, tag, progress, parallel, sources)
            else:
                result = push_image(store, t, remote, image, tag, progress, parallel, sources)
            progress.close()
            progress.message(f"{tag}: digest: {result.digest} size: {result.size}")
            # Its referrers (SBOM, provenance) after it: a registry may refuse a subject it does not hold.
            referrers = store.referrers(image.manifest_digest)
            for referrer in referrers:
                push_image(store, t, remote, store.image(referrer.digest), str(referrer.digest), Progress(),
                           parallel, sources)
                progress.message(f"{referrer.artifact_type}: digest: {referrer.digest} size: {referrer.size}")
            update_tag_schema(t, remote, image.manifest_digest, referrers)
            pushed.append(Pushed(f"{target.name}{'@' if ref.digest else ':'}{tag}", result.digest, result.size))
            if on_pushed:
                on_pushed(pushed[-1])
    finally:
        progress.close()
        transports.close()
    return pushed
