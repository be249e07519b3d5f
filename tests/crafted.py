"""Crafted images, as raw blobs, that a store must refuse: layers and diff_ids that disagree, layers that do not
unpack. Written as a registry would serve them and as docker-archive and OCI archives."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def tar_of(*entries: tarfile.TarInfo | tuple[str, bytes]) -> bytes:
    """A tar of (name, content) files and ready-made TarInfo entries (links, odd names)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for e in entries:
            if isinstance(e, tarfile.TarInfo):
                tf.addfile(e)
            else:
                info = tarfile.TarInfo(e[0])
                info.size = len(e[1])
                tf.addfile(info, io.BytesIO(e[1]))
    return raw.getvalue()


def link(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.LNKTYPE, target
    return info


@dataclass
class Crafted:
    """An image's blobs: config, gzip layers (and their tars), and the manifest naming them."""

    config: bytes
    tars: list[bytes]
    layers: list[bytes]
    manifest: bytes


def image(tars: list[bytes], diff_ids: list[str] | None = None) -> Crafted:
    """An OCI image of these layer tars; the config's diff_ids are the tars' digests unless given."""
    layers = [gzip.compress(t, mtime=0) for t in tars]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids if diff_ids is not None
                                    else [sha(t) for t in tars]}}).encode()
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(b), "size": len(b)}
                   for b in layers]}).encode()
    return Crafted(config, tars, layers, manifest)


GOOD = tar_of(("etc/hello", b"hello\n"))
OTHER = tar_of(("etc/other", b"other\n"))
# Each: the image, and a word the refusal must contain.
BAD: dict[str, tuple[Crafted, str]] = {
    "more layers than diff_ids": (image([GOOD, OTHER], [sha(GOOD)]), "diff_ids"),
    "fewer layers than diff_ids": (image([GOOD], [sha(GOOD), sha(OTHER)]), "diff_ids"),
    "diff_id not the layer's": (image([GOOD], [sha(OTHER)]), "mismatch"),
    "malformed tar": (image([b"this is not a tar archive\n" * 40]), "layer"),
    "truncated tar": (image([GOOD[:700]]), "layer"),
    "hard link out of the root": (image([tar_of(("a", b"x"), link("b", "../../../etc/passwd"))]), "outside"),
    "hard link to nothing": (image([tar_of(("a", b"x"), link("b", "/etc/shadow"))]), "links to missing"),
    "name out of the root": (image([tar_of(("../../escaped", b"x"))]), "outside"),
}


def oci_archive(c: Crafted, name: str) -> bytes:
    """The image as an oci-archive tagged `name`."""
    blobs = [c.config, *c.layers, c.manifest]
    index = {"schemaVersion": 2, "manifests": [{"mediaType": OCI_MANIFEST, "digest": sha(c.manifest),
                                                "size": len(c.manifest),
                                                "annotations": {"org.opencontainers.image.ref.name": name}}]}
    return tar_of(("oci-layout", b'{"imageLayoutVersion":"1.0.0"}'), ("index.json", json.dumps(index).encode()),
                  *((f"blobs/sha256/{sha(b)[7:]}", b) for b in blobs))


def docker_archive(c: Crafted, name: str) -> bytes:
    """The image as a docker-archive (uncompressed layer tars) tagged `name`."""
    cfg = f"{sha(c.config)[7:]}.json"
    layers = [f"{i}/layer.tar" for i in range(len(c.tars))]
    manifest = [{"Config": cfg, "RepoTags": [name], "Layers": layers}]
    return tar_of(("manifest.json", json.dumps(manifest).encode()), (cfg, c.config), *zip(layers, c.tars))
