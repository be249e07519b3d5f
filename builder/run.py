"""RUN: one command in the runner's sandbox over the stage's layers, writing into a fresh upperdir."""

from __future__ import annotations

import contextlib
import os
import posixpath
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from builder.cache import BuildCache
from builder.context import BuildContext
from builder.mounts import Mount as RunMount
from builder.resolve import PIPES_DIR, RunSpec
from dockyard import users
from dockyard.errors import DockyardError
from dockyard.fsutil import locked
from dockyard.inroot import fd_path, open_beneath
from dockyard.users import User
from runner.spec import Mount

if TYPE_CHECKING:
    from builder.flags import RunSettings
    from runner.forkserver import ForkServer


class RunError(DockyardError):
    """A RUN could not be set up (a mount source is missing, a secret was not given…)."""


@dataclass
class MountSources:
    """Where RUN --mount sources come from."""

    context: BuildContext
    cache: BuildCache
    secrets: dict[str, bytes] = field(default_factory=dict)  # id -> value
    ssh: dict[str, str] = field(default_factory=dict)  # id -> agent socket on the host
    # A stage name/index or image reference -> a context manager giving its merged root directory.
    rootfs_of: Callable[[str], contextlib.AbstractContextManager[str]] | None = None


def stop(container_id: str) -> None:
    """Kill a RUN's container from another thread (signals reach only the main thread's RUN)."""
    from runner.cgroups import Cgroup

    Cgroup.of_container(container_id).kill_all()


def run_user(user: str, lowerdirs: list[str]) -> User:
    """The numeric identity for USER, resolved against the image's own /etc/passwd and /etc/group."""
    if not user:
        return User()
    return users.resolve(user, users.read_layered(lowerdirs, "etc/passwd"),
                         users.read_layered(lowerdirs, "etc/group"))


def _target(mount: RunMount, cwd: str) -> str:
    return posixpath.normpath(posixpath.join(cwd, mount.target or ""))


def _secret_file(mount: RunMount, data: bytes, scratch: str) -> str:
    """A private file holding the secret with the mount's mode and owner."""
    fd, copy = tempfile.mkstemp(prefix="secret-", dir=scratch)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chown(copy, mount.uid or 0, mount.gid or 0)
    os.chmod(copy, mount.mode if mount.mode is not None else 0o400)
    return copy


def _throwaway_copy(fd: int, scratch: str) -> str:
    """A private copy of a read-write bind source (pinned by `fd`): as in BuildKit, what the RUN writes there is
    discarded (and the context or a stage's layers are never touched)."""
    src = fd_path(fd)
    dest = tempfile.mkdtemp(prefix="bind-", dir=scratch)
    if stat.S_ISDIR(os.fstat(fd).st_mode):
        shutil.copytree(src, dest, symlinks=True, copy_function=_copy_node, dirs_exist_ok=True)
        return dest
    path = os.path.join(dest, "file")
    _copy_node(src, path, os.fstat(fd))
    return path


def _copy_node(src: str, dest: str, st: os.stat_result | None = None) -> None:
    """Copy a regular file with its metadata; a device, fifo or socket is made as the node itself: its data
    (an endless /dev/zero planted in a stage) is never read. Without `st` (a descriptor path's own stat),
    `src` is never followed if it is a symlink."""
    follow = st is not None
    st = st or os.lstat(src)
    if stat.S_ISREG(st.st_mode):
        shutil.copy2(src, dest, follow_symlinks=follow)
        return
    os.mknod(dest, st.st_mode, st.st_rdev)
    os.chown(dest, st.st_uid, st.st_gid)


def _pinned(root: str, path: str, what: str, stack: contextlib.ExitStack, create: str = "") -> int:
    """An O_PATH descriptor of `path` resolved inside `root` (links that lead out are clamped at it), closed
    with `stack`; the mount goes through it, so nothing swapped in after this lookup can redirect it."""
    try:
        fd = open_beneath(root, path, create)
    except (FileNotFoundError, NotADirectoryError):
        raise RunError(f"{what}: not found") from None
    except OSError as e:
        raise RunError(f"{what}: {e.strerror}") from None
    stack.callback(os.close, fd)
    return fd


def _bind(m: RunMount, cwd: str, fd: int, scratch: str) -> Mount:
    """The sandbox bind mount of a pinned source: read-only as it is, read-write as a throw-away copy."""
    if m.readonly:
        return Mount(_target(m, cwd), "bind", readonly=True, fd=fd)
    return Mount(_target(m, cwd), "bind", _throwaway_copy(fd, scratch))


