"""Volumes and mounts of containers: named/anonymous volumes under `<root>/volumes`, binds, tmpfs, --volumes-from."""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field

from dockyard.errors import DockyardError, NotFound
from dockyard.fsutil import atomic_write, locked
from runner.spec import Mount

NAME_RE = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]+$")


@dataclass
class Volume:
    """A named (or anonymous, named by 64 hex digits) volume; its data lives in `<dir>/_data`."""

    name: str
    created: str
    labels: dict[str, str] = field(default_factory=dict)
    anonymous: bool = False


@dataclass
class MountSpec:
    """One requested mount before it is resolved: a bind of a host path, a volume, or a tmpfs."""

    type: str  # bind, volume, tmpfs
    target: str
    source: str = ""  # host path, volume name ("" for an anonymous volume)
    readonly: bool = False
    options: list[str] = field(default_factory=list)  # tmpfs options (size=, mode=)


class Volumes:
    """The volumes of one store root."""

    def __init__(self, root: str):
        self.dir = os.path.join(root, "volumes")
        os.makedirs(self.dir, exist_ok=True)

    def path(self, name: str) -> str:
        return os.path.join(self.dir, name)

    def data(self, name: str) -> str:
        return os.path.join(self.dir, name, "_data")

    def get(self, name: str) -> Volume:
        try:
            with open(os.path.join(self.path(name), "volume.json")) as f:
                return Volume(**json.load(f))
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound(f"no such volume: {name}") from None

    def create(self, name: str = "", labels: dict[str, str] | None = None) -> tuple[Volume, bool]:
        """The volume `name` (a new anonymous one when empty); True when it was made now."""
        from runner.containers import now

        anonymous = not name
        name = name or os.urandom(32).hex()
        if not NAME_RE.match(name):
            raise DockyardError(f"invalid volume name {name!r}: use [a-zA-Z0-9][a-zA-Z0-9_.-]+")
        with locked(os.path.join(self.dir, ".lock")):
            if os.path.exists(os.path.join(self.path(name), "volume.json")):
                return self.get(name), False
            vol = Volume(name, now(), dict(labels or {}), anonymous)
            os.makedirs(self.data(name), exist_ok=True)
            atomic_write(os.path.join(self.path(name), "volume.json"), json.dumps(asdict(vol)).encode())
        return vol, True

    def all(self) -> list[Volume]:
        out = []
        for name in sorted(os.listdir(self.dir)):
            if not name.startswith("."):
                try:
                    out.append(self.get(name))
                except NotFound:
                    pass
        return out

    def remove(self, name: str, in_use: set[str]) -> None:
        self.get(name)
        if name in in_use:
            raise DockyardError(f"remove {name}: volume is in use")
        import shutil

        shutil.rmtree(self.path(name))

    def inspect(self, name: str) -> dict:
        v = self.get(name)
        return {"CreatedAt": v.created, "Driver": "local", "Labels": v.labels, "Mountpoint": self.data(name),
                "Name": v.name, "Options": {}, "Scope": "local"}


def parse_volume_flag(text: str) -> MountSpec:
    """`-v [SOURCE:]TARGET[:OPTIONS]`: SOURCE an absolute host path (bind) or a volume name; TARGET alone: anonymous."""
    parts = text.split(":")
    opts: list[str] = []
    if len(parts) == 3 or (len(parts) == 2 and not parts[1].startswith("/")):
        opts = parts.pop().split(",")
    if len(parts) == 1:
        source, target = "", parts[0]
    elif len(parts) == 2:
        source, target = parts
    else:
        raise DockyardError(f"invalid volume specification: {text!r}")
    bad = [o for o in opts if o not in ("ro", "rw", "z", "Z", "rprivate", "private", "nocopy")]
    if not target.startswith("/") or bad:
        raise DockyardError(f"invalid volume specification: {text!r}")
    kind = "bind" if source.startswith("/") else "volume"
    if kind == "bind" and not os.path.exists(source):
        os.makedirs(source)  # as docker does for -v (not for --mount)
    return MountSpec(kind, os.path.normpath(target), source, "ro" in opts)


def parse_mount_flag(text: str) -> MountSpec:
    """`--mount type=bind|volume|tmpfs,source=…,target=…[,readonly][,tmpfs-size=…][,tmpfs-mode=…]`."""
    kv: dict[str, str] = {}
    for item in text.split(","):
        key, eq, value = item.partition("=")
        kv[key.strip()] = value if eq else "true"
    kind = kv.pop("type", "volume")
    target = kv.pop("target", None) or kv.pop("destination", None) or kv.pop("dst", None)
    source = kv.pop("source", None) or kv.pop("src", "")
    ro = kv.pop("readonly", kv.pop("ro", "false")) in ("true", "1", "")
    if kind not in ("bind", "volume", "tmpfs") or not target or not target.startswith("/"):
        raise DockyardError(f"invalid --mount {text!r}: want type=bind|volume|tmpfs,target=/PATH")
    opts = []
    if "tmpfs-size" in kv:
        opts.append(f"size={kv.pop('tmpfs-size')}")
    if "tmpfs-mode" in kv:
        opts.append(f"mode={kv.pop('tmpfs-mode')}")
    kv.pop("volume-nocopy", None)
    kv.pop("bind-propagation", None)
    if kv:
        raise DockyardError(f"invalid --mount {text!r}: unknown field {next(iter(kv))!r}")
    if kind == "bind" and not os.path.exists(source or ""):
        raise DockyardError(f"invalid --mount {text!r}: bind source path does not exist: {source}")
    if kind == "tmpfs" and source:
        raise DockyardError(f"invalid --mount {text!r}: tmpfs takes no source")
    return MountSpec(kind, os.path.normpath(target), source, ro, opts)


