"""What a power loss can leave behind: every unpacked layer directory is published (renamed into layers/) only once
its files are on disk, the rename itself is made durable, and the blobs' names are on disk before index.json names
an image made of them; a new store's directories, and a referrer's blobs before its record, likewise. Checked in the
syscalls of a real `dockyard pull` (from distribution on loopback), of a real `dockyard build` with a RUN step, and
of the store's own calls, traced by strace; and a big unpacked file is sent to the disk as it is written."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from client.registries import start_distribution
from crafted import image, tar_of
from support import run_cli, strace_python

from dockyard.reference import parse
from dockyard.store import Store

# A tree is touched by opening and closing its files (-y shows each fd's path); a blob's temp file by its writes.
_TRACED = "syncfs,fsync,rename,renameat,renameat2,openat,close,mkdir,mkdirat,write"
_RENAMES = ("rename", "renameat", "renameat2")


@dataclass
class Call:
    """One traced system call: its arguments (fds shown with their paths), where it began and ended in the log."""

    name: str
    args: str
    start: int
    end: int
    result: str

    @property
    def paths(self) -> list[str]:
        return re.findall(r'"([^"]*)"', self.args)


def _traced(root: str, *args: str, env: dict[str, str] | None = None) -> list[Call]:
    """Run `python3 ARGS` (the CLI: -m dockyard ...) under strace -f; its calls of _TRACED in the order they began."""
    lines = strace_python(root, _TRACED, *args, env=env, fd_paths=True).splitlines()
    calls: list[Call] = []
    pending: dict[tuple[str, str], Call] = {}
    for i, line in enumerate(lines):
        pid, _, rest = line.partition(" ")
        rest = rest.lstrip()
        if m := re.match(r"<\.\.\. (\w+) resumed>(.*)", rest):
            call = pending.pop((pid, m.group(1)))
            call.end, call.result = i, m.group(2).rpartition("= ")[2]
        elif m := re.match(r"(\w+)\((.*)", rest):
            unfinished = m.group(2).endswith("<unfinished ...>")
            call = Call(m.group(1), m.group(2), i, -1 if unfinished else i,
                        "" if unfinished else m.group(2).rpartition("= ")[2])
            calls.append(call)
            if unfinished:
                pending[(pid, call.name)] = call
    return calls


def _entries(published: str, tree: str) -> set[str]:
    """The files and directories (the root too) of a published layer, named as they were in the tree before."""
    found = {tree}
    for top, dirs, files in os.walk(published):
        found.update(os.path.join(tree, os.path.relpath(os.path.join(top, n), published)) for n in dirs + files)
    return found


def _check_order(calls: list[Call], root: str, layers: int) -> None:
    """Each layer tree's rename follows a syncfs begun after the tree was last touched, or fsyncs of each of its files
    and directories after that with nothing written meanwhile, and is followed by an fsync of layers/; each blob renamed in from tmp/ follows an fsync of it or a syncfs, after its last write; the blobs'
    directory is fsynced after the last blob's rename before index.json's; all before index.json's rename."""
    index = [c for c in calls if c.name in _RENAMES and c.paths[-1:] == [f"{root}/images/index.json"]][-1]
    layer_name = re.compile(re.escape(f"{root}/layers/") + "[0-9a-f]{64}$")
    published = [c for c in calls if c.name in _RENAMES and layer_name.match(c.paths[-1])]
    assert len(published) == layers, [c.paths for c in published]
    syncs = [c for c in calls if c.name == "syncfs" and c.result.startswith("0")]
    layer_syncs = [c for c in calls if c.name == "fsync" and f"<{root}/layers>" in c.args]
    for rename in published:
        tree = rename.paths[0]
        assert rename.result.startswith("0"), rename
        # The tree is put on disk from the first fsync of an entry (a small tree, entry by entry) or by a syncfs.
        synced_from = min((c.start for c in calls if c.name == "fsync" and re.search(rf"<{re.escape(tree)}[/>]", c.args)),
                          default=rename.start)
        touched = max(c.end for c in calls if c.name != "syncfs" and c.start < synced_from and f"{tree}/" in c.args)
        if not any(touched < s.start and s.end < rename.start for s in syncs):
            entries = _entries(os.path.join(root, "layers", os.path.basename(rename.paths[-1])), tree)
            fsynced = {c.args.split(">", 1)[0].partition("<")[2] for c in calls if c.name == "fsync"
                       and touched < c.start and c.end < rename.start and c.result.startswith("0")}
            assert entries <= fsynced, f"{tree}: neither a syncfs after its writes nor fsyncs of {entries - fsynced}"
            assert not any(c.name in ("write", "mkdir", "mkdirat") and f"{tree}/" in c.args and touched < c.start
                           and c.start < rename.start for c in calls), f"{tree}: written to while being fsynced"
        assert any(rename.end < f.start and f.end < index.start for f in layer_syncs), f"{tree}: layers/ not fsynced"
    blob_dir = f"{root}/images/blobs/sha256"
    for rename in (c for c in calls if c.name in _RENAMES and c.paths[0].startswith(f"{root}/tmp/")
                   and c.paths[-1].startswith(blob_dir + "/")):
        temp = rename.paths[0]
        while not any(c.name == "write" and f"<{temp}>" in c.args for c in calls):  # written under an earlier name
            temp = next(c for c in calls if c.name in _RENAMES and c.paths[-1] == temp).paths[0]
        written = max(c.end for c in calls if c.name == "write" and c.start < rename.start and f"<{temp}>" in c.args)
        assert any((c.name == "syncfs" or f"<{temp}>" in c.args) and c.name in ("syncfs", "fsync") and written < c.start
                   and c.end < rename.start and c.result.startswith("0") for c in calls), f"{temp}: not on disk"
    # (A build stores its cache record's blob after the image is indexed: only the blobs before index.json count.)
    last_blob = max(c.end for c in calls
                    if c.name in _RENAMES and c.paths[-1].startswith(blob_dir + "/") and c.start < index.start)
    assert any(c.name == "fsync" and f"<{blob_dir}>" in c.args and last_blob < c.start and c.end < index.start
               for c in calls), "blob names not fsynced before index.json"