def prepare_mounts(spec: RunSpec, cwd: str, sources: MountSources, scratch: str,
                   stack: contextlib.ExitStack) -> tuple[list[Mount], dict[str, str]]:
    """The sandbox mounts (and env values of env= secrets) for a RUN's --mount flags and heredoc scripts."""
    mounts: list[Mount] = []
    env: dict[str, str] = {}
    for m in spec.mounts:
        if m.type == "bind":
            if m.from_:
                if sources.rootfs_of is None:
                    raise RunError(f"--mount from={m.from_}: no such stage or image")
                root = stack.enter_context(sources.rootfs_of(m.from_))
                fd = _pinned(root, m.source or "/", f"--mount from={m.from_},source={m.source}", stack)
            else:
                src = sources.context.mount_source(m.source or ".")
                fd = _pinned(sources.context.root, src.rel, f"RUN --mount source {m.source}", stack)
            mounts.append(_bind(m, cwd, fd, scratch))
        elif m.type == "cache":
            if m.from_:
                raise RunError("RUN --mount=type=cache,from=… is not supported by dockyard build")
            path = sources.cache.mount_dir(m.id or m.target or "")
            if m.sharing != "shared":
                # locked: one RUN at a time; private is approximated the same way (never two writers at once).
                stack.enter_context(locked(path + ".lock"))
            # RUNs write the cache (links too): its source= subdirectory resolves inside it and is made if missing.
            fd = _pinned(path, m.source or "/", f"cache mount source {m.source}", stack, create="dir")
            if not stat.S_ISDIR(os.fstat(fd).st_mode):
                raise RunError(f"cache mount source {m.source}: not a directory")
            if not os.listdir(fd_path(fd)):  # a fresh cache dir takes the mount's owner and mode
                os.chown(fd_path(fd), m.uid or 0, m.gid or 0)
                os.chmod(fd_path(fd), m.mode if m.mode is not None else 0o755)
            mounts.append(Mount(_target(m, cwd), "bind", readonly=m.readonly, fd=fd))
        elif m.type == "tmpfs":
            mounts.append(Mount(_target(m, cwd), "tmpfs", options=[f"size={m.size}"] if m.size else []))
        elif m.type == "secret":
            secret = sources.secrets.get(m.id or "")
            if secret is None:
                if m.required:
                    raise RunError(f"secret {m.id} not provided (use --secret id={m.id},src=PATH)")
                continue
            if m.env:
                env[m.env] = secret.decode(errors="replace")
            if m.target:
                mounts.append(Mount(_target(m, cwd), "bind", _secret_file(m, secret, scratch), readonly=True))
        elif m.type == "ssh":
            socket = sources.ssh.get(m.id or "default")
            if socket is None:
                if m.required:
                    raise RunError(f"ssh agent {m.id} not provided (use --ssh {m.id}[=SOCKET|KEY])")
                continue
            target = _target(m, cwd)
            mounts.append(Mount(target, "bind", socket))
            env.setdefault("SSH_AUTH_SOCK", target)
        else:
            raise RunError(f"RUN --mount=type={m.type} is not supported by dockyard build")
    for script in spec.scripts:
        path = os.path.join(scratch, f"pipe-{script.name}")
        with open(path, "w") as f:
            f.write(script.data)
        os.chmod(path, script.mode)
        mounts.append(Mount(posixpath.join(PIPES_DIR, script.name), "bind", path, readonly=True))
    return mounts, env


def execute(spec: RunSpec, *, lowerdirs: list[str], upper: str, env: dict[str, str], user: str, cwd: str,
            network: str, sources: MountSources, scratch: str, out_fd: int, container_id: str,
            store_root: str | None = None, spawner: ForkServer | None = None,
            settings: RunSettings | None = None) -> int:
    """Run the command to completion with output on `out_fd`; returns its exit code.

    network: "default" (as docker's build: a namespace of its own on the store's default bridge, outbound NAT,
    nothing of the host's loopback), "host" or "none". `spawner`: the fork server that starts the container.
    `settings`: extra /etc/hosts lines, rlimits and the /dev/shm size.
    """
    from runner import sandbox  # only a step that really runs pays for importing the runtime

    who = run_user(user, lowerdirs)
    if "HOME" not in env:
        env = {**env, "HOME": users.home_of(who.uid, users.read_layered(lowerdirs, "etc/passwd"))}
    with contextlib.ExitStack() as stack:
        if network == "default":
            from runner.network import attach

            network = stack.enter_context(attach.on_default_bridge(container_id, store_root))
        mounts, secret_env = prepare_mounts(spec, cwd, sources, scratch, stack)
        box = sandbox.Sandbox(args=spec.argv, lowerdirs=lowerdirs, upperdir=upper,
                              env=[f"{k}={v}" for k, v in {**env, **secret_env}.items()], user=who, cwd=cwd,
                              network=network, mounts=mounts, hostname="dockyard-build",
                              extra_hosts=list(settings.extra_hosts) if settings else [],
                              rlimits=dict(settings.rlimits) if settings else {},
                              shm_size=settings.shm_size if settings else None)
        status = sandbox.run(box, stdout=out_fd, stderr=out_fd, scratch=scratch, container_id=container_id,
                             spawner=spawner)
    return status.code
