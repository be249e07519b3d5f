"""`--ssh`: the SSH agent sockets `RUN --mount=type=ssh` forwards, an agent of our own for key files."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator

from dockyard.errors import DockyardError


class SSHError(DockyardError):
    """An SSH agent could not be provided."""


def _is_socket(path: str) -> bool:
    try:
        return stat.S_ISSOCK(os.stat(path).st_mode)
    except OSError:
        return False


@contextlib.contextmanager
def agents(ssh: dict[str, list[str]]) -> Iterator[dict[str, str]]:
    """id -> agent socket for each --ssh: $SSH_AUTH_SOCK (no paths), the socket given, or an ssh-agent we start
    holding the key files given (stopped on exit)."""
    sockets: dict[str, str] = {}
    with contextlib.ExitStack() as stack:
        for sid, paths in ssh.items():
            if not paths:
                sockets[sid] = os.path.abspath(os.environ.get("SSH_AUTH_SOCK", ""))
            elif len(paths) == 1 and _is_socket(paths[0]):
                sockets[sid] = os.path.abspath(paths[0])
            else:
                sockets[sid] = stack.enter_context(_agent(sid, paths))
        for sid, sock in sockets.items():
            if not _is_socket(sock):
                raise SSHError(f"--ssh {sid}: {sock} is not an SSH agent socket")
        yield sockets


@contextlib.contextmanager
def _agent(sid: str, keys: list[str]) -> Iterator[str]:
    """An ssh-agent on a socket of its own (a short path: sockets take 107 bytes at most) holding `keys`."""
    import subprocess  # only for --ssh with key files: not on every build's path

    agent, add = shutil.which("ssh-agent"), shutil.which("ssh-add")
    if not agent or not add:
        raise SSHError(f"--ssh {sid}: ssh-agent and ssh-add are needed to serve key files (install openssh-client)")
    directory = tempfile.mkdtemp(prefix="dy-ssh-")
    sock = os.path.join(directory, "agent.sock")
    proc = subprocess.Popen([agent, "-D", "-a", sock], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # Ctrl-C is ours to handle, not its
    try:
        deadline = time.monotonic() + 10
        while not _is_socket(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SSHError(f"--ssh {sid}: ssh-agent did not start")
            time.sleep(0.02)
        for key in keys:
            res = subprocess.run([add, key], env={**os.environ, "SSH_AUTH_SOCK": sock}, stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True)
            if res.returncode != 0:
                raise SSHError(f"--ssh {sid}: ssh-add {key}: {' '.join(res.stderr.split()) or 'failed'}")
        yield sock
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(directory, ignore_errors=True)