def test_pull_publishes_layers_and_blob_names_durably(tmp_path):
    registry = start_distribution(tmp_path / "distribution")
    try:
        src = Store(str(tmp_path / "src"))
        # Small layers (fsynced entry by entry) and a bigger one (a syncfs)
        crafted = image([tar_of((f"etc/file{i}", os.urandom(2000)), (f"usr/lib/l{i}/x", b"x" * i)) for i in range(3)]
                        + [tar_of(*((f"usr/share/f{i}", os.urandom(100)) for i in range(12)))])
        with src.transaction() as added:
            for blob in (crafted.config, *crafted.layers):
                src.write_blob_bytes(blob, added=added)
            ref = f"{registry.host}/durable/img:1"
            src.add_image(crafted.manifest, [parse(ref)], added)
        run_cli(src.root, "push", "-q", ref)
        root = str(tmp_path / "dst")
        calls = _traced(root, "-m", "dockyard", "pull", "-q", ref)
    finally:
        registry.stop()
    pulled = Store(root).resolve(ref)
    assert sorted(os.listdir(os.path.join(root, "layers"))) == sorted(c.hex for c in pulled.chain_ids)
    _check_order(calls, root, layers=4)


def test_build_publishes_its_run_layer_durably(tmp_path, store_root, busybox_image):
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM busybox\nRUN mkdir /made && echo durable > /made/file\n")
    calls = _traced(store_root, "-m", "dockyard", "build", "-q", "--network", "none", "-t", "durable", str(ctx))
    _check_order(calls, store_root, layers=2)  # busybox's layer, unpacked for the RUN, and the RUN's
    top = Store(store_root).resolve("durable").chain_ids[-1]
    with open(os.path.join(store_root, "layers", top.hex, "made", "file")) as f:
        assert f.read() == "durable\n"


# A layer blob renamed into place (adopt_blob: no fsync of the directory) after the manifest was stored: indexing the
# image must put that name on disk first, though the manifest's own write (which fsyncs the directory) came before.
_ADD_LATE_BLOB = """
import io, sys
sys.path.insert(0, sys.argv[2])
from crafted import image, tar_of
from dockyard.reference import parse
from dockyard.store import Store

store = Store(sys.argv[1])
crafted = image([tar_of(("etc/late", b"late"))])
with store.transaction() as added:
    store.write_blob_bytes(crafted.config, added=added)
    store.write_blob_bytes(crafted.manifest, added=added)
    store.write_blob(io.BytesIO(crafted.layers[0]), added=added)
    store.add_image(crafted.manifest, [parse("late:1")], added)
"""


