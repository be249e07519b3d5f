"""dockyard.layers: diff/apply round trips, whiteouts, determinism, a real overlay, hostile tars."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import stat
import struct
import subprocess
import tarfile

import pytest

from dockyard.compression import compressor
from dockyard.digest import Digest
from dockyard.layers import LayerError, apply_layer, compress_layer, create_layer, tarheader, write_diff
from dockyard.mediatypes import OCI_CONFIG, OCI_LAYER_FOR, OCI_MANIFEST

from crafted import tar_of

# A VFS_CAP_REVISION_2 blob with the effective flag: cap_setuid (7) and cap_net_raw (13) permitted.
# Byte 0x80 makes it invalid UTF-8, so it exercises the binary-safe PAX path.
CAP_BLOB = struct.pack("<IIIII", 0x02000001, (1 << 7) | (1 << 13), 0, 0, 0)
RNG = random.Random(42)


def snapshot(root: str, mtimes: bool = True) -> dict[str, tuple]:
    """Everything a layer must carry for each path below `root` (root itself excluded)."""
    out: dict[str, tuple] = {}
    first_name: dict[tuple[int, int], str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.path.relpath(path, root)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            digest = link = None
            if stat.S_ISREG(st.st_mode):
                with open(path, "rb") as f:
                    digest = hashlib.sha256(f.read()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                link = os.readlink(path)
            xattrs = {}
            for key in os.listxattr(path, follow_symlinks=False):
                if key == "security.capability" or key.startswith("user."):
                    xattrs[key] = os.getxattr(path, key, follow_symlinks=False)
            group = None
            if not stat.S_ISDIR(st.st_mode):
                group = first_name.setdefault((st.st_dev, st.st_ino), rel)
            size = st.st_size if not stat.S_ISDIR(st.st_mode) else None
            rdev = st.st_rdev if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else None
            out[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, size, digest, link,
                        rdev, xattrs, group, int(st.st_mtime) if mtimes else None)
    return out


def make_tree(root: str) -> None:
    """A tree with every kind of entry a layer can hold."""
    os.makedirs(f"{root}/etc/deep/er/still")
    os.makedirs(f"{root}/usr/bin")
    os.makedirs(f"{root}/locked")
    with open(f"{root}/etc/passwd", "w") as f:
        f.write("root:x:0:0::/root:/bin/sh\n")
    with open(f"{root}/usr/bin/big", "wb") as f:
        f.write(RNG.randbytes(3 * 1024 * 1024 + 17))
    open(f"{root}/empty", "wb").close()
    with open(f"{root}/usr/bin/sudo", "wb") as f:
        f.write(b"#!/bin/sh\n")
    os.chown(f"{root}/usr/bin/sudo", 0, 0)
    os.chmod(f"{root}/usr/bin/sudo", 0o4755)  # after chown, which clears setuid
    with open(f"{root}/usr/bin/ping", "wb") as f:
        f.write(b"\x7fELF ping")
    os.setxattr(f"{root}/usr/bin/ping", "security.capability", CAP_BLOB)
    os.setxattr(f"{root}/etc/passwd", "user.note", b"kept \xff")
    with open(f"{root}/etc/deep/er/still/owned", "w") as f:
        f.write("owned")
    os.chown(f"{root}/etc/deep/er/still/owned", 1234, 5678)
    os.chmod(f"{root}/etc/deep/er/still/owned", 0o640)
    os.link(f"{root}/etc/passwd", f"{root}/etc/passwd-")
    os.link(f"{root}/etc/passwd", f"{root}/usr/passwd.hard")
    os.symlink("../etc/passwd", f"{root}/usr/rel-link")
    os.symlink("/etc/passwd", f"{root}/usr/abs-link")
    os.symlink("/nowhere", f"{root}/usr/dangling")
    os.lchown(f"{root}/usr/dangling", 7, 8)
    os.mkfifo(f"{root}/usr/fifo", 0o620)
    os.mknod(f"{root}/usr/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.mknod(f"{root}/usr/loop9", stat.S_IFBLK | 0o660, os.makedev(7, 9))
    long_dir = f"{root}/" + "d" * 120
    os.makedirs(long_dir)
    with open(f"{long_dir}/" + "n" * 150, "w") as f:
        f.write("long names need PAX")
    with open(os.fsencode(f"{root}/") + b"caf\xe9", "w") as f:
        f.write("not utf-8 name")
    os.chmod(f"{root}/locked", 0o500)
    with open(f"{root}/etc/deep/er/still/late", "w") as f:
        f.write("late")
    # Children were written after their dirs, so a faithful layer must restore dir mtimes last.
    for i, (dirpath, dirnames, filenames) in enumerate(sorted(os.walk(root))):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (1_600_000_000 + i, 1_600_000_000 + i),
                     follow_symlinks=False)


def tar_bytes(src: str, **kw) -> bytes:
    buf = io.BytesIO()
    write_diff(src, buf, **kw)
    return buf.getvalue()


def layer(*members: tuple[tarfile.TarInfo, bytes | None]) -> io.BytesIO:
    """A hand-built layer tar, for archives our writer would never produce."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def entry(name: str, kind: bytes = tarfile.REGTYPE, data: bytes | None = None, **attrs) -> tuple:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = attrs.pop("mode", 0o755 if kind == tarfile.DIRTYPE else 0o644)
    for key, value in attrs.items():
        setattr(info, key, value)
    if data is not None:
        info.size = len(data)
    return info, data


