"""`cp` and `export`: files in and out of a container's root, which a child process enters first.

The child works inside the container's root (setns into a running container's mount namespace, or its
overlay mounted in a private namespace and chrooted into), so container symlinks can never lead outside it;
data crosses to the host as a tar on a pipe, unpacked on the host side by the layer applier, which keeps
every entry inside the destination.
"""

from __future__ import annotations

import json
import os
import tarfile

from dockyard.errors import DockyardError, NotFound
from runner.containers import Container


def _in_rootfs(c: Container, writable: bool, child_work, parent_work=None) -> None:
    """Run child_work() in a child inside the container's root while parent_work() runs here; errors re-raised,
    the child's first: when it fails, our end of the data pipe just breaks."""
    # Loaded before the child leaves the host's files: the layer code, and hashlib for the digests it takes (which
    # dockyard.digest imports only when it hashes).
    import hashlib  # noqa: F401

    from dockyard.layers import apply_layer  # noqa: F401
    from runner import lifecycle
    from runner.forking import in_child, split_report

    pid = (c.pid or lifecycle.init_pid(c.id)) if c.running else 0
    failed: list[Exception] = []

    def work(_errw: int) -> int:
        _enter(c, pid, writable)
        child_work()
        return 0

    def here() -> None:
        try:
            parent_work()
        except (OSError, tarfile.TarError, DockyardError) as e:
            failed.append(e)

    code, report = in_child(work, here if parent_work else None)
    if report or code:
        raise DockyardError(split_report(report)[1] if report else "copy failed")
    if failed:
        raise failed[0]


def _enter(c: Container, pid: int, writable: bool) -> None:
    """(child) make the container's root our `/`."""
    from runner import conceal, linux, rootfs, spec
    from runner.runtime import load_config

    conceal.conceal(["dockyard-cp"])  # out of the container's pid namespace, but its files may be a way in
    if pid:
        fd = os.open(f"/proc/{pid}/ns/mnt", os.O_RDONLY | os.O_CLOEXEC)
        linux.setns(fd, linux.CLONE_NEWNS)  # also moves our root and cwd to that namespace's root
        os.close(fd)
        return
    config = load_config(c.bundle)
    overlay = rootfs.Overlay.from_dict(json.loads(config["annotations"][spec.OVERLAY_ANNOTATION]))
    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_PRIVATE | linux.MS_REC)
    # The container's own mount point, mounted on in this private namespace only (the container is stopped):
    # nothing is made on the host, and the mount dies with the namespace when this child exits.
    target = os.path.join(c.bundle, config["root"]["path"])
    if writable:
        rootfs.mount_overlay(overlay, target)
    else:
        # Read-only: the upper dir becomes the top lower (its whiteouts still apply); no workdir needed. A container
        # never started has no upper dir yet: an empty one is what its start would make.
        os.makedirs(overlay.upper, exist_ok=True)
        linux.mount("overlay", target, "overlay", linux.MS_RDONLY,
                    "lowerdir=" + ":".join([overlay.upper, *overlay.lower]))
    os.chroot(target)
    os.chdir("/")


def _split(path: str) -> tuple[str, str, bool]:
    """(parent, name, contents_only) of a cp path; "dir/." means the directory's contents."""
    contents = path.endswith("/.") or path == "."
    clean = _absolute(path)
    return os.path.dirname(clean), os.path.basename(clean), contents


def _absolute(path: str) -> str:
    """A container path made absolute and normal ("//x" too: normpath keeps a leading double slash)."""
    return os.path.normpath("/" + path.lstrip("/"))


def _tar_to(fd: int, source: str, name: str, contents_only: bool) -> None:
    """Write `source` as a tar (entries named `name`…, or its children with contents_only) to fd."""
    with os.fdopen(fd, "wb") as out, tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as tf:
        if contents_only:
            for entry in sorted(os.listdir(source)):
                tf.add(os.path.join(source, entry), arcname=entry)
        else:
            tf.add(source, arcname=name)


def _unpack_into(fd: int, dest_dir: str) -> None:
    from dockyard.layers import apply_layer

    with os.fdopen(fd, "rb") as f:
        apply_layer(f, dest_dir)


def _destination(dest_exists_dir: bool, dest: str, src_name: str, contents_only: bool) -> tuple[str, str]:
    """docker cp's rule: into an existing directory keep the source name, else take the destination's."""
    if contents_only or dest_exists_dir:
        return dest, src_name
    return os.path.dirname(os.path.normpath(dest)) or ".", os.path.basename(os.path.normpath(dest))