def test_index_names_blobs_only_once_their_names_are_on_disk(tmp_path):
    root = str(tmp_path / "store")
    calls = _traced(root, "-c", _ADD_LATE_BLOB, root, os.path.dirname(__file__))
    _check_order(calls, root, layers=0)
    assert Store(root).resolve("late:1").layers


def test_a_new_store_puts_its_directories_names_on_disk(tmp_path):
    root = str(tmp_path / "new" / "store")
    os.makedirs(os.path.dirname(root))
    calls = _traced(root, "-m", "dockyard", "images", "-q")
    made = [c for c in calls if c.name in ("mkdir", "mkdirat") and c.result.startswith("0")]
    assert {c.paths[-1] for c in made} >= {root, f"{root}/images", f"{root}/images/blobs", f"{root}/layers"}
    index = [c for c in calls if c.name in _RENAMES and c.paths[-1:] == [f"{root}/images/index.json"]][0]
    for mkdir in made:
        parent = os.path.dirname(mkdir.paths[-1])
        assert any(c.name == "fsync" and f"<{parent}>" in c.args and mkdir.end < c.start and c.end < index.start
                   for c in calls), f"{mkdir.paths[-1]}: its name was not put on disk"


# A referrer whose manifest is stored already and whose blob was renamed in after it (adopt_blob: unsynced): the
# record that lists the artifact must come after the blob's name is on disk.
_ADD_REFERRER = """
import io, sys
sys.path.insert(0, sys.argv[2])
from crafted import image, tar_of
from dockyard.digest import Digest
from dockyard.image import Descriptor
from dockyard.reference import parse
from dockyard.referrers import artifact_manifest
from dockyard import mediatypes as mt
from dockyard.store import Store

store = Store(sys.argv[1])
crafted = image([tar_of(("etc/subject", b"s"))])
with store.transaction() as added:
    for blob in (crafted.config, *crafted.layers):
        store.write_blob_bytes(blob, added=added)
    store.add_image(crafted.manifest, [parse("subject:1")], added)
sbom = b'{"sbom": true}'
subject = Descriptor(mt.OCI_MANIFEST, Digest.of_bytes(crafted.manifest), len(crafted.manifest))
manifest = artifact_manifest(subject, "application/spdx+json",
                             Descriptor("application/spdx+json", Digest.of_bytes(sbom), len(sbom)))
with store.transaction() as added:
    store.write_blob_bytes(manifest, added=added)
    store.write_blob_bytes(b"{}", added=added)  # the artifact's empty config
    store.write_blob(io.BytesIO(sbom), added=added)
    store.add_referrer(manifest, added)
"""


def test_a_referrer_record_follows_its_blobs_names(tmp_path):
    root = str(tmp_path / "store")
    calls = _traced(root, "-c", _ADD_REFERRER, root, os.path.dirname(__file__))
    blob_dir = f"{root}/images/blobs/sha256"
    record = [c for c in calls if c.name in _RENAMES and c.paths[-1].startswith(f"{root}/referrers/")][-1]
    last_blob = max(c.end for c in calls if c.name in _RENAMES and c.paths[-1].startswith(blob_dir + "/"))
    assert last_blob < record.start
    assert any(c.name == "fsync" and f"<{blob_dir}>" in c.args and last_blob < c.start and c.end < record.start
               for c in calls), "the referrer's blob names were not fsynced before its record"


# A layer with one 20 MiB file, applied as a pull unpacks it: its data is sent to the disk while it is written.
_APPLY_BIG = """
import io, os, sys
sys.path.insert(0, sys.argv[2])
from crafted import tar_of
from dockyard.layers import apply_layer

os.mkdir(sys.argv[1])
apply_layer(io.BytesIO(tar_of(("big", os.urandom(20 << 20)))), sys.argv[1], overlay=True)
"""


def test_a_big_unpacked_file_is_written_back_as_it_is_written(tmp_path):
    root = str(tmp_path / "layer")
    lines = strace_python(root, "sync_file_range,close", "-c", _APPLY_BIG, root, os.path.dirname(__file__),
                          fd_paths=True).splitlines()
    big = f"<{root}/big>"
    steps = [i for i, line in enumerate(lines) if "sync_file_range(" in line and big in line]
    closed = next(i for i, line in enumerate(lines) if "close(" in line and big in line)
    assert len(steps) >= 2 and steps[-1] < closed, lines