@pytest.fixture
def tree(tmp_path):
    src = str(tmp_path / "src")
    os.mkdir(src)
    make_tree(src)
    return src


@pytest.mark.parametrize("compression", ["gzip", "zstd", "none"])
def test_round_trip_restores_the_tree(tree, tmp_path, compression):
    blob_path = str(tmp_path / "blob")
    blob = create_layer(tree, blob_path, compression)
    plain = tar_bytes(tree)
    assert blob.diff_id == Digest.of_bytes(plain)
    assert blob.digest == Digest.of_file(blob_path)
    assert blob.size == os.path.getsize(blob_path)
    assert blob.media_type == OCI_LAYER_FOR[compression]
    dst = str(tmp_path / "dst")
    os.mkdir(dst)
    with open(blob_path, "rb") as f:
        assert apply_layer(f, dst) == blob.diff_id
    assert snapshot(dst) == snapshot(tree)
    assert os.getxattr(f"{dst}/usr/bin/ping", "security.capability") == CAP_BLOB


def test_tar_layout(tree):
    members = tarfile.open(fileobj=io.BytesIO(tar_bytes(tree))).getmembers()
    names = [m.name for m in members]
    assert names[:3] == ["caf\udce9", "d" * 120, "d" * 120 + "/" + "n" * 150]
    assert "etc/deep" in names and not any(n.startswith(("./", "/")) for n in names)
    assert names.index("etc") < names.index("etc/deep") < names.index("etc/deep/er/still/late")
    by_name = {m.name: m for m in members}
    assert all(m.uname == "" and m.gname == "" for m in members)
    assert by_name["etc/passwd-"].islnk() and by_name["etc/passwd-"].linkname == "etc/passwd"
    assert by_name["usr/passwd.hard"].linkname == "etc/passwd"
    assert by_name["usr/bin/sudo"].mode == 0o4755
    assert by_name["usr/null"].ischr() and (by_name["usr/null"].devmajor, by_name["usr/null"].devminor) == (1, 3)
    cap = by_name["usr/bin/ping"].pax_headers["SCHILY.xattr.security.capability"]
    assert cap.encode("utf-8", "surrogateescape") == CAP_BLOB


