"""A resident, pre-imported `dockyard` process: where its socket lives and the messages client and server exchange.

Imported by the client before anything else runs, so it may import builtins and C modules only (os, sys).
Every message is a frame: a 4-byte big-endian length, then that many bytes whose first is the kind.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # (typing itself is not imported here: see above)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

DISABLE = "DOCKYARD_RESIDENT"  # "0": the client never connects and never starts a server
DIR_OVERRIDE = "DOCKYARD_RESIDENT_DIR"  # the socket directory instead of the default (tests); checked the same way
IDLE_OVERRIDE = "DOCKYARD_RESIDENT_IDLE"  # seconds without a request before the server exits (default IDLE)
LOG_OVERRIDE = "DOCKYARD_RESIDENT_LOG"  # a file the server appends one line per request to (tests, debugging)
IDLE = 600.0
# A server start leaves "<key>.starting" until it listens; while that is younger than this (seconds), clients start
# no other: a server that cannot come up (a broken install) costs one interpreter start per this, not per command.
STARTING, START_RETRY = ".starting", 30.0
# Command words known to work without a controlling terminal, each tested through the server. Not served: login
# (getpass opens /dev/tty), registry, compose, exec, attach, and every other word; `-t` never. The server decides
# on the parsed command line.
SERVED = frozenset(("run", "create", "start", "stop", "kill", "rm", "ps", "images", "inspect", "tag", "rmi", "logs",
                    "wait", "version", "pull", "push", "build"))
# Command groups whose subcommands are top-level commands under another word (`image ls` runs `images`, `container
# rm` runs `rm`): the parsed command line's attribute naming the subcommand, and the words that differ. A group's
# subcommand is served where the command it runs is.
GROUPS: dict[str, tuple[str, dict[str, str]]] = {
    "image": ("image_command", {"ls": "images", "list": "images", "rm": "rmi", "remove": "rmi"}),
    "container": ("container_command", {"ls": "ps", "list": "ps", "remove": "rm"}),
}
# The words that make the client ask (any other command line runs directly without a round trip).
ASKED = SERVED.union(GROUPS)
REQUEST_MAX = 1 << 20  # argv and environ together; a bigger request is refused
FRAME_MAX = REQUEST_MAX + 64
# Client -> server: the request (argv, environ; with fds 0, 1, 2 and the cwd), then signals it received.
REQUEST, SIGNAL = b"R", b"S"
# Server (or its child) -> client: not served (run it directly), began (the command runs), exited (its status).
NOT_SERVED, BEGAN, EXITED = b"N", b"B", b"X"
# A status's second byte: the child exited with a code, or was killed by a signal.
BY_CODE, BY_SIGNAL = 0, 1
# The signals a CLI may get from its terminal or its caller, forwarded to the child; TSTP also stops the client.
# The lines of /proc/PID/status that bound what a process may do; with its namespaces, root and LSM label, a
# caller must match the server in all of them.
BOUNDS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "NoNewPrivs", "Seccomp",
          "Seccomp_filters")
FORWARDED = ("SIGHUP", "SIGINT", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGALRM", "SIGTERM", "SIGCONT", "SIGTSTP",
             "SIGWINCH")


def served_as(command: str | None, args: object) -> str | None:
    """The top-level command a parsed command line runs: `command` itself, or its group's subcommand's (None for a
    group named alone)."""
    if command not in GROUPS:
        return command
    attribute, renamed = GROUPS[command]
    sub = getattr(args, attribute, None)
    return renamed.get(sub, sub) if sub else None


def frame(kind: bytes, payload: bytes = b"") -> bytes:
    """One message: its length, its kind, its payload."""
    return (len(payload) + 1).to_bytes(4, "big") + kind + payload


def socket_dir() -> str | None:
    """The directory of this user's servers: /run/dockyard/resident for root, $XDG_RUNTIME_DIR/dockyard otherwise
    (None: no such directory can be named, the resident process is off)."""
    override = os.environ.get(DIR_OVERRIDE)
    if override:
        return override
    if os.geteuid() == 0:
        return "/run/dockyard/resident"
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(runtime, "dockyard") if runtime and os.path.isabs(runtime) else None


def private_dir(path: str) -> bool:
    """Whether `path` is a directory itself (not a symlink), owned by the euid, mode 0700: nobody else can put a
    socket in it."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_mode & 0o170777) == 0o040700 and st.st_uid == os.geteuid()


def status_fields(pid: int | str) -> dict[str, str]:
    """/proc/PID/status as name: value."""
    with open(f"/proc/{pid}/status") as f:
        return dict(line.rstrip("\n").partition(":\t")[::2] for line in f)


def bounds(pid: int | str) -> dict[str, object]:
    """Everything that bounds what process `pid` may do: BOUNDS, its namespaces, root and LSM label."""
    status = status_fields(pid)
    facts: dict[str, object] = {k: status.get(k) for k in BOUNDS}
    for ns in sorted(os.listdir(f"/proc/{pid}/ns")):
        st = os.stat(f"/proc/{pid}/ns/{ns}")
        facts[f"ns/{ns}"] = (st.st_dev, st.st_ino)
    st = os.stat(f"/proc/{pid}/root")
    facts["root"] = (st.st_dev, st.st_ino)
    try:
        with open(f"/proc/{pid}/attr/current", "rb") as f:
            facts["lsm"] = f.read()
    except OSError as e:
        facts["lsm"] = e.errno
    return facts


def identity(digest: Callable[[bytes], Any]) -> str:
    """The code a process runs and the bounds it runs in, as a name: its interpreter, version, flags, sys.path, the
    PYTHON* and locale variables its start read, its personality, and bounds(). `digest` is a hashlib-style
    constructor (the client passes a C module's). (Callers bounded differently so reach servers of their own kind:
    a server still serves only callers whose bounds are its own.)"""
    env = sorted((k, v) for k, v in os.environ.items()
                 if k.startswith("PYTHON") or k in ("LANG", "LC_ALL", "LC_CTYPE"))
    # A child keeps the server's personality, which os.uname() reports (`setarch linux32`: i686): a caller with
    # another one reaches a server it started, so under its own. (Any process may set its own: it bounds nothing,
    # so the server need not check it, and cannot always read a caller's: /proc/PID/personality asks ptrace access.)
    with open("/proc/self/personality") as f:
        personality = f.read()
    text = repr((sys.executable, sys.version, tuple(sys.flags), sys.path, env, personality,
                 sorted(bounds("self").items())))
    return str(digest(text.encode("utf-8", "surrogateescape")).hexdigest()[:32])