def parse_tmpfs_flag(text: str) -> MountSpec:
    """`--tmpfs /path[:options]`."""
    target, _, opts = text.partition(":")
    if not target.startswith("/"):
        raise DockyardError(f"invalid --tmpfs {text!r}: want an absolute path")
    options = [o for o in opts.split(",") if o]
    ro = "ro" in options
    return MountSpec("tmpfs", os.path.normpath(target), "", ro, [o for o in options if o not in ("ro", "rw")])


def volumes_from(mounts: list[dict], mode: str) -> list[MountSpec]:
    """The mounts of another container (its docker `Mounts` list) for `--volumes-from NAME[:ro|rw]`."""
    out = []
    for m in mounts:
        if m["Type"] not in ("volume", "bind"):
            continue
        ro = (not m.get("RW", True)) if not mode else mode == "ro"
        source = m["Name"] if m["Type"] == "volume" else m["Source"]
        out.append(MountSpec(m["Type"], m["Destination"], source, ro))
    return out


def resolve(root: str, specs: list[MountSpec], image_volumes: list[str], lowerdirs: list[str]
            ) -> tuple[list[Mount], list[dict]]:
    """OCI mounts and docker's `Mounts` records; volumes are made on first use and seeded from the image."""
    vols = Volumes(root)
    by_target: dict[str, MountSpec] = {}
    for path in image_volumes:  # the image's VOLUMEs become anonymous volumes unless a flag covers them
        by_target[os.path.normpath(path)] = MountSpec("volume", os.path.normpath(path))
    for s in specs:
        by_target[s.target] = s
    mounts, records = [], []
    for target in sorted(by_target, key=lambda t: t.count("/")):  # parents before children
        s = by_target[target]
        if s.type == "tmpfs":
            mounts.append(Mount(target, "tmpfs", "tmpfs", s.readonly, s.options or ["mode=1777"]))
            records.append({"Type": "tmpfs", "Source": "", "Destination": target, "Mode": "", "RW": not s.readonly,
                            "Propagation": ""})
            continue
        if s.type == "bind":
            source = os.path.abspath(s.source)
            mounts.append(Mount(target, "bind", source, s.readonly, ["rprivate"]))
            records.append({"Type": "bind", "Source": source, "Destination": target, "Mode": "",
                            "RW": not s.readonly, "Propagation": "rprivate"})
            continue
        vol, fresh = vols.create(s.source, {} if s.source else {"com.docker.volume.anonymous": ""})
        data = vols.data(vol.name)
        if fresh:
            seed(data, lowerdirs, target)
        mounts.append(Mount(target, "bind", data, s.readonly, ["rprivate"]))
        records.append({"Type": "volume", "Name": vol.name, "Source": data, "Destination": target, "Driver": "local",
                        "Mode": "z", "RW": not s.readonly, "Propagation": "", "Anonymous": vol.anonymous})
    return mounts, records


def seed(data: str, lowerdirs: list[str], target: str) -> None:
    """Copy what the image has at `target` into a new volume, owner and modes kept, as docker does."""
    from dockyard.inroot import layered_path

    if not lowerdirs or layered_path(lowerdirs, target) is None:
        return
    # The merged view of all layers needs an overlay mount: done in a child in its own mount namespace,
    # so nothing is ever mounted on the host, even if we crash.
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            code = _seed_child(data, lowerdirs, target)
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise DockyardError(f"could not copy the image's content at {target} into its volume")


def _seed_child(data: str, lowerdirs: list[str], target: str) -> int:
    import subprocess
    import tempfile

    from dockyard.inroot import secure_join
    from runner import linux

    linux.unshare(linux.CLONE_NEWNS)
    linux.mount(None, "/", None, linux.MS_PRIVATE | linux.MS_REC)
    merged = tempfile.mkdtemp(prefix="seed-")
    try:
        if len(lowerdirs) == 1:
            linux.mount(lowerdirs[0], merged, None, linux.MS_BIND)
        else:
            linux.mount("overlay", merged, "overlay", linux.MS_RDONLY, "lowerdir=" + ":".join(lowerdirs))
        src = secure_join(merged, target)
        if not os.path.isdir(src):
            return 0
        st = os.stat(src)
        os.chown(data, st.st_uid, st.st_gid)
        os.chmod(data, st.st_mode & 0o7777)
        return subprocess.run(["cp", "-a", src + "/.", data]).returncode
    finally:
        linux.umount(merged, linux.MNT_DETACH)
        os.rmdir(merged)