def test_same_tree_same_digest_and_epoch_clamps_mtimes(tree, tmp_path):
    first = create_layer(tree, str(tmp_path / "a"))
    assert create_layer(tree, str(tmp_path / "b")) == first
    assert (tmp_path / "a").read_bytes() == (tmp_path / "b").read_bytes()
    copy = str(tmp_path / "copy")
    subprocess.run(["cp", "-a", tree, copy], check=True)
    for dirpath, dirnames, filenames in os.walk(copy):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (1_700_000_000, 1_700_000_000),
                     follow_symlinks=False)
    assert create_layer(copy, str(tmp_path / "c")).digest != first.digest
    epoch = 1_500_000_000
    clamped = create_layer(tree, str(tmp_path / "d"), source_date_epoch=epoch)
    assert create_layer(copy, str(tmp_path / "e"), source_date_epoch=epoch) == clamped
    assert clamped.digest != first.digest
    assert {m.mtime for m in tarfile.open(tmp_path / "d")} == {epoch}
    assert gzip.open(tmp_path / "d").read() == tar_bytes(tree, source_date_epoch=epoch)


def test_overlay_whiteouts_become_wh_entries(tmp_path):
    upper = tmp_path / "upper"
    (upper / "opaque").mkdir(parents=True)
    (upper / "opaque" / "new").write_text("new")
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    os.mknod(upper / "gone", stat.S_IFCHR, os.makedev(0, 0))
    os.link(upper / "gone", upper / "gone-too")  # overlayfs shares one whiteout inode
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(tar_bytes(str(upper))))]
    assert names == [".wh.gone", ".wh.gone-too", "opaque", "opaque/.wh..wh..opq", "opaque/new"]


def test_whiteouts_and_opaque_dirs_apply(tmp_path):
    root = tmp_path / "root"
    for d in ("keep", "op/sub", "op/kept-dir"):
        (root / d).mkdir(parents=True)
    for f in ("keep/a", "keep/b", "op/old", "op/sub/old", "op/kept-dir/old", "op/kept"):
        (root / f).write_text("lower")
    # The opaque marker comes last here: it must still spare this layer's own entries.
    tar = layer(entry("keep/.wh.a"), entry("keep/.wh.missing"), entry("nodir/.wh.x"),
                entry("op", tarfile.DIRTYPE, mode=0o700),
                entry("op/kept", data=b"upper"),
                entry("op/kept-dir", tarfile.DIRTYPE),
                entry("op/kept-dir/new", data=b"new"),
                entry("op/.wh..wh..opq"),
                entry("op/.wh.kept"),  # hides lower layers only: this layer's op/kept stays
                entry(".wh..wh.plnk"))
    apply_layer(tar, str(root))
    assert sorted(os.listdir(root)) == ["keep", "op"]
    assert os.listdir(root / "keep") == ["b"]
    assert sorted(os.listdir(root / "op")) == ["kept", "kept-dir"]
    assert (root / "op" / "kept").read_text() == "upper"
    assert os.listdir(root / "op" / "kept-dir") == ["new"]
    assert stat.S_IMODE(os.stat(root / "op").st_mode) == 0o700


def test_entries_replace_and_directories_merge(tmp_path):
    root = tmp_path / "root"
    (root / "dir").mkdir(parents=True)
    (root / "dir" / "lower").write_text("lower")
    (root / "was-dir").mkdir()
    (root / "was-dir" / "x").write_text("x")
    (root / "was-file").write_text("file")
    os.symlink("/etc/shadow", root / "link")
    tar = layer(entry("dir", tarfile.DIRTYPE, mode=0o711, uid=3, gid=4),
                entry("was-dir", data=b"now a file"),
                entry("was-file", tarfile.DIRTYPE),
                entry("link", data=b"regular now"))
    apply_layer(tar, str(root))
    st = os.stat(root / "dir")
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o711, 3, 4)
    assert (root / "dir" / "lower").read_text() == "lower"
    assert (root / "was-dir").read_text() == "now a file"
    assert (root / "was-file").is_dir()
    assert not (root / "link").is_symlink() and (root / "link").read_text() == "regular now"


def overlay_mount(lower: str, upper: str, work: str, merged: str) -> None:
    opts = f"lowerdir={lower},upperdir={upper},workdir={work},redirect_dir=off,metacopy=off,index=off"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", opts, merged], check=True)


