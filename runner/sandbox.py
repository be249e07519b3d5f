"""One command in a throw-away container over overlay layers: what the builder's RUN and `dockyard run` use."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from dockyard.users import User
from runner import linux, rootfs, runtime, spec
from runner.cgroups import container_path
from runner.runtime import ExitStatus, StartError
from runner.spec import Mount, Resources

if TYPE_CHECKING:
    from runner.forkserver import ForkServer

RUNC = "runc"


@dataclass
class Sandbox:
    """What to run and over which filesystem; `lowerdirs` are read-only layers, top-most first."""

    args: list[str]
    lowerdirs: list[str]
    upperdir: str  # receives every write; the overlay workdir goes next to it unless `workdir` is given
    env: list[str] = field(default_factory=list)
    user: User = field(default_factory=User)
    cwd: str = "/"
    network: str = "host"  # "host", "none" (new netns with lo up) or a netns path
    hostname: str = ""
    mounts: list[Mount] = field(default_factory=list)
    resources: Resources | None = None
    readonly_rootfs: bool = False
    no_new_privileges: bool = False
    workdir: str | None = None
    extra_hosts: list[tuple[str, str]] = field(default_factory=list)  # (host, ip) lines added to /etc/hosts
    rlimits: dict[str, tuple[int, int]] = field(default_factory=dict)  # "RLIMIT_NOFILE" -> (soft, hard)
    shm_size: int | None = None  # bytes of /dev/shm (default: the runtime's 64 MiB)

    def overlay(self) -> rootfs.Overlay:
        """The overlay directories of the container's root."""
        work = self.workdir or os.path.join(os.path.dirname(os.path.abspath(self.upperdir)), "work")
        return rootfs.Overlay(upper=self.upperdir, work=work, lower=list(self.lowerdirs))


def run(box: Sandbox, stdin: int | None = None, stdout: int = 1, stderr: int = 2, runtime_name: str = "dockyard",
        scratch: str | None = None, container_id: str | None = None,
        on_start: Callable[[int], None] | None = None, spawner: ForkServer | None = None) -> ExitStatus:
    """Run `box` to completion, streaming to the given fds (stdin: /dev/null if None); cleans up everything.

    runtime_name "runc" hands the same bundle to runc (the overlay then is mounted on the host for it; mounts given
    by descriptor become the paths their objects have now, which runc looks up again).
    `on_start(pid)` receives the pid to kill to cancel the run (the container's init, or runc). `spawner`: a fork
    server to start our runtime's container (runc is exec'd, which is safe from a process with threads).
    """
    cid = container_id or "dy-" + os.urandom(6).hex()
    bundle = tempfile.mkdtemp(prefix="bundle-", dir=scratch)
    devnull = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC) if stdin is None else -1
    trees: list[int] = []
    try:
        os.mkdir(os.path.join(bundle, "rootfs"))
        if runtime_name == "dockyard":
            mounts = [_detached(m, trees) for m in box.mounts]
        else:
            mounts = [m.by_path() for m in box.mounts]
        etc = spec.etc_mounts(bundle, box.hostname or cid[:12], box.network, durable=False)
        if box.extra_hosts:
            with open(os.path.join(bundle, "hosts"), "a") as f:
                f.writelines(f"{ip}\t{host}\n" for host, ip in box.extra_hosts)
        config = spec.default_spec(
            "rootfs", box.args, env=box.env, cwd=box.cwd, user=box.user, hostname=box.hostname or cid[:12],
            network=box.network, readonly_rootfs=box.readonly_rootfs, mounts=etc + mounts,
            resources=box.resources, no_new_privileges=box.no_new_privileges, cgroups_path=container_path(cid),
            rlimits=box.rlimits or None,
        )
        if box.shm_size:
            shm = next(m for m in config["mounts"] if m["destination"] == "/dev/shm")
            shm["options"] = [o for o in shm["options"] if not o.startswith("size=")] + [f"size={box.shm_size}"]
        stdio = (devnull if stdin is None else stdin, stdout, stderr)
        if runtime_name not in ("dockyard", RUNC):
            raise StartError(f"unknown runtime {runtime_name!r}")
        overlay = rootfs.with_mount_points(box.overlay(), config["mounts"], os.path.join(bundle, "init"))
        if runtime_name == "dockyard":
            config["annotations"] = {spec.OVERLAY_ANNOTATION: json.dumps(overlay.to_dict())}
            _write_config(bundle, config)
            return runtime.run(bundle, cid, *stdio, on_start=on_start,
                               keep_fds=[m.fd for m in mounts if m.fd is not None], spawner=spawner)
        _write_config(bundle, config)
        return run_runc(bundle, cid, overlay, stdio, on_start)
    finally:
        if devnull >= 0:
            os.close(devnull)
        for fd in trees:
            os.close(fd)
        shutil.rmtree(bundle, ignore_errors=True)


def _detached(m: Mount, trees: list[int]) -> Mount:
    """A mount given by descriptor with its source cloned as a detached mount (open_tree), appended to `trees`:
    the init's new mount namespace could not bind a mount of ours, but it can attach a detached one."""
    if m.fd is None:
        return m
    trees.append(linux.clone_mount(m.fd))
    return replace(m, fd=trees[-1])


def _write_config(bundle: str, config: dict) -> None:
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f)


def run_runc(bundle: str, cid: str, overlay: rootfs.Overlay, stdio: tuple[int, int, int],
              on_start: Callable[[int], None] | None) -> ExitStatus:
    """The same bundle under runc; the overlay is mounted on the host for it and always unmounted after."""
    import subprocess  # here: `dockyard run` on our runtime loads this module but needs no subprocess

    target = os.path.join(bundle, "rootfs")
    rootfs.mount_overlay(overlay, target)
    try:
        with runtime.forward_signals(None, 2.0) as forwarder:  # runc passes them on to the container
            try:
                proc = subprocess.Popen([RUNC, "run", "--bundle", bundle, cid], stdin=stdio[0], stdout=stdio[1],
                                        stderr=stdio[2])
            except FileNotFoundError:
                raise StartError("runtime runc: not found on PATH", 127) from None
            try:
                forwarder.attach(proc.pid)
                if on_start:
                    on_start(proc.pid)
                code = proc.wait()
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
                subprocess.run([RUNC, "delete", "--force", cid], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return ExitStatus(128 - code if code < 0 else code)
    finally:
        rootfs.unmount(target)