def copy_out(root: str, c: Container, src: str, dest: str, follow: bool = False) -> None:
    """`cp CONTAINER:SRC DEST` (DEST "-" writes a tar to stdout)."""
    parent, name, contents = _split(src)
    if dest == "-":
        out_fd, r = os.dup(1), -1
        target_dir = arcname = ""
    else:
        r, out_fd = os.pipe()
        target_dir, arcname = _destination(os.path.isdir(dest), dest, name, contents)
        if not os.path.isdir(target_dir):
            os.close(r)
            os.close(out_fd)
            raise NotFound(f"no such directory: {target_dir}")

    def child() -> None:
        if r >= 0:
            os.close(r)
        source = os.path.join(parent, name)
        if follow:
            source = os.path.realpath(source)  # inside the container's root: the kernel keeps it there
        if not os.path.lexists(source):
            raise NotFound(f"Could not find the file {_absolute(src)} in container {c.name}")
        _tar_to(out_fd, source, arcname or name, contents)

    def here() -> None:
        os.close(out_fd)
        if r >= 0:
            _unpack_into(r, target_dir)

    _in_rootfs(c, False, child, here)


def copy_in(root: str, c: Container, src: str, dest: str, follow: bool = False) -> None:
    """`cp SRC CONTAINER:DEST` (SRC "-" reads a tar from stdin into the DEST directory)."""
    if src != "-" and not os.path.lexists(src):
        raise NotFound(f"no such file or directory: {src}")
    r, w = os.pipe()  # the tar, from here to the child
    name_r, name_w = os.pipe()  # where it goes, decided in the container: from the child to here
    _, name, contents = _split(src if src != "-" else "x/.")
    source = os.path.realpath(src) if follow and src != "-" else os.path.abspath(src)

    def child() -> None:
        os.close(w)
        os.close(name_r)
        dest_dir, arcname, into = _place(c, dest, name, src == "-", src != "-" and os.path.isdir(source))
        os.write(name_w, (b"d" if into else b"f") + os.fsencode(arcname))
        os.close(name_w)
        _unpack_into(r, dest_dir)

    def here() -> None:
        os.close(r)
        os.close(name_w)
        with os.fdopen(name_r, "rb") as f:
            answer = f.read()
        if not answer:  # the child failed before: its report says why
            os.close(w)
            return
        if src == "-":
            with os.fdopen(w, "wb") as out, os.fdopen(os.dup(0), "rb") as stdin:
                while chunk := stdin.read(1 << 16):
                    out.write(chunk)
            return
        # "dir/." fills an existing DEST directory; a DEST that does not exist becomes the copy of dir.
        _tar_to(w, source, os.fsdecode(answer[1:]), contents and answer[:1] == b"d")

    _in_rootfs(c, True, child, here)


def _place(c: Container, dest: str, src_name: str, stream: bool, src_is_dir: bool) -> tuple[str, str, bool]:
    """(in the container's root) (directory, entry name, into an existing directory?) of a copy to DEST, by
    docker cp's rules. stream: a tar from stdin, which only unpacks into an existing directory.

    A DEST that is a symlink, even a dangling one, is followed: the copy lands where it points."""
    wanted = _absolute(dest)
    real = os.path.realpath(wanted)  # inside the container's root: the kernel keeps it there
    if os.path.isdir(real):
        return real, src_name, True
    if stream:
        raise NotFound(f"Could not find the file {wanted} in container {c.name}")
    if os.path.lexists(real) and not os.path.isfile(real):
        raise DockyardError(f'destination "{c.name}:{dest}" must be a directory or a regular file')
    if os.path.isfile(real) and src_is_dir:
        raise DockyardError(f"cannot copy directory {src_name} over the file {c.name}:{dest}")
    if dest.endswith("/") and not src_is_dir:  # DEST says "a directory", and there is none
        raise NotFound(f"no such directory: {c.name}:{dest}")
    parent = os.path.dirname(real)
    if not os.path.isdir(parent):
        raise NotFound(f"Could not find the file {parent} in container {c.name}")
    return parent, os.path.basename(real), False


def export(root: str, c: Container, fd: int) -> None:
    """The container's merged filesystem (without volumes, /proc or /sys) as a tar on `fd`."""
    from dockyard.layers import write_diff

    def child() -> None:
        with os.fdopen(os.dup(fd), "wb") as out:
            write_diff("/", out)

    stopped = Container.from_json({**c.to_json(), "state": "exited"})  # always the overlay view
    _in_rootfs(stopped, False, child)