@pytest.fixture
def overlay_change(tmp_path):
    """(lower, upper, merged mount point, snapshot of the merged view) after real overlay edits."""
    lower, upper, work, merged = (str(tmp_path / n) for n in ("lower", "upper", "work", "merged"))
    for d in (upper, work, merged):
        os.mkdir(d)
    os.mkdir(lower)
    make_tree(lower)
    overlay_mount(lower, upper, work, merged)
    try:
        os.unlink(f"{merged}/etc/passwd-")                     # whiteout of a lower file
        shutil.rmtree(f"{merged}/etc/deep")                    # lower dir removed ...
        os.makedirs(f"{merged}/etc/deep/fresh")                # ... and recreated: opaque
        with open(f"{merged}/etc/deep/fresh/file", "w") as f:
            f.write("fresh")
        with open(f"{merged}/added", "w") as f:
            f.write("added")
        os.link(f"{merged}/added", f"{merged}/usr/added-link")  # hard link inside the layer
        os.chmod(f"{merged}/usr/bin/big", 0o700)              # metadata-only copy-up
        os.chown(f"{merged}/empty", 99, 98)
        os.setxattr(f"{merged}/etc/passwd", "security.capability", CAP_BLOB)
        os.mkfifo(f"{merged}/usr/new-fifo")
        os.symlink("added", f"{merged}/usr/new-link")
        os.unlink(f"{merged}/usr/null")
        os.mknod(f"{merged}/usr/null", stat.S_IFCHR | 0o600, os.makedev(1, 5))
        shutil.rmtree(f"{merged}/" + "d" * 120)                # a lower dir gone for good
        expected = snapshot(merged)
    finally:
        subprocess.run(["umount", merged], check=True)
    return lower, upper, merged, expected


def test_real_overlay_diff_applies_to_the_merged_view(tmp_path, overlay_change):
    lower, upper, merged, expected = overlay_change
    copy = str(tmp_path / "copy")
    subprocess.run(["cp", "-a", lower, copy], check=True)
    names = [m.name for m in tarfile.open(fileobj=io.BytesIO(tar_bytes(upper)))]
    assert "etc/.wh.passwd-" in names and "etc/deep/.wh..wh..opq" in names
    blob = create_layer(upper, str(tmp_path / "blob"))
    with open(tmp_path / "blob", "rb") as f:
        assert apply_layer(f, copy) == blob.diff_id
    assert snapshot(copy) == expected

    # Unpacked alone in overlay form, the layer stacks on the lower dir to the same view.
    unpacked = str(tmp_path / "unpacked")
    os.mkdir(unpacked)
    with open(tmp_path / "blob", "rb") as f:
        assert apply_layer(f, unpacked, overlay=True) == blob.diff_id
    assert os.getxattr(f"{unpacked}/etc/deep", "trusted.overlay.opaque") == b"y"
    assert os.lstat(f"{unpacked}/etc/passwd-").st_rdev == 0
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", f"lowerdir={unpacked}:{lower}",
                    merged], check=True)
    try:
        assert snapshot(merged) == expected
    finally:
        subprocess.run(["umount", merged], check=True)


# --- hostile archives -------------------------------------------------------------------------

@pytest.fixture
def jail(tmp_path):
    """A root inside a sentinel parent whose contents must never change."""
    parent = tmp_path / "jail"
    (parent / "root").mkdir(parents=True)
    (parent / "victim").write_text("untouched")
    (parent / "etc").mkdir()
    (parent / "etc" / "passwd").write_text("host passwd")
    return parent


def outside(parent) -> dict[str, tuple]:
    return {k: v for k, v in snapshot(str(parent), mtimes=False).items()
            if k != "root" and not k.startswith("root/")}


HOSTILE = {
    "dotdot": [entry("../evil", data=b"x")],
    "dotdot-deep": [entry("a/../../victim", data=b"x")],
    "symlink-to-slash": [entry("x", tarfile.SYMTYPE, linkname="/"),
                         entry("x/etc/passwd", data=b"x"), entry("x/victim", data=b"x")],
    "symlink-up": [entry("x", tarfile.SYMTYPE, linkname="../../.."),
                   entry("x/victim", data=b"x"), entry("x/etc/passwd", data=b"x")],
    "symlink-chain": [entry("a", tarfile.SYMTYPE, linkname="b/../.."),
                      entry("b", tarfile.DIRTYPE), entry("a/victim", data=b"x")],
    "symlink-loop": [entry("l1", tarfile.SYMTYPE, linkname="l2"),
                     entry("l2", tarfile.SYMTYPE, linkname="l1"), entry("l1/x", data=b"x")],
    "hardlink-up": [entry("h", tarfile.LNKTYPE, linkname="../../etc/passwd")],
    "hardlink-through-symlink": [entry("out", tarfile.SYMTYPE, linkname="JAIL/etc"),
                                 entry("h", tarfile.LNKTYPE, linkname="out/passwd")],
    "hardlink-missing": [entry("h", tarfile.LNKTYPE, linkname="nope")],
    "whiteout-dotdot": [entry(".wh..."), entry("x/.wh..")],
    "whiteout-dotdot-only": [entry("d/.wh...")],
    "whiteout-via-symlink": [entry("up", tarfile.SYMTYPE, linkname=".."),
                             entry("up/.wh.victim"), entry("up/up/.wh.etc")],
    "file-over-symlink": [entry("s", tarfile.SYMTYPE, linkname="JAIL/victim"),
                          entry("s", data=b"overwrites the link, not the victim")],
    "dir-symlink-write": [entry("etc", tarfile.SYMTYPE, linkname="JAIL/etc"),
                          entry("etc/passwd", data=b"x")],
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_archives_stay_inside_root(jail, case):
    before = outside(jail)
    members = []
    for info, data in HOSTILE[case]:
        info.linkname = info.linkname.replace("JAIL", str(jail))
        members.append((info, data))
    try:
        apply_layer(layer(*members), str(jail / "root"))
    except LayerError as e:
        assert "\n" not in str(e)
    assert outside(jail) == before
    root = jail / "root"
    if case in ("symlink-to-slash", "symlink-up"):
        assert (root / "etc" / "passwd").read_bytes() == b"x"  # neutralised into the root
    if case == "file-over-symlink":
        assert (root / "s").read_bytes().startswith(b"overwrites")


def test_absolute_names_are_rooted(jail):
    apply_layer(layer(entry("/abs/evil", data=b"x"), entry("//etc/passwd", data=b"y")),
                str(jail / "root"))
    assert (jail / "root" / "abs" / "evil").read_bytes() == b"x"
    assert (jail / "root" / "etc" / "passwd").read_bytes() == b"y"
    assert (jail / "etc" / "passwd").read_text() == "host passwd"


def test_symlink_from_an_earlier_layer_is_not_followed_out(jail):
    root = str(jail / "root")
    apply_layer(layer(entry("d", tarfile.SYMTYPE, linkname="/"),
                      entry("e", tarfile.SYMTYPE, linkname=str(jail))), root)
    before = outside(jail)
    apply_layer(layer(entry("d/etc/passwd", data=b"in root"), entry("e/victim", data=b"v")), root)
    assert outside(jail) == before
    assert (jail / "root" / "etc" / "passwd").read_bytes() == b"in root"


@pytest.mark.parametrize("case", ["dotdot", "hardlink-up", "hardlink-through-symlink",
                                  "hardlink-missing", "whiteout-dotdot", "symlink-loop"])
def test_hostile_entries_are_refused_by_name(jail, case):
    members = [(i, d) for i, d in HOSTILE[case]]
    for info, _ in members:
        info.linkname = info.linkname.replace("JAIL", str(jail))
    with pytest.raises(LayerError) as e:
        apply_layer(layer(*members), str(jail / "root"))
    assert any(str(e.value).startswith(f"layer entry {info.name!r}") for info, _ in members)


# --- corrupt input ----------------------------------------------------------------------------

def gz(data: bytes) -> bytes:
    sink = io.BytesIO()
    with compressor(sink, "gzip") as w:
        w.write(data)
    return sink.getvalue()


def test_truncated_gzip_layer(tree, tmp_path):
    blob = gz(tar_bytes(tree))
    with pytest.raises(LayerError, match="gzip") as e:
        apply_layer(io.BytesIO(blob[: len(blob) // 2]), str(tmp_path))
    assert "\n" not in str(e.value)
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(blob[:-4]), str(tmp_path / "x"))


def test_truncated_and_corrupt_tars(tree, tmp_path):
    plain = tar_bytes(tree)
    os.mkdir(tmp_path / "a")
    with pytest.raises(LayerError, match="truncated"):
        apply_layer(io.BytesIO(plain[: len(plain) // 2 + 100]), str(tmp_path / "a"))
    corrupt = bytearray(plain)
    second = tarfile.open(fileobj=io.BytesIO(plain)).getmembers()[1]
    corrupt[second.offset + 10] ^= 0x55  # a name byte: the header checksum no longer matches
    with pytest.raises(LayerError, match="corrupt tar header"):
        apply_layer(io.BytesIO(bytes(corrupt)), str(tmp_path / "a"))
    with pytest.raises(LayerError):
        apply_layer(io.BytesIO(os.urandom(4096)), str(tmp_path / "a"))


def _fed(data: bytes, sizes: list[int]) -> list[bytes]:
    """`data` cut into pieces of the given sizes in turn (a network's reads), the last piece whatever is left."""
    pieces, i, at = [], 0, 0
    while at < len(data):
        pieces.append(data[at:at + sizes[i % len(sizes)]])
        at += len(pieces[-1])
        i += 1
    return pieces


def test_stream_unpacker_reuses_its_buffers_and_loses_no_byte(tmp_path):
    """Layers fed through the unpacking thread in reads of odd sizes (tiny, a buffer's, bigger than a buffer) unpack
    exactly, one after another and side by side, with buffers reused across layers and kept to a bounded few; a
    layer abandoned halfway hands no half-filled buffer to the next."""
    from dockyard.digest import CHUNK
    from dockyard.layers import unpacker

    files = [(f"f{i}", RNG.randbytes(n)) for i, n in enumerate((1, CHUNK - 7, 3 * CHUNK + 5, 0, 700_000))]
    plain = tar_of(*files)
    blob = gz(plain)
    sizes = [1, 4096, CHUNK, CHUNK + 1, 2 * CHUNK + 3, 65_537]

    def unpack(root, data: bytes) -> unpacker.StreamUnpacker:
        u = unpacker.StreamUnpacker(str(root))
        for piece in _fed(data, sizes):
            buf = bytearray(piece)
            u.feed(memoryview(buf))
            buf[:] = bytes(len(buf))  # the caller's buffer, reused once fed: the unpacker must have copied it
        return u

    for n, data in enumerate((blob, plain, blob)):  # in a row: the later ones reuse the first one's buffers
        (tmp_path / str(n)).mkdir()
        assert unpack(tmp_path / str(n), data).finish() == Digest.of_bytes(plain)
        assert {name: (tmp_path / str(n) / name).read_bytes() for name, _ in files} == dict(files)
        assert 0 < len(unpacker._spare) <= unpacker._DEPTH
    (tmp_path / "half").mkdir()
    half = unpacker.StreamUnpacker(str(tmp_path / "half"))
    for piece in _fed(blob[:len(blob) // 2], sizes):
        half.feed(piece)
    half.abort()
    for root in ("a", "b"):
        (tmp_path / root).mkdir()
    side_by_side = [unpack(tmp_path / "a", blob), unpack(tmp_path / "b", plain)]
    assert [u.finish() for u in side_by_side] == [Digest.of_bytes(plain)] * 2
    for root in ("a", "b"):
        assert {name: (tmp_path / root / name).read_bytes() for name, _ in files} == dict(files)
    assert len(unpacker._spare) <= unpacker._DEPTH


def test_empty_layers(tmp_path):
    assert apply_layer(io.BytesIO(b""), str(tmp_path)) == Digest.of_bytes(b"")
    empty = bytes(1024)
    assert apply_layer(io.BytesIO(gz(empty)), str(tmp_path)) == Digest.of_bytes(empty)
    assert os.listdir(tmp_path) == []


def test_compress_layer_of_a_stream_and_failed_diff(tmp_path, tree):
    plain = tar_bytes(tree)
    blob = compress_layer(io.BytesIO(plain), str(tmp_path / "z"), "zstd")
    assert blob.diff_id == Digest.of_bytes(plain) and blob.media_type.endswith("+zstd")
    with pytest.raises(LayerError, match="nope"):
        create_layer(str(tmp_path / "nope"), str(tmp_path / "never"))
    assert not (tmp_path / "never").exists()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".tmp-")] == []
    with pytest.raises(LayerError, match="bzip2"):
        compress_layer(io.BytesIO(plain), str(tmp_path / "b"), "bzip2")


def test_nul_in_pax_name_is_refused(tmp_path):
    info, data = entry("ok", data=b"x")
    info.pax_headers = {"path": "bad\0name"}
    with pytest.raises(LayerError, match="bad"):
        apply_layer(layer((info, data)), str(tmp_path))


def test_deeper_than_the_recursion_limit(tmp_path):
    src = tmp_path / "src"
    deep = str(src)
    os.mkdir(deep)
    for _ in range(1100):  # os.makedirs itself recurses per level
        deep = os.path.join(deep, "d")
        os.mkdir(deep)
    with open(os.path.join(deep, "leaf"), "w") as f:
        f.write("leaf")
    upper = str(tmp_path / "dst")
    os.mkdir(upper)
    try:
        blob = create_layer(str(src), str(tmp_path / "blob"))
        with open(tmp_path / "blob", "rb") as f:
            assert apply_layer(f, upper) == blob.diff_id
        with open(os.path.join(upper, *["d"] * 1100, "leaf")) as f:
            assert f.read() == "leaf"
        # an opaque marker at the top prunes nothing this layer added, however deep
        marker = tarfile.TarInfo("d/.wh..wh..opq").tobuf(tarfile.PAX_FORMAT)
        apply_layer(io.BytesIO(tar_bytes(str(src))[:-1024] + marker + bytes(1024)), upper)
        assert os.path.exists(os.path.join(upper, *["d"] * 1100, "leaf"))
    finally:
        subprocess.run(["rm", "-rf", str(src), upper], check=True)  # shutil.rmtree recurses too


def test_overlay_redirect_entries_are_refused(tmp_path):
    upper = tmp_path / "upper"
    (upper / "renamed").mkdir(parents=True)
    os.setxattr(upper / "renamed", "trusted.overlay.redirect", b"/original")
    with pytest.raises(LayerError, match="renamed.*redirect_dir=off"):
        tar_bytes(str(upper))


HEADER_CASES = [
    dict(name="etc/passwd", mode=0o644, size=1234, mtime=1_700_000_000),
    dict(name="usr/bin/sudo", mode=0o104755, uid=0, gid=0, size=0, mtime=0),
    dict(name="d" * 99, type=tarfile.DIRTYPE, mode=0o755, uid=1000, gid=1000),
    dict(name="x" * 100, type=tarfile.SYMTYPE, linkname="y" * 100, uid=8 ** 7 - 1),
    dict(name="dev/null", type=tarfile.CHRTYPE, mode=0o666, devmajor=1, devminor=3),
    dict(name="dev/loop0", type=tarfile.BLKTYPE, devmajor=7, devminor=0),
    dict(name="fifo", type=tarfile.FIFOTYPE, mode=0o600),
    dict(name="hard", type=tarfile.LNKTYPE, linkname="etc/passwd"),
]
NEEDS_PAX = [
    dict(name="n" * 101), dict(name="café"), dict(name="l", type=tarfile.SYMTYPE, linkname="z" * 101),
    dict(name="big", uid=8 ** 7), dict(name="huge", size=8 ** 11), dict(name="old", mtime=-1),
]


@pytest.mark.parametrize("fields", HEADER_CASES + NEEDS_PAX)
def test_fast_header_matches_tarfile(fields):
    info = tarfile.TarInfo()
    for key, value in fields.items():
        setattr(info, key, value)
    name = info.name + "/" if info.isdir() else info.name
    block = tarheader.encode(name, info.mode, info.uid, info.gid, info.size, info.mtime, info.type,
                             info.linkname, info.devmajor, info.devminor)
    reference = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    if fields in NEEDS_PAX:
        assert block is None
        return
    assert block == reference
    decoded = tarheader.decode(block)
    assert decoded == (name, info.mode & 0o7777, info.uid, info.gid, info.size, info.mtime,
                       info.type, info.linkname, info.devmajor, info.devminor)


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_reads_every_tar_dialect(tmp_path, fmt):
    long_dir = "p" * 90 + "/" + "q" * 60
    members = [entry(long_dir, tarfile.DIRTYPE), entry(long_dir + "/file", data=b"data"),
               entry("link", tarfile.SYMTYPE, linkname="t" * 90),
               entry("hard", tarfile.LNKTYPE,  # ustar has no room for a long link target
                     linkname="link" if fmt == tarfile.USTAR_FORMAT else long_dir + "/file")]
    if fmt != tarfile.USTAR_FORMAT:
        members.append(entry("n" * 120, data=b"long", uid=3_000_000))  # base-256 / PAX uid
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    apply_layer(io.BytesIO(buf.getvalue()), str(tmp_path))
    assert (tmp_path / long_dir / "file").read_bytes() == b"data"
    assert os.readlink(tmp_path / "link") == "t" * 90
    target = "link" if fmt == tarfile.USTAR_FORMAT else long_dir + "/file"
    assert os.lstat(tmp_path / "hard").st_ino == os.lstat(tmp_path / target).st_ino
    if fmt != tarfile.USTAR_FORMAT:
        assert os.stat(tmp_path / ("n" * 120)).st_uid == 3_000_000


def test_negative_size_is_corrupt(tmp_path):
    block = bytearray(tarheader.encode("neg", 0o644, 0, 0, 0, 0, tarfile.REGTYPE))
    block[124:136] = b"\xff" * 12  # base-256 -1
    block[148:156] = b"        "
    block[148:156] = b"%06o\0 " % sum(block)
    with pytest.raises(LayerError, match="negative"):
        apply_layer(io.BytesIO(bytes(block) + bytes(1024)), str(tmp_path))


def test_umoci_unpacks_our_layers_to_the_merged_view(tmp_path, overlay_change):
    """A peer (umoci, Go's archive/tar) reads our base layer plus overlay diff the same way."""
    lower, upper, _, expected = overlay_change
    layout = tmp_path / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    layers = []
    for src in (lower, upper):
        tmp = str(layout / "layer.tmp")
        blob = create_layer(src, tmp)
        os.rename(tmp, blobs / blob.digest.hex)
        layers.append(blob)

    def put(obj: dict) -> dict:
        data = json.dumps(obj).encode()
        digest = Digest.of_bytes(data)
        (blobs / digest.hex).write_bytes(data)
        return {"digest": str(digest), "size": len(data)}

    config = put({"architecture": "amd64", "os": "linux", "config": {},
                  "rootfs": {"type": "layers", "diff_ids": [str(b.diff_id) for b in layers]}})
    manifest = put({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                    "config": {"mediaType": OCI_CONFIG, **config},
                    "layers": [{"mediaType": b.media_type, "digest": str(b.digest), "size": b.size}
                               for b in layers]})
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": OCI_MANIFEST, **manifest,
         "annotations": {"org.opencontainers.image.ref.name": "latest"}}]}))
    bundle = tmp_path / "bundle"
    subprocess.run(["umoci", "unpack", "--image", f"{layout}:latest", str(bundle)], check=True,
                   capture_output=True)
    assert snapshot(str(bundle / "rootfs")) == expected


@pytest.mark.parametrize("overlay", [False, True])
def test_layer_cannot_forge_overlay_xattrs(tmp_path, overlay):
    info, _ = entry("dir", tarfile.DIRTYPE)
    info.pax_headers = {"SCHILY.xattr.trusted.overlay.opaque": "y",
                        "SCHILY.xattr.trusted.overlay.redirect": "/elsewhere",
                        "SCHILY.xattr.user.kept": "yes"}
    apply_layer(layer((info, None)), str(tmp_path), overlay=overlay)
    assert os.listxattr(tmp_path / "dir") == ["user.kept"]
